"""`faqbot logs …` verbs on a fixture log built by the real TurnLog (tests/support/logs.py), run through
`bot.cli.main.main` (and a couple through a real subprocess)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from bot.cli.main import main
from knowledge.loader import PACKAGE_KNOWLEDGE_DIR, load_knowledge
from storage.db import utc_iso
from tests.support.cli import faqbot
from tests.support.cli import run_logs as run
from tests.support.cli import run_logs_json as run_json
from tests.support.env import clean_environ
from tests.support.logs import MATCHED, build_log, copy_log

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_log(tmp_path_factory.mktemp("logs") / "faqbot.db")


@pytest.fixture
def db_copy(fx, tmp_path):
    return copy_log(fx, tmp_path)


def labels(fx, rows, key="turn_id"):
    by_id = {v: k for k, v in fx.ids.items()}
    return {by_id[r[key]] for r in rows}


def ids_of(fx, *names):
    return {fx.id(n) for n in names}


# ------------------------------------------------------------------------------------------- list
def test_list_all_newest_first(fx, capsys):
    rows = run_json(capsys, "list", "--db", fx.path, "-n", 0)
    assert len(rows) == len(fx.ids) == 20
    assert labels(fx, rows) == set(fx.ids)
    # The back-dated turns come last, oldest at the end.
    assert [r["turn_id"] for r in rows[-2:]] == [fx.id("weather"), fx.id("reissue")]
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert len(run_json(capsys, "list", "--db", fx.path, "-n", 3)) == 3
    assert len(run_json(capsys, "list", "--db", fx.path)) == 20  # default 20
    assert len(run_json(capsys, "list", "--db", fx.path, "-n", 0)) == 20


def test_list_filters(fx, capsys):
    def lst(*args):
        return labels(fx, run_json(capsys, "list", "--db", fx.path, "-n", 0, *args))

    assert lst("--route", "none") == {
        "bus1",
        "bus2",
        "bus3",
        "bus5",
        "balance1",
        "balance2",
        "weather",
        "greeting",
        "error",
    }
    assert lst("--route", "llm") == {"llm_fail", "llm_ok"}
    assert lst("--channel", "console") == {"apply_console", "bus5", "weather"}
    assert lst("--channel", "console", "--route", "faq") == {"apply_console"}
    assert lst("--feedback", "down") == {"lost_pii", "bus2", "llm_fail"}
    assert lst("--feedback", "none") == {"bus4", "pw1"}
    assert lst("--feedback", "up") == {"apply_tg", "llm_ok"}
    assert lst("--feedback", "any") == {k for k, v in fx.feedback.items() if v}
    assert lst("--since", "7d") == set(fx.ids) - {"reissue", "weather"}
    month_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).date().isoformat()
    assert lst("--since", month_ago) == set(fx.ids) - {"reissue"}
    assert lst("--since", "2000-01-01T00:00:00+08:00") == set(fx.ids)


def test_list_human_table(fx, capsys):
    code, out, _ = run(capsys, "list", "--db", fx.path, "--route", "llm")
    assert code == 0
    assert "2 turn(s)" in out
    assert fx.id("llm_fail") in out and fx.id("llm_ok") in out
    assert "养老金怎么算" in out


def test_list_all_as_a_table_prints_one_line_per_turn_newest_first(fx, capsys):
    code, out, _ = run(capsys, "list", "--db", fx.path, "-n", 0)
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == f"{len(fx.ids)} turn(s)"
    body = [line for line in lines if re.match(r"^[0-9a-f]{16}", line)]
    assert len(body) == len(fx.ids)  # streamed as fixed-width lines, not one table held in memory
    order = [line.split()[0] for line in body]
    assert order.index(fx.id("weather")) < order.index(fx.id("reissue"))  # 10 days old before 200 days old
    assert any("养老金怎么算" in line and "llm" in line for line in body)


def test_bad_arguments_and_missing_db(tmp_path, capsys):
    code, _, err = run(capsys, "list", "--db", tmp_path / "nope.db")
    assert code == 1 and "no conversation log" in err
    assert not (tmp_path / "nope.db").exists()  # read verbs never create the database
    with pytest.raises(SystemExit) as exc:
        main(["logs", "list", "--since", "yesterday-ish"])
    assert exc.value.code == 2
    assert "not a time" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- show
def test_show_by_unique_prefix_has_whole_trace(fx, capsys):
    full = fx.id("llm_fail")
    prefix = full[:6]
    assert [i for i in fx.ids.values() if i.startswith(prefix)] == [full]
    t = run_json(capsys, "show", prefix, "--db", fx.path)
    assert t["turn_id"] == full
    assert t["question"] == "养老金怎么算" and t["normalized"] == "养老金怎么算"
    assert t["route"] == "llm"
    assert t["model"] == "gpt-4o-mini"
    assert t["guard"].startswith("fail: ungrounded")
    assert "3000" in t["llm_raw"]
    assert t["context_ids"] == ["intro", "apply"]
    assert [c["faq_id"] for c in t["candidates"]] == ["intro", "apply"]
    assert t["latency_ms"] == 900.0
    assert t["knowledge_version"] == load_knowledge(PACKAGE_KNOWLEDGE_DIR).version
    assert [f["kind"] for f in t["feedback_events"]] == ["down"]
    assert t["conversation"]["channel"] == "matrix"

    code, out, _ = run(capsys, "show", prefix, "--db", fx.path)
    assert code == 0
    for text in ("raw LLM output", "养老金按照缴费年限", "gpt-4o-mini", "fail: ungrounded", "candidates", "900.0 ms"):
        assert text in out


def test_show_masked_question_and_pseudonymous_user(fx, capsys):
    t = run_json(capsys, "show", fx.id("lost_pii"), "--db", fx.path)
    assert "[手机号]" in t["question"] and "13812345678" not in json.dumps(t, ensure_ascii=False)
    assert t["masked_phone"] == 1
    assert t["faq_id"] == "lost_reissue"
    user_hash = t["conversation"]["user_hash"]
    assert user_hash and re.fullmatch(r"[0-9a-f]{16,}", user_hash) and "1003" not in user_hash


def test_show_ambiguous_and_unknown(fx, capsys):
    code, _, err = run(capsys, "show", "abcd", "--db", fx.path)
    assert code == 2 and "ambiguous" in err and fx.id("pw1") in err
    code, _, err = run(capsys, "show", "ffffffffffff", "--db", fx.path)
    assert code == 1 and "no turn" in err


# ------------------------------------------------------------------------------------------- search
def test_search_chinese_substring_fts_and_short_like(fx, capsys):
    rows = run_json(capsys, "search", "社保卡", "--db", fx.path, "-n", 0)  # trigram index
    assert {"apply_tg", "apply_mx", "apply_console", "bus1", "bus4"} <= labels(fx, rows)
    rows = run_json(capsys, "search", "怎么申领", "--db", fx.path)
    assert {"apply_tg", "apply_mx", "apply_console"} <= labels(fx, rows)
    rows = run_json(capsys, "search", "公交", "--db", fx.path)  # 2 characters: LIKE
    assert labels(fx, rows) == {"bus1", "bus2", "bus3", "bus4", "bus5"}
    rows = run_json(capsys, "search", "余额", "--db", fx.path)
    assert labels(fx, rows) == {"balance1", "balance2"}
    assert run_json(capsys, "search", "火星", "--db", fx.path) == []
    code, out, _ = run(capsys, "search", "公交", "--db", fx.path)
    assert code == 0 and "5 turn(s)" in out


# ------------------------------------------------------------------------------------------- stats
def test_stats_numbers(fx, capsys):
    s = run_json(capsys, "stats", "--db", fx.path)
    assert s["total"] == 20
    assert s["by_route"] == {"none": 9, "faq": 5, "clarify": 4, "llm": 2}
    assert s["by_channel"] == {"telegram": 12, "matrix": 4, "console": 3, "cli": 1}
    assert s["direct_rate"] == pytest.approx(5 / 20)
    assert (s["thumbs_up"], s["thumbs_down"], s["none_of_these"]) == (2, 3, 2)
    assert s["guard_failures"] == 1 and s["errors"] == 1
    # latencies: 17 matched turns + 900, 1200, 8000 -> nearest-rank p50 = 10th of 20, p95 = 19th
    lat = sorted([m[5] for m in MATCHED] + [900.0, 1200.0, 8000.0])
    assert s["latency_p50_ms"] == lat[9] and s["latency_p95_ms"] == lat[18] == 1200.0
    assert s["top_entries"][0] == {"faq_id": "apply", "count": 3}
    assert {"faq_id": "lost_reissue", "count": 2} in s["top_entries"]
    recent = run_json(capsys, "stats", "--db", fx.path, "--since", "7d")
    assert recent["total"] == 18

    code, out, _ = run(capsys, "stats", "--db", fx.path)
    assert code == 0
    assert "25.0%" in out and "1200 ms" in out and "apply" in out


# ------------------------------------------------------------------------------------------- gaps
def test_gaps_clusters_and_snippets(fx, capsys):
    clusters = run_json(capsys, "gaps", "--db", fx.path)
    first = clusters[0]
    assert first["count"] == 5
    assert first["representative"] == "社保卡能坐公交吗"  # asked twice
    assert {q["question"] for q in first["questions"]} == {
        "社保卡能坐公交吗",
        "社保卡可以坐公交车吗",
        "电子社保卡能乘公交吗",
        "社保卡能不能刷公交",
    }
    assert set(first["turn_ids"]) == ids_of(fx, "bus1", "bus2", "bus3", "bus4", "bus5")
    assert first["routes"] == {"none": 4, "clarify": 1}
    assert first["suggestion"] == "new-entry"
    assert 'answer = """待补充"""' in first["snippet"] and "section = ?" in first["snippet"]
    assert all(f'"{q}",' in first["snippet"] for q in ("社保卡能坐公交吗", "社保卡能不能刷公交"))

    by_rep = {c["representative"]: c for c in clusters}
    pw = by_rep["社保卡密码锁了"]
    assert pw["count"] == 2 and pw["suggestion"] == "alternate"
    assert pw["nearest"]["faq_id"] == "reset_password" and pw["nearest"]["score"] >= 40
    assert "02_reset_password.toml" in pw["snippet"] and '"社保卡密码锁了",' in pw["snippet"]
    nodomain = by_rep["忘记登录密码怎么办"]
    assert nodomain["count"] == 1 and nodomain["suggestion"] == "alternate"
    assert "domain" in nodomain["snippet"]  # warns that an alternate alone will not give a direct answer
    balance = next(c for c in clusters if "医保余额怎么查" in c["examples"])
    assert balance["count"] == 2 and set(balance["examples"]) == {"医保余额怎么查", "怎么查医保余额"}
    pension = by_rep["养老金怎么算"]
    assert pension["reasons"] == {"guard-fail": 1, "thumbs-down": 1}
    # Thumbs-down on a direct answer: flagged, but no masked wording is offered as an alternate.
    lost = next(c for c in clusters if fx.id("lost_pii") in c["turn_ids"])
    assert "[手机号]" not in lost["snippet"] and "answered directly from lost_reissue" in lost["snippet"]
    # Greetings and errors are not gaps; every gap turn is in exactly one cluster.
    all_ids = [t for c in clusters for t in c["turn_ids"]]
    assert len(all_ids) == len(set(all_ids))
    assert fx.id("greeting") not in all_ids and fx.id("error") not in all_ids
    assert [c["count"] for c in clusters] == sorted((c["count"] for c in clusters), reverse=True)

    assert len(run_json(capsys, "gaps", "--db", fx.path, "-n", 2)) == 2
    recent = run_json(capsys, "gaps", "--db", fx.path, "--since", "7d")
    assert "今天天气怎么样" not in {c["representative"] for c in recent}

    code, out, _ = run(capsys, "gaps", "--db", fx.path)
    assert code == 0
    assert out.startswith("5× 社保卡能坐公交吗 — nearest: ")
    assert '   "社保卡密码锁了",' in out


# ------------------------------------------------------------------------------------------- replay
def _knowledge_copy(tmp_path) -> Path:
    dst = tmp_path / "knowledge"
    shutil.copytree(PACKAGE_KNOWLEDGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dst


def _paste_alternates(knowledge: Path, snippet: str) -> None:
    """Do what the snippet says: paste its lines into the named file's alternates list."""
    header, *lines = snippet.splitlines()
    name = re.search(r"(\d\d_[a-z_]+\.toml)", header).group(1)
    path = knowledge / "faq" / name
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("alternates = [\n", "alternates = [\n" + "\n".join(lines) + "\n", 1), encoding="utf-8")


