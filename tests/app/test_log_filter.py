"""Tests for bot.app.log_filter with real logging handlers writing to StringIO."""

from __future__ import annotations

import io
import logging

import pytest
from aiogram.client.telegram import PRODUCTION

from bot.app.log_filter import LIBRARY_LOGGERS, RedactSecretsFilter, install_redaction
from tests.support.env import set_environ

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"  # shape of a Telegram bot token, not a real one
API_KEY = "sk-test-0123456789abcdefghijklmnop"
PASSWORD = "p@ss word/42!"


@pytest.fixture
def capture():
    """A logger with a StreamHandler (plain formatter) on StringIO; yields (logger, handler, stream)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("faqbot.test.secrets")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, handler, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _with_filter(capture, secrets=(TOKEN, API_KEY, PASSWORD)):
    logger, handler, stream = capture
    handler.addFilter(RedactSecretsFilter(list(secrets)))
    return logger, stream


def test_secret_in_message(capture):
    logger, stream = _with_filter(capture)
    logger.info(f"starting with token {TOKEN} and key {API_KEY}")
    out = stream.getvalue()
    assert TOKEN not in out and API_KEY not in out
    assert "starting with token *** and key ***" in out


def test_secret_in_args(capture):
    logger, stream = _with_filter(capture)
    logger.info("token=%s key=%r n=%d", TOKEN, API_KEY, 3)
    logger.info("mapping %(pw)s", {"pw": PASSWORD})
    out = stream.getvalue()
    assert TOKEN not in out and API_KEY not in out and PASSWORD not in out
    assert "token=*** key='***' n=3" in out
    assert "mapping ***" in out


def test_url_encoded_secret(capture):
    logger, stream = _with_filter(capture)
    logger.info("POST https://db.example/login?password=p%40ss%20word%2F42%21&x=1")
    out = stream.getvalue()
    assert "p%40ss" not in out
    assert "password=***&x=1" in out


def test_aiogram_style_url(capture):
    logger, stream = _with_filter(capture)
    url = PRODUCTION.api_url(token=TOKEN, method="getMe")  # how aiogram itself builds the request URL
    assert TOKEN in url
    logger.debug("Request: %s", url)
    out = stream.getvalue()
    assert TOKEN not in out
    assert "https://api.telegram.org/bot***/getMe" in out


def test_unknown_bot_token_shape_is_redacted_too(capture):
    # a token that was not configured (e.g. another bot's) is still caught by the pattern
    logger, stream = _with_filter(capture, secrets=[])
    other = "987654:" + "Zz9_-" * 7
    logger.warning("https://api.telegram.org/bot%s/getUpdates failed", other)
    out = stream.getvalue()
    assert other not in out
    assert "bot***/getUpdates failed" in out


def test_secret_in_exception(capture):
    logger, stream = _with_filter(capture)
    try:
        raise RuntimeError(f"Cannot connect to https://api.telegram.org/bot{TOKEN}/getMe (key {API_KEY})")
    except RuntimeError:
        logger.exception("request failed")
    out = stream.getvalue()
    assert TOKEN not in out and API_KEY not in out
    assert "request failed" in out
    assert "Traceback (most recent call last)" in out
    assert "RuntimeError: Cannot connect to https://api.telegram.org/bot***/getMe (key ***)" in out


def test_exception_chain_and_stack_info(capture):
    logger, stream = _with_filter(capture)
    try:
        try:
            raise KeyError(PASSWORD)
        except KeyError as exc:
            raise ValueError("wrapped") from exc
    except ValueError:
        logger.error("chained", exc_info=True, stack_info=True)
    out = stream.getvalue()
    assert PASSWORD not in out
    assert "KeyError: '***'" in out
    assert "ValueError: wrapped" in out
    assert "Stack (most recent call last)" in out


def test_rich_handler_does_not_rerender_the_live_exception():
    from rich.console import Console
    from rich.logging import RichHandler

    stream = io.StringIO()
    handler = RichHandler(console=Console(file=stream, width=200), rich_tracebacks=True, tracebacks_show_locals=True)
    handler.addFilter(RedactSecretsFilter([TOKEN]))
    logger = logging.getLogger("faqbot.test.secrets.rich")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        token_in_a_local = TOKEN  # noqa: F841 - would be shown by show_locals
        raise RuntimeError(f"bad token {TOKEN}")
    except RuntimeError:
        logger.exception("boom")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = stream.getvalue()
    assert "boom" in out and "RuntimeError" in out
    assert TOKEN not in out
    assert "***" in out


def test_short_and_empty_secrets_are_ignored(capture):
    logger, stream = _with_filter(capture, secrets=["", None, "abc", "   ", API_KEY])
    logger.info("abc and the key %s", API_KEY)
    assert "abc and the key ***" in stream.getvalue()


def test_longer_secret_containing_a_shorter_one_is_replaced_whole(capture):
    logger, stream = _with_filter(capture, secrets=["secret-value", "secret-value-extended"])
    logger.info("x secret-value-extended y")
    assert "x *** y" in stream.getvalue()


def test_filter_never_drops_records(capture):
    logger, stream = _with_filter(capture)
    for i in range(3):
        logger.info("line %d", i)
    assert stream.getvalue().count("line ") == 3


def test_broken_format_string_does_not_leak(capture):
    logger, stream = _with_filter(capture)
    logger.info("two placeholders %s %s", TOKEN)  # one argument missing
    out = stream.getvalue()
    assert TOKEN not in out
    assert "two placeholders" in out


@pytest.fixture
def root_capture():
    """A StringIO handler on the root logger; removes it and every installed filter afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    targets = [*root.handlers, logging.lastResort]
    for name in LIBRARY_LOGGERS:
        targets.append(logging.getLogger(name))
        targets.extend(logging.getLogger(name).handlers)
    for target in targets:
        if target is None:
            continue
        for f in [f for f in target.filters if isinstance(f, RedactSecretsFilter)]:
            target.removeFilter(f)


