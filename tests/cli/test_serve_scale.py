"""The turns table in Datasette on a big log, checked over HTTP at small scale: the search box (served by the
faqbot_search plugin) lists the right turns newest first with the right count, reads at most ``max_matches``
matches whatever their number, and the default facets (route, channel) are computed from the column indexes.

Timings belong to `make bench` (tests/bench/logscale.py); here the SQL Datasette ran is replayed and its work
counted in SQLite VM steps, which do not depend on the machine's speed. The tests only read, so they share one
Datasette started as `faqbot logs serve` starts it, serving two logs, one with a lower search cap (``logs``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.answering.types import Conversation, Reply, Route
from bot.cli.datasette_process import GUARD_PLUGIN, datasette_args, guard_config
from bot.cli.serve import datasette_metadata
from storage.writer import TurnLog
from tests.support.cli import child_env
from tests.support.logs import SECRET
from tests.support.ports import free_port, wait_for_port

pytest.importorskip("datasette")
from datasette.utils import escape_fts  # noqa: E402  (after the skip)

ROUTES = [Route.FAQ, Route.NONE, Route.CLARIFY, Route.LLM]


async def _write(path: Path, matching: int, other: int) -> list[str]:
    """``matching`` turns asking about 社保卡 and ``other`` about 养老金, interleaved, by the real writer; returns the
    ids of the matching ones in the order they were logged."""
    log = TurnLog(path, secret=SECRET, flush_interval=0.001)
    await log.start()
    ids = []
    try:
        total = matching + other
        for i in range(total):
            hit = (i * matching) // total != ((i + 1) * matching) // total  # spread evenly over the log
            q = f"第{i}个问题：社保卡怎么办理" if hit else f"第{i}个问题：养老金怎么领"
            conv = Conversation(
                "matrix" if i % 3 == 0 else "telegram", str(1000 + i % 7), "private", user_id=str(1000 + i % 7)
            )
            reply = Reply(route=ROUTES[i % 4], text="答", question=q, normalized=q)
            log.record_turn(conv, reply)
            if hit:
                ids.append(reply.turn_id)
            if i % 100 == 99:
                await log.flush()
        await log.flush()
    finally:
        await log.close()
    assert len(ids) == matching
    return ids


def _log(path: Path, matching: int, other: int) -> list[str]:
    return asyncio.run(_write(path, matching, other))


def _json(ds, path: str) -> dict:
    status, body = ds.get(path)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def _html(ds, path: str) -> str:
    status, body = ds.get(path)
    assert status == 200, (status, body[:500])
    return body.decode()


class LogsDatasette:
    """Datasette as `faqbot logs serve` starts it -- its command line, metadata and guard (bot.cli.datasette_process,
    bot.cli.serve) -- started directly, to serve several logs at once, each with its own search cap: ``logs`` maps a
    log to its ``max_matches`` (None: the shipped one). `faqbot logs serve` (tests/cli/datasette.py) serves one log
    with the shipped cap."""

    def __init__(self, logs: dict[Path, int | None], folder: Path):
        self.port = free_port()
        meta: dict = {}
        for db, max_matches in logs.items():
            one = datasette_metadata(db.stem, password=False)
            if max_matches is not None:
                one["databases"][db.stem]["tables"]["turns"]["plugins"]["faqbot_search"]["max_matches"] = max_matches
            meta.setdefault("databases", {}).update(one.pop("databases"))
            meta.update(one)
        meta.setdefault("plugins", {})[GUARD_PLUGIN] = guard_config(port=self.port, check_host=True)
        meta_path = folder / f"meta-{self.port}.json"
        meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        first, *more = logs
        self.log = folder / f"ds-{self.port}.log"
        with open(self.log, "w") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "datasette",
                    *datasette_args(first, "127.0.0.1", self.port, meta_path),
                    *map(str, more),
                ],
                cwd=folder,
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        wait_for_port(self.proc, self.port, self.log)

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return resp.status, resp.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One Datasette (``ds``) serving two logs, written by the real writer: ``faqbot`` -- 600 turns, 150 of them
    (spread evenly) asking about 社保卡, shipped search cap -- and ``big`` -- 1,600 turns, 1,500 matching, capped at
    40 matches; with the ids of the matching turns in the order they were logged (``hits``, ``big_hits``). The tests
    only read."""
    folder = tmp_path_factory.mktemp("scale")
    db, big = folder / "faqbot.db", folder / "big.db"
    hits = _log(db, matching=150, other=450)
    big_hits = _log(big, matching=1500, other=100)
    ds = LogsDatasette({db: None, big: 40}, folder)
    yield SimpleNamespace(db=db, hits=hits, big=big, big_hits=big_hits, ds=ds)
    ds.stop()