def test_gaps_default_window_is_30_days_and_all_widens_it(db_copy, fx, capsys):
    def cluster_turns(*extra):
        return {t for c in run_json(capsys, "gaps", "--db", db_copy, "-n", 0, *extra) for t in c["turn_ids"]}

    assert fx.id("balance1") in cluster_turns()
    conn = sqlite3.connect(db_copy)
    with conn:  # the balance questions were asked 40 days ago
        conn.execute(
            "UPDATE turns SET ts = ? WHERE id IN (?, ?)",
            (utc_iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=40)), fx.id("balance1"), fx.id("balance2")),
        )
    conn.close()
    default = cluster_turns()
    assert fx.id("balance1") not in default and fx.id("balance2") not in default and fx.id("bus1") in default
    assert {fx.id("balance1"), fx.id("balance2")} <= cluster_turns("--all")
    assert fx.id("balance1") in cluster_turns("--since", "60d")


def test_replay_with_current_knowledge_changes_nothing(fx, capsys):
    r = run_json(capsys, "replay", "--db", fx.path)
    assert r["selected"] == 20 and r["skipped"] == 1 and r["replayed"] == 19  # the error turn has no question
    assert r["counts"] == {"improved": 0, "regressed": 0, "changed": 0, "unchanged": 19}
    assert r["changes"] == []