def test_install_redaction_covers_child_loggers(root_capture):
    install_redaction([TOKEN, API_KEY])
    # aiogram logs through child loggers ("aiogram.event", ...): a filter on "aiogram" alone would not see them
    logging.getLogger("aiogram.event").warning("Request %s", PRODUCTION.api_url(token=TOKEN, method="getMe"))
    logging.getLogger("httpx").warning("HTTP Request: POST https://llm.example/v1 api_key=%s", API_KEY)
    logging.getLogger("faqbot.core").warning("our own code: %s", TOKEN)
    out = root_capture.getvalue()
    assert TOKEN not in out and API_KEY not in out
    assert "aiogram.event Request https://api.telegram.org/bot***/getMe" in out
    assert "api_key=***" in out
    assert "our own code: ***" in out


def test_install_redaction_attaches_to_library_loggers_and_is_not_duplicated(root_capture):
    install_redaction([TOKEN])
    install_redaction([TOKEN, API_KEY])  # second call replaces the first filter
    for name in LIBRARY_LOGGERS:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RedactSecretsFilter)]
        assert len(filters) == 1
    root_filters = [f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, RedactSecretsFilter)]
    assert root_filters and len(root_filters) == len(logging.getLogger().handlers)
    logging.getLogger("mautrix.client").warning("key %s", API_KEY)
    assert "key ***" in root_capture.getvalue()


# ------------------------------------------------------------------ secrets echoed by an LLM server (issue 12.6)
async def test_secret_echoed_by_the_llm_server_is_not_stored_or_printed(main_env, capsys, monkeypatch):
    """A server that answers 401 "Incorrect API key provided: <key>": `faqbot ask --json --log` prints and stores
    the error with the key redacted, and `logs show` of an older row that still holds the key prints it redacted.
    In-process (tests/support/cli.py `faqbot_main`); what the command prints, stores and logs is checked."""
    import json
    import sqlite3

    from tests.fakes.openai_server import FakeOpenAI, status
    from tests.support.cli import faqbot_main, faqbot_main_async

    key = "local-llm-key-for-tests-7731"  # configured, not shaped like any known key
    other = "sk-proj-Unconfigured0123456789abcdef"  # an unconfigured key of a well-known shape

    async with FakeOpenAI() as fake:
        message = f"Incorrect API key provided: {key} (also tried {other})"
        fake.script(
            status(401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}})
        )
        set_environ(
            monkeypatch,
            {
                "OPENAI_BASE_URL": fake.base_url + "/v1",
                "OPENAI_API_KEY": key,
                "FAQBOT_LLM_MAX_RETRIES": "0",
                "FAQBOT_SECRET": "pseudonym-secret-for-tests",
                "FAQBOT_LOG_LEVEL": "DEBUG",
            },
        )
        # `faqbot ask` configures no logging: in its process the root logger has no handler, so the warning about
        # the failed call goes to standard error through `logging.lastResort`. The same here (pytest's handlers
        # would otherwise take the record).
        monkeypatch.setattr(logging.getLogger(), "handlers", [])
        code, out, err = await faqbot_main_async(capsys, "ask", "--json", "--log", "办这个东西要不要收钱")
    assert code == 0, err
    [row] = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert row["route"] == "llm" and "Incorrect API key provided: ***" in row["error"]
    assert "Incorrect API key provided: ***" in err  # the logged warning, redacted
    for text in (out, err):
        assert key not in text and other not in text

    db = main_env["FAQBOT_DB"]
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT error, llm_raw, answer FROM turns").fetchall()
    dump = "\n".join(line for line in conn.iterdump())
    assert len(stored) == 1 and "Incorrect API key provided: ***" in stored[0][0]
    assert key not in dump and other not in dump
    # a row written before the fix still holds the key: printing it redacts it
    conn.execute("UPDATE turns SET error = ?", (message,))
    conn.commit()
    [(turn_id,)] = conn.execute("SELECT id FROM turns").fetchall()
    conn.close()
    for args in (("logs", "show", turn_id, "--db", db), ("logs", "show", turn_id, "--db", db, "--json")):
        code, out, err = faqbot_main(capsys, *args)
        assert code == 0, err
        assert "Incorrect API key provided" in out
        assert key not in out + err and other not in out + err


