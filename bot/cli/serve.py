"""`faqbot logs serve`: the conversation log in Datasette, read-only on loopback, behind a password elsewhere.

What the site shows (the metadata: canned queries, labels, the login) is decided here; how the Datasette process is
started, confined and stopped with us is ``bot.cli.datasette_process``.

Exit codes: 0 the server stopped, 1 no database / Datasette not installed, 2 refused (a password is needed and none
or a short one is set), 130 Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.cli import datasette_process
from bot.cli.arguments import REVIEW_USER
from bot.cli.errors import FAILED, USAGE, CommandError
from bot.cli.inputs import db_path, no_log, settings
from bot.cli.render import to_stderr
from storage import DATASETTE_DIR

PASSWORD_HASH_ENV = "FAQBOT_REVIEW_PASSWORD_HASH"
METADATA_FILE = DATASETTE_DIR / "metadata.yml"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; any other address or name counts as reachable by others."""
    h = (host or "").strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def datasette_metadata(db_name: str, *, password: bool, user: str = REVIEW_USER) -> dict[str, Any]:
    """The Datasette metadata for the log: storage/datasette/metadata.yml with the database key renamed to
    ``db_name`` and, when ``password``, an ``allow`` block for ``user`` plus the datasette-auth-passwords
    configuration reading the hash from the FAQBOT_REVIEW_PASSWORD_HASH environment variable. Writable canned
    queries (labelling) are allowed to ``user`` only behind the password and removed otherwise."""
    import yaml  # comes with datasette (the optional [review] extra), which cmd_serve checks for first

    meta = yaml.safe_load(METADATA_FILE.read_text(encoding="utf-8"))
    dbs = meta.get("databases") or {}
    if "faqbot" in dbs and db_name != "faqbot":
        dbs[db_name] = dbs.pop("faqbot")
    for name, query in list(((dbs.get(db_name) or {}).get("queries") or {}).items()):
        if query.get("write"):  # labelling: only for the logged-in curator, and only behind the password
            if password:
                query["allow"] = {"id": user}
            else:
                del dbs[db_name]["queries"][name]
    if password:
        meta["allow"] = {"id": user}  # anonymous visitors get 403 everywhere; /-/login still works
        meta.setdefault("plugins", {})["datasette-auth-passwords"] = {
            f"{user}_password_hash": {"$env": PASSWORD_HASH_ENV},
        }
    return meta


def cmd_serve(args) -> int:
    config = settings()
    path = db_path(args, config)
    password = config.review_password.get_secret_value() if config.review_password else ""
    loopback = is_loopback(args.host)
    need_password = args.require_password or not loopback
    if need_password and not password:
        why = "--require-password was given" if loopback else f"--host {args.host} is not a loopback address"
        raise CommandError(
            USAGE,
            f"refusing to start: {why}, so the review site needs a password, and none is "
            "set.\nSet FAQBOT_REVIEW_PASSWORD (environment or .env), or bind to 127.0.0.1 (the "
            "default).",
        )
    if need_password and len(password) < datasette_process.MIN_PASSWORD_CHARS:
        raise CommandError(
            USAGE,
            f"refusing to start: FAQBOT_REVIEW_PASSWORD has {len(password)} characters; the "
            f"review site needs at least {datasette_process.MIN_PASSWORD_CHARS} (failed logins "
            "are throttled, but a short password is guessed offline from a leaked hash in "
            "minutes)",
        )
    if not path.exists():
        raise no_log(path)
    missing = [
        m
        for m in ("datasette",) + (("datasette_auth_passwords",) if need_password else ())
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise CommandError(FAILED, f"{', '.join(missing)} not installed: pip install 'faqbot[review]' (or '.[review]')")

    db_name = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    meta = datasette_metadata(db_name, password=need_password, user=args.user)
    # Host-header check (DNS rebinding) wherever the site is on a loopback address; login throttle; SQL limits.
    meta.setdefault("plugins", {})[datasette_process.GUARD_PLUGIN] = datasette_process.guard_config(
        port=args.port, check_host=loopback
    )
    extra_env = {}
    if need_password:
        from datasette_auth_passwords.utils import hash_password  # optional ([review] extra): checked just above

        extra_env[PASSWORD_HASH_ENV] = hash_password(password)  # the child gets only the hash
        if not password.isascii():
            to_stderr("note: the password is not ASCII: the login form works, HTTP Basic (curl -u) does not")
    url = f"http://{args.host if ':' not in args.host else '[' + args.host + ']'}:{args.port}/{db_name}"
    queries = list((meta.get("databases", {}).get(db_name) or {}).get("queries") or {})
    # Behind the password the curator may label turns (the writable canned query); otherwise nothing writes.
    info = {
        "url": url,
        "database": str(path),
        "read_only": not need_password,
        "password_required": need_password,
        "user": args.user if need_password else None,
        "queries": queries,
    }
    with tempfile.TemporaryDirectory(prefix="faqbot-datasette-") as tmp:
        meta_path = Path(tmp) / "metadata.json"
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        cmd = datasette_process.datasette_args(path, args.host, args.port, meta_path)
        # Only PATH, locale and the like: no FAQBOT_SECRET, tokens or API keys in the server's environment.
        proc, lifeline = datasette_process.start(cmd, datasette_process.child_env(extra_env))
        info["server_pid"] = proc.pid
        if args.json:
            sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")  # one line: easy to read from a pipe
        else:
            print(
                f"Serving {path} {'' if need_password else 'read-only '}at {url}"
                + (
                    f" (log in at /-/login as '{args.user}'; labelling: the 'Label a turn' query)"
                    if need_password
                    else ""
                )
                + f"\ncanned queries: {', '.join(queries)}\nCtrl-C to stop."
            )
        sys.stdout.flush()

        def forward(signum, frame):  # stop the server with us; never leave it running alone
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                return 130
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for s, h in old.items():
                signal.signal(s, h)
            os.close(lifeline)