def test_replay_with_edited_copy_reports_improvements(fx, capsys, tmp_path):
    clusters = run_json(capsys, "gaps", "--db", fx.path)
    pw = next(c for c in clusters if c["representative"] == "社保卡密码锁了")
    knowledge = _knowledge_copy(tmp_path)
    _paste_alternates(knowledge, pw["snippet"])
    # The curator decides the entry answers it: the half-covered note on card passwords (partial.toml) goes too.
    partial = knowledge / "partial.toml"
    if partial.exists():
        partial.write_text(
            re.sub(
                r'\[\[aspect\]\]\nid = "card_password"\n.*?\n\n', "", partial.read_text(encoding="utf-8"), flags=re.S
            ),
            encoding="utf-8",
        )
    load_knowledge(knowledge)  # the pasted snippet is valid: no conflict with another entry

    r = run_json(capsys, "replay", "--db", fx.path, "--knowledge", knowledge)
    assert r["counts"]["improved"] == 2 and r["counts"]["regressed"] == 0
    assert {c["turn_id"] for c in r["changes"]} == ids_of(fx, "pw1", "pw2")
    assert all(
        c["old_route"] == "clarify"
        and c["new_route"] == "faq"
        and c["new_faq_id"] == "reset_password"
        and c["kind"] == "improved"
        for c in r["changes"]
    )
    assert r["knowledge_version"] != load_knowledge(PACKAGE_KNOWLEDGE_DIR).version

    only = run_json(capsys, "replay", "--db", fx.path, "--knowledge", knowledge, "--route", "clarify")
    assert only["selected"] == 4 and only["counts"]["improved"] == 2 and only["counts"]["unchanged"] == 2

    code, out, _ = run(capsys, "replay", "--db", fx.path, "--knowledge", knowledge)
    assert code == 0 and "improved 2" in out and "社保卡密码锁了" in out