def test_secret_redactor_and_redacting_stream():
    from bot.app.log_filter import RedactingStream, secret_redactor

    redact = secret_redactor([API_KEY, PASSWORD])
    assert redact(f"key {API_KEY} pw {PASSWORD}") == "key *** pw ***"
    assert redact("Authorization: Bearer abcdefghijklmnop.qrs") == "Authorization: ***"
    assert redact("sk-short and sk-") == "sk-short and sk-"  # not key-shaped: left alone
    sink = io.StringIO()
    stream = RedactingStream(sink, redact)
    print("token", TOKEN, "and", API_KEY, file=stream)
    assert sink.getvalue() == "token *** and ***\n"


def test_personal_data_is_masked_in_messages_and_tracebacks(capture):
    logger, stream = _with_filter(capture)
    ident = "11010519491231002X"
    try:
        raise ValueError(
            f"Content: {{'from': {{'first_name': '王小明', 'username': 'wxm_88'}}, 'text': '证件{ident}'}}"
        )
    except ValueError:
        logger.exception("could not parse an update from %s", "王小明")
    out = stream.getvalue()
    for raw in (ident, "王小明", "wxm_88"):
        assert raw not in out, raw
    assert "ValueError: Content:" in out and "[身份证号]" in out and "'first_name': '[姓名]'" in out


def test_secret_redactor_leaves_personal_data_to_the_masking_of_stored_text():
    from bot.app.log_filter import secret_redactor

    # the CLI prints stored (already masked) text: its redactor only removes secrets, it does not rewrite numbers
    assert secret_redactor([API_KEY])("热线12333 回答 13812345678") == "热线12333 回答 13812345678"


def test_a_message_holding_the_internal_part_break_is_still_cleaned(capture):
    logger, stream = _with_filter(capture)
    logger.warning("odd\n\x00\x00\ntext %s first_name='王小明'", TOKEN)
    out = stream.getvalue()
    assert TOKEN not in out and "王小明" not in out and "odd" in out


def test_prefilter_skips_no_secret_in_printed_lines():
    """`redact` skips its regex for text that cannot hold a secret; every shape of secret is still caught, inside a
    line of `logs list --json` too, and the result equals the full pattern applied to every text."""
    import json
    import re
    from urllib.parse import quote

    from bot.app.log_filter import API_KEY_RE, BOT_TOKEN_RE, secret_redactor

    secrets = [API_KEY, PASSWORD, "中文口令abcdef"]
    redact = secret_redactor(secrets)
    values = {s for s in secrets} | {quote(s, safe="") for s in secrets}
    full = re.compile(
        "|".join([re.escape(s) for s in sorted(values, key=len, reverse=True)] + [BOT_TOKEN_RE, API_KEY_RE])
    )
    row = {
        "id": "0192f3a4b5c6",
        "ts": "2026-11-29T21:58:57.123Z",
        "question": "电子社保卡怎么申领？",
        "answer": "登录国家社会保险公共服务平台……",
        "candidates": [["3", 3, 0.91]],
    }
    plain = json.dumps(row, ensure_ascii=False)
    assert redact(plain) == plain
    hidden = [
        TOKEN,
        API_KEY,
        PASSWORD,
        quote(PASSWORD, safe=""),
        "中文口令abcdef",
        "sk-otherkey0123456789abc",
        "987654321:" + "Z" * 35,
        "BeArEr abcdefghijklmnop.qrs",
        "BEARER  XYZabcdefghijkl==",
    ]
    texts = [plain, "", "::::", "sk-", "bearer", "12:34:56 " + "a" * 29, "12:" + "a" * 30]
    for secret in hidden:
        line = json.dumps({**row, "llm_raw": f"Incorrect API key provided: {secret}"}, ensure_ascii=False)
        texts += [line, f"前缀{secret}后缀", secret]
        assert secret not in redact(line), secret
        assert "***" in redact(line)
    for text in texts:
        assert redact(text) == full.sub("***", text), text
