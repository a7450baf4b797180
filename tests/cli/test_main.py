"""The `faqbot` command line: ask (JSON, batch, plain), shell, run, knowledge check, usage errors. Each command runs
once as a real subprocess (the `faqbot` entry point, a real pipe on stdin, what it imports, the exit code from the
OS); the variants, where only the output, the stored rows and the exit code count, run in-process
(tests/support/cli.py `faqbot_main`, with the same environment: the `main_env` fixture)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.answering import texts
from bot.app.log_filter import LIBRARY_LOGGERS
from knowledge.normalize import to_traditional
from tests.support.cli import faqbot_main

REPO = Path(__file__).resolve().parents[2]
CANDIDATE_KEYS = {"faq_id", "section", "score", "question"}


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def check_reply_json(d: dict) -> None:
    for key in ("question", "route", "answer", "faq_id", "section", "score", "candidates"):
        assert key in d, key
    assert d["route"] in ("faq", "clarify", "llm", "none")
    assert isinstance(d["answer"], str) and d["answer"]
    assert isinstance(d["score"], (int, float)) and 0 <= d["score"] <= 100
    assert isinstance(d["candidates"], list) and len(d["candidates"]) <= 5
    for c in d["candidates"]:
        assert CANDIDATE_KEYS <= set(c)
        assert isinstance(c["faq_id"], str) and isinstance(c["question"], str)
        assert c["section"] in range(14) and 0 <= c["score"] <= 100
    scores = [c["score"] for c in d["candidates"]]
    assert scores == sorted(scores, reverse=True)
    if d["candidates"]:
        assert d["score"] == scores[0]
    if d["route"] == "faq":
        assert isinstance(d["faq_id"], str) and d["section"] in range(14)
    else:
        assert d["faq_id"] is None and d["section"] is None


# -- ask ----------------------------------------------------------------------------------------------------
def test_ask_json(main_env, kb, capsys):
    code, out, err = faqbot_main(capsys, "ask", "社保卡丢了怎么办", "--json")  # the process: the batch test below
    assert code == 0, err
    lines = json_lines(out)
    assert len(lines) == 1
    d = lines[0]
    check_reply_json(d)
    assert d["question"] == "社保卡丢了怎么办"
    assert (d["route"], d["faq_id"], d["section"]) == ("faq", "lost_reissue", 9)
    assert kb.get("lost_reissue").answer in d["answer"]
    assert d["candidates"][0]["faq_id"] == "lost_reissue" and d["candidates"][0]["question"] == "社保卡挂失补办问题？"
    assert d["knowledge_version"] == kb.version
    assert not Path(main_env["FAQBOT_DB"]).exists()  # `ask` does not write the log unless --log


BATCH = [
    ("社保卡丢了怎么办", "faq", "lost_reissue"),
    ("", "none", None),
    ("身份证丢了怎么补办", "none", None),
    ("今天天气怎么样", "none", None),
    ("电子社保卡信息跟实体卡不一样怎么办", "clarify", None),
    ("新生儿怎么办理社保卡", "faq", "newborn"),
    ("社保卡丟了怎麼辦", "faq", "lost_reissue"),
    ("我的身份证号是13110219650712341X，社保卡丢了怎么办", "faq", "lost_reissue"),
    ("lost my card", "none", None),
    ("😀", "none", None),
    ("社保卡丢了怎么办" + "，" * 10_000, "faq", "lost_reissue"),
]


def test_ask_batch_from_stdin_in_order(faqbot):
    """The real `faqbot ask` process, questions on a pipe."""
    stdin = "".join(q + "\n" for q, _, _ in BATCH)
    p = faqbot("ask", "--json", stdin=stdin)
    assert p.returncode == 0, p.stderr
    out = json_lines(p.stdout)
    assert len(out) == len(BATCH)
    for (q, route, faq_id), d in zip(BATCH, out, strict=False):
        check_reply_json(d)
        assert (d["route"], d["faq_id"]) == (route, faq_id), (q[:30], d["route"], d["faq_id"])
    assert out[0]["question"] == BATCH[0][0] and out[5]["question"] == BATCH[5][0]
    # Personal data is masked in the echoed question and noted in the answer.
    assert "13110219650712341X" not in p.stdout
    assert out[7]["question"].startswith("我的身份证号是[") and out[7]["answer"].endswith(texts.PII_NOTE)
    assert out[1]["answer"] == texts.EMPTY
    assert "社会保障卡服务网点" in out[3]["answer"]
    assert len(out[4]["choices"]) == 3
    assert "掛失" in out[6]["answer"]  # asked in Traditional, answered in Traditional
    assert len(out[10]["question"]) <= 2000


def test_ask_plain_text(main_env, kb, capsys):
    e = kb.get("lost_reissue")
    code, out, err = faqbot_main(capsys, "ask", "社保卡丢了怎么办")
    assert code == 0, err
    assert out == f"[faq] {texts.faq_text(e.question, e.answer)}\n"

    code, out, err = faqbot_main(capsys, "ask", stdin="社保卡丢了怎么办\n今天天气怎么样\n")
    assert code == 0, err
    first, second = out.split("\n\n[", 1)
    assert first == f"[faq] {texts.faq_text(e.question, e.answer)}"
    assert second.startswith("none] " + texts.OUT_OF_SCOPE)


def test_ask_imports_no_chat_framework(tmp_path, subprocess_env):
    code = (
        "import sys\n"
        "from bot.cli.main import main\n"
        "rc = main(['ask', '社保卡丢了怎么办', '--json'])\n"
        "heavy = sorted(m for m in ('aiogram', 'openai', 'mautrix', 'aiohttp', 'aiosqlite') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=subprocess_env,
        cwd=tmp_path,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout


def test_ask_with_broken_knowledge_exits_1(main_env, knowledge_copy, capsys, monkeypatch):
    f = knowledge_copy / "faq" / "09_lost_reissue.toml"
    f.write_text(f.read_text(encoding="utf-8").replace("section = 9", "section = 14"), encoding="utf-8")
    monkeypatch.setenv("FAQBOT_KNOWLEDGE_DIR", str(knowledge_copy))
    code, out, err = faqbot_main(capsys, "ask", "社保卡丢了怎么办")
    assert code == 1
    assert "09_lost_reissue.toml [lost_reissue]: unknown section 14" in err
    assert "Traceback" not in err and out == ""


# -- shell and run ---------------------------------------------------------------------------------------------
def test_shell_with_piped_stdin(faqbot, subprocess_env, kb):
    """The real `faqbot shell` process, lines on a pipe."""
    lines = [
        "社保卡丢了怎么办",
        "",
        "电子社保卡信息跟实体卡不一样怎么办",
        "2",
        "今天天气怎么样",
        "/faq",
        "/help",
        "社保卡丟了怎麼辦",
    ]
    p = faqbot("shell", stdin="\n".join(lines) + "\n")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    lost = kb.get("lost_reissue")
    assert out.startswith(texts.faq_text(lost.question, lost.answer) + "\n")
    assert texts.EMPTY in out
    assert texts.CLARIFY_HEAD in out
    # "2" picked the second choice of the clarify.
    clarify_block = out[out.index(texts.CLARIFY_HEAD) :]
    second_choice = clarify_block.splitlines()[2].removeprefix("2. ")
    chosen = next(e for e in kb.entries if e.question == second_choice)
    assert texts.faq_text(chosen.question, chosen.answer) in out
    assert out.index(texts.CLARIFY_HEAD) < out.index(texts.faq_text(chosen.question, chosen.answer))
    assert texts.OUT_OF_SCOPE in out
    assert to_traditional(lost.answer) in out
    assert "您的问题>" not in out  # no prompt when piped
    assert "\n".join(f"{e.section}. {e.question}" for e in kb.entries) in out  # /faq lists the topics
    assert texts.HELP in out

    # Every line was logged to the database FAQBOT_DB points at.
    db = Path(subprocess_env["FAQBOT_DB"])
    assert db.exists()
    with sqlite3.connect(db) as conn:
        routes = [r[0] for r in conn.execute("SELECT route FROM turns ORDER BY ts, id")]
    assert routes == ["faq", "none", "clarify", "faq", "none", "faq"]


def test_shell_exits_0_on_immediate_eof(main_env, capsys):
    code, out, err = faqbot_main(capsys, "shell", stdin="")
    assert code == 0, err
    assert out == ""


def test_run_without_token_is_the_console(main_env, kb, capsys):
    """In-process: `faqbot run` as a real process is tests/telegram/test_run.py (with a fake Bot API)."""
    assert "TELEGRAM_BOT_TOKEN" not in os.environ
    code, out, err = faqbot_main(capsys, "run", stdin="社保卡丢了怎么办\n")
    assert code == 0, err
    lost = kb.get("lost_reissue")
    assert out.strip() == texts.faq_text(lost.question, lost.answer)
    assert "TELEGRAM_BOT_TOKEN" in err  # says why it is the console


def test_an_in_process_run_leaves_the_process_as_it_was(main_env, capsys):
    """`faqbot_main` puts back what a command changes process-wide (the shell sets up logging: the root level and
    the redaction filters), so in-process runs stay independent of each other and of later tests on the worker."""

    def state():
        loggers = [logging.getLogger(), *map(logging.getLogger, LIBRARY_LOGGERS)]
        filterers = [*loggers, *(h for lg in loggers for h in lg.handlers), logging.lastResort]
        return logging.getLogger().level, list(logging.getLogger().handlers), [list(f.filters) for f in filterers]

    before, stdin = state(), sys.stdin
    code, out, err = faqbot_main(capsys, "shell", stdin="社保卡丢了怎么办\n")
    assert code == 0 and out, err
    assert state() == before and sys.stdin is stdin


# -- knowledge check ------------------------------------------------------------------------------------------
def test_knowledge_check_ok(main_env, kb, capsys):
    code, out, err = faqbot_main(capsys, "knowledge", "check")  # the real process: the broken folder below
    assert code == 0, err
    assert out.startswith(f"OK: {len(kb.entries)} entries")
    assert kb.version in out

    code, out, err = faqbot_main(capsys, "knowledge", "check", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["ok"] is True and d["version"] == kb.version and d["entries"] == len(kb.entries)
    assert d["alternates"] == sum(len(e.alternates) for e in kb.entries)
    assert isinstance(d["conflicts"], list) and isinstance(d["warnings"], list)
    for c in d["conflicts"]:
        assert {"file", "faq_id", "alternate", "own_score", "other_id", "other_score"} <= set(c)
        assert c["other_score"] >= c["own_score"] and c["other_id"] != c["faq_id"]  # rounded to 0.1


def test_knowledge_check_broken_dir(faqbot, tmp_path, subprocess_env, knowledge_copy, capsys):
    """The real `faqbot knowledge check` process: a folder that fails to load (no conflict scoring, the cheaper run)."""
    phone = knowledge_copy / "faq" / "10_change_phone.toml"
    phone.write_text(
        phone.read_text(encoding="utf-8").replace('id = "change_phone"', 'id = "lost_reissue"'), encoding="utf-8"
    )
    env = {**subprocess_env, "FAQBOT_KNOWLEDGE_DIR": str(knowledge_copy)}
    p = faqbot("knowledge", "check", env=env, cwd=tmp_path)
    assert p.returncode == 1
    assert "10_change_phone.toml [lost_reissue]: duplicate id (also in 09_lost_reissue.toml)" in p.stderr
    assert "Traceback" not in p.stderr

    code, out, _ = faqbot_main(capsys, "knowledge", "check", "--json", "--dir", knowledge_copy)
    assert code == 1
    d = json.loads(out)
    assert d["ok"] is False
    assert any("10_change_phone.toml [lost_reissue]: duplicate id" in e for e in d["errors"])


def test_a_usage_error_exits_2_with_one_line(faqbot):
    p = faqbot("nosuchcommand")
    assert p.returncode == 2
    [line] = p.stderr.splitlines()  # one line that says what is wrong and where help is, not argparse's usage block
    assert "error:" in line and "--help" in line


@pytest.mark.parametrize("args", [[], ["nosuchcommand"], ["knowledge"], ["eval"]])
def test_usage_errors_exit_2(capsys, args):
    """Each kind of usage error in-process (the exit code through a real process is checked above)."""
    with pytest.raises(SystemExit) as exc:
        faqbot_main(capsys, *args)
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "error:" in line and "--help" in line


COMMANDS = [
    ["ask", "q"],
    ["shell"],
    ["run"],
    ["eval", "f.jsonl"],
    ["eval-guard", "f.jsonl"],
    ["knowledge", "check"],
    ["knowledge", "suggest"],
    ["knowledge", "approve", "x"],
    *[
        ["logs", *verb]
        for verb in (
            ["list"],
            ["show", "x"],
            ["search", "x"],
            ["stats"],
            ["gaps"],
            ["replay"],
            ["export"],
            ["purge"],
            ["compact"],
            ["serve"],
            ["label", "x", "spam"],
            ["review"],
        )
    ],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_names_a_function_that_exists_and_logs_verbs_take_json(argv):
    """Subcommands are lazy ("module:function", imported when they run): a typo would only show when a user runs
    that command, so each one is resolved here; every `logs` verb takes --json."""
    import importlib

    from bot.cli.parser import build_parser

    args = build_parser().parse_args(argv + (["--json"] if argv[0] == "logs" else []))
    module, _, name = args.func.partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    assert argv[0] != "logs" or args.json is True