def test_replay_reports_edited_answers_and_regressions(fx, capsys, tmp_path):
    knowledge = _knowledge_copy(tmp_path)
    apply_file = knowledge / "faq" / "01_apply.toml"
    apply_file.write_text(
        apply_file.read_text(encoding="utf-8").replace('answer = """', 'answer = """（已更新）', 1), encoding="utf-8"
    )
    r0 = run_json(capsys, "replay", "--db", fx.path, "--knowledge", knowledge)
    edited = [c for c in r0["changes"] if c["answer_changed"]]
    assert {c["turn_id"] for c in edited} == ids_of(fx, "apply_tg", "apply_mx", "apply_console")
    assert all(c["kind"] == "changed" for c in edited)
    assert r0["counts"]["changed"] == 3

    # Remove the lost_reissue entry altogether: its direct answers regress.
    (knowledge / "faq" / "09_lost_reissue.toml").unlink()
    partial = knowledge / "partial.toml"  # half-covered details name the entry: drop the references too
    if partial.exists():
        partial.write_text(
            partial.read_text(encoding="utf-8").replace('"lost_reissue", ', "").replace('["lost_reissue"]', "[]"),
            encoding="utf-8",
        )
    r1 = run_json(capsys, "replay", "--db", fx.path, "--knowledge", knowledge)
    regressed = {c["turn_id"] for c in r1["changes"] if c["kind"] == "regressed"}
    assert ids_of(fx, "lost_pii", "reissue") <= regressed
    assert r1["counts"]["regressed"] == len(regressed) >= 2