def q(text: str) -> str:
    return urllib.parse.quote(text)


def _all_pages(ds, path: str) -> tuple[list[str], dict]:
    """Every row id of a table page and the pages after it (following Datasette's next links); the first page."""
    first = page = _json(ds, path)
    ids = []
    while True:
        cols = page["columns"]
        ids += [row[cols.index("id")] for row in page["rows"]]
        if not page.get("next_url"):
            return ids, first
        page = json.loads(urllib.request.urlopen(page["next_url"], timeout=30).read())


def test_search_box_lists_every_match_newest_first_with_its_count(logs):
    hits, ds = logs.hits, logs.ds
    ids, first = _all_pages(ds, "/faqbot/turns.json?_search=" + q("社保卡") + "&_size=60")
    assert first["filtered_table_rows_count"] == 150
    assert ids == sorted(hits, reverse=True)  # every match once, newest (highest time-ordered id) first
    html = _html(ds, "/faqbot/turns?_search=" + q("社保卡"))
    assert re.search(r"150 rows\s+where search matches &#34;社保卡&#34;", html)
    assert 'name="_search" value="社保卡"' in html  # the search box is there, with what was searched
    # A longer phrase, a word with no match, a blank search: as Datasette's own search box answers them.
    assert _json(ds, "/faqbot/turns.json?_search=" + q("第7个问题：社保卡"))["filtered_table_rows_count"] == 1
    assert _json(ds, "/faqbot/turns.json?_search=" + q("不存在的词语"))["rows"] == []
    assert _json(ds, "/faqbot/turns.json?_search=%20")["filtered_table_rows_count"] == 600
    # Other tables keep Datasette's behaviour (no search box: no search index).
    assert 'name="_search"' not in _html(ds, "/faqbot/feedback")


def _steps(conn: sqlite3.Connection, sql: str, params: dict) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 100)
    conn.execute(sql, params).fetchall()
    conn.set_progress_handler(None, 0)
    return steps * 100


def test_search_reads_at_most_max_matches_whatever_their_number(logs, tmp_path):
    small, big, hits, ds = tmp_path / "small.db", logs.big, logs.big_hits, logs.ds
    _log(small, matching=100, other=100)
    page = _json(ds, "/big/turns.json?_search=" + q("社保卡") + "&_size=100")
    assert page["filtered_table_rows_count"] == 40
    assert [r[page["columns"].index("id")] for r in page["rows"]] == sorted(hits, reverse=True)[:40]
    html = _html(ds, "/big/turns?_search=" + q("社保卡"))
    assert "the newest 40 of 1,500 matching turns" in html

    # Replay the page's SQL and its count on both logs: 15x the matches, about the same work.
    sql, params = page["query"]["sql"], page["query"]["params"]
    count_sql = "select count(*) from turns where " + sql.split(" where ", 1)[1].split(" order by id desc")[0]
    work = {}
    for path in (small, big):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.create_function("escape_fts", 1, escape_fts)
        work[path] = _steps(conn, sql, params) + _steps(conn, count_sql, params)
        # The index is read newest first and stops: no scan of turns.
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "SCAN turns " not in plan + " " and "turns_fts VIRTUAL TABLE" in plan, plan
        conn.close()
    assert work[big] < 1.5 * work[small], work


def test_facets_come_from_the_column_indexes(logs):
    db, hits, ds = logs.db, logs.hits, logs.ds
    page = _json(ds, "/faqbot/turns.json")  # route and channel facets by default
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for col in ("route", "channel"):
        facet = {r["value"]: r["count"] for r in page["facet_results"][col]["results"]}
        assert facet == dict(conn.execute(f"SELECT {col}, count(*) FROM turns GROUP BY {col}").fetchall())
        # Datasette's facet SQL reads the column's index, not the table.
        sql = (
            f"select {col} as value, count(*) as count from (select * from turns) where {col} is not null "
            f"group by {col} order by count desc, value limit 31"
        )
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert f"USING COVERING INDEX turns_{col}" in plan, plan
    # On a search page the facets count the matches.
    found = _json(ds, "/faqbot/turns.json?_search=" + q("社保卡"))
    assert sum(r["count"] for r in found["facet_results"]["route"]["results"]) == len(hits) == 150
    html = _html(ds, "/faqbot/turns")  # the page shows both, none timed out
    assert 'data-column="route"' in html and 'data-column="channel"' in html and "timed out" not in html
    conn.close()