# ------------------------------------------------------------------------------------------- export
def test_export_csv_file_parses_back(fx, capsys, tmp_path):
    out_file = tmp_path / "turns.csv"
    code, out, _ = run(capsys, "export", "--format", "csv", "-o", out_file, "--db", fx.path)
    assert code == 0 and "exported 20" in out
    with out_file.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    by_id = {r["turn_id"]: r for r in rows}
    assert set(by_id) == set(fx.ids.values())
    assert rows[0]["turn_id"] == fx.id("reissue")  # oldest first
    t = by_id[fx.id("bus4")]
    assert (t["thumbs_up"], t["thumbs_down"], t["none_of_these"], t["feedback"]) == ("0", "0", "1", "none")
    assert by_id[fx.id("apply_tg")]["thumbs_up"] == "1"
    assert json.loads(by_id[fx.id("llm_fail")]["context_ids"]) == ["intro", "apply"]
    assert json.loads(t["candidates"])[0]["faq_id"]
    assert "13812345678" not in out_file.read_text(encoding="utf-8-sig")
    assert "user_hash" not in rows[0]


def test_export_jsonl_stdout_with_filters(fx, capsys):
    code, out, err = run(capsys, "export", "--format", "jsonl", "--route", "llm", "--db", fx.path)
    assert code == 0 and "exported 2" in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert labels(fx, rows) == {"llm_fail", "llm_ok"}
    fail = next(r for r in rows if r["turn_id"] == fx.id("llm_fail"))
    assert fail["thumbs_down"] == 1 and fail["context_ids"] == ["intro", "apply"] and fail["guard"].startswith("fail")
    code, out, _ = run(capsys, "export", "--format", "jsonl", "--feedback", "down", "--db", fx.path)
    assert labels(fx, [json.loads(x) for x in out.splitlines()]) == {"lost_pii", "bus2", "llm_fail"}
    code, out, err = run(capsys, "export", "--format", "csv", "--since", "7d", "--db", fx.path, "--json")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 18
    assert json.loads(err)["rows"] == 18


# ------------------------------------------------------------------------------------------- purge
def test_purge_dry_run_then_delete(db_copy, fx, capsys):
    dry = run_json(capsys, "purge", "--older-than", "100d", "--dry-run", "--db", db_copy)
    assert dry["would_delete"] == 1 and dry["dry_run"] is True
    assert len(run_json(capsys, "list", "-n", 0, "--db", db_copy)) == 20

    done = run_json(capsys, "purge", "--older-than", "100d", "--db", db_copy)
    assert done["deleted"] == 1
    remaining = labels(fx, run_json(capsys, "list", "-n", 0, "--db", db_copy))
    assert remaining == set(fx.ids) - {"reissue"}

    default = run_json(capsys, "purge", "--db", db_copy)  # the 90-day retention default
    assert default["deleted"] == 0 and default["older_than_days"] == 90

    code, out, _ = run(capsys, "purge", "--older-than", "5d", "--db", db_copy)
    assert code == 0 and out.startswith("deleted 1 turn(s) older than 5 day(s)")
    conn = sqlite3.connect(db_copy)
    try:
        assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == 18
        assert (
            conn.execute("SELECT count(*) FROM feedback WHERE turn_id NOT IN (SELECT id FROM turns)").fetchone()[0] == 0
        )
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # The full-text index still finds what is left after VACUUM.
    assert labels(fx, run_json(capsys, "search", "社保卡能坐", "--db", db_copy)) == {"bus1", "bus2"}


def test_compact_converts_rows_written_before_the_compact_format(db_copy, fx, capsys):
    conn = sqlite3.connect(db_copy)
    with conn:  # as the writer stored candidates before storage.trace: objects with keys and the entry's question
        conn.execute(
            "UPDATE turns SET candidates = ? WHERE id = ?",
            (
                json.dumps(
                    [{"faq_id": "apply", "section": 1, "score": 88.5, "question": "电子社保卡怎么申领？"}],
                    ensure_ascii=False,
                ),
                fx.id("apply_tg"),
            ),
        )
    conn.close()
    before = run_json(capsys, "show", fx.id("apply_tg"), "--db", db_copy)["candidates"]
    assert before[0]["question"] == "电子社保卡怎么申领？"
    result = run_json(capsys, "compact", "--db", db_copy)
    assert result["converted"] == 1 and result["bytes_after"] < result["bytes_before"]
    after = run_json(capsys, "show", fx.id("apply_tg"), "--db", db_copy)["candidates"]
    assert after == [{"faq_id": "apply", "section": 1, "score": 88.5}]
    assert run_json(capsys, "compact", "--db", db_copy)["converted"] == 0  # nothing left: a rerun is a no-op


def test_purge_respects_retention_setting(db_copy, capsys, monkeypatch):
    monkeypatch.setenv("FAQBOT_RETENTION_DAYS", "7")
    dry = run_json(capsys, "purge", "--dry-run", "--db", db_copy)
    assert dry["would_delete"] == 2 and dry["older_than_days"] == 7


# ------------------------------------------------------------------------------------------- subprocess
def _cli(*args, cwd, env_extra=None):
    return faqbot(*args, cwd=cwd, env={**clean_environ(), **(env_extra or {})})


def test_verbs_in_a_real_process(fx, tmp_path, capsys, monkeypatch):
    """One `faqbot logs` verb through the real entry point; the same settings in-process for the others."""
    # --db comes from FAQBOT_DB here, as in production.
    p = _cli("logs", "stats", "--json", cwd=tmp_path, env_extra={"FAQBOT_DB": str(fx.path)})
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total"] == 20
    monkeypatch.setenv("FAQBOT_DB", str(fx.path))
    code, out, err = run(capsys, "show", fx.id("bus4")[:8])
    assert code == 0, err
    assert "电子社保卡能乘公交吗" in out and "clarify" in out
    monkeypatch.delenv("FAQBOT_DB")
    code, out, err = run(capsys, "list", "--db", tmp_path / "missing.db")
    assert code == 1 and "no conversation log" in err
