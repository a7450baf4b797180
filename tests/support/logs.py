"""Builds a conversation-log fixture database through the real pieces: questions go through the real
``Answerer.match`` (real masking, normalization, matching and routing) and every turn and feedback is written by
the real ``TurnLog`` (record_turn / record_feedback / flush). LLM turns are crafted Replies (no model is called).

The writer stamps every row with the current time; to have old rows (for --since and purge) the builder then
back-dates a few turns with one UPDATE, which is the only direct write.

``build_log(path)`` returns a ``FixtureLog`` with the turn id of every labelled turn, so tests assert against
known rows. The builder asserts the routes it relies on, so a change in matching shows up here first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bot.answering import texts
from bot.answering.answerer import Answerer
from bot.answering.types import Candidate, Conversation, Reply, Route
from bot.app.settings import Settings
from storage.db import utc_iso
from storage.writer import TurnLog

SECRET = b"fixture-secret-for-tests"

# label, channel, question, expected route, feedback kinds (in order), latency ms
MATCHED = [
    ("apply_tg", "telegram", "电子社保卡怎么申领", "faq", ["up"], 12.0),
    ("apply_mx", "matrix", "电子社保卡怎么申领", "faq", [], 14.0),
    ("apply_console", "console", "电子社保卡怎么申领", "faq", [], 9.0),
    ("lost_pii", "telegram", "我的手机号13812345678，社保卡丢了怎么办", "faq", ["down"], 11.0),
    ("reissue", "cli", "补办社保卡", "faq", [], 10.0),
    # An unknown question, five times in four wordings: one gap cluster of 5.
    ("bus1", "telegram", "社保卡能坐公交吗", "none", [], 8.0),
    ("bus2", "matrix", "社保卡能坐公交吗", "none", ["down"], 8.0),
    ("bus3", "telegram", "社保卡可以坐公交车吗", "none", [], 8.0),
    ("bus4", "telegram", "电子社保卡能乘公交吗", "clarify", ["none"], 8.0),
    ("bus5", "console", "社保卡能不能刷公交", "none", [], 8.0),
    # A near miss of the reset_password entry ("did you mean"): an alternate is suggested.
    ("pw1", "telegram", "社保卡密码锁了", "clarify", ["none"], 7.0),
    ("pw2", "matrix", "社保卡密码锁了", "clarify", [], 7.0),
    # Close to reset_password too, but without a word of the domain: an alternate alone would not answer it.
    ("nodomain", "telegram", "忘记登录密码怎么办", "clarify", [], 7.0),
    # Another unknown question, two wordings.
    ("balance1", "telegram", "医保余额怎么查", "none", [], 6.0),
    ("balance2", "telegram", "怎么查医保余额", "none", [], 6.0),
    ("weather", "console", "今天天气怎么样", "none", [], 5.0),
    ("greeting", "telegram", "你好", "none", [], 1.0),
]
OLD_DAYS = {"reissue": 200, "weather": 10}  # back-dated turns: label -> age in days
AMBIGUOUS_IDS = {"pw1": "abcd000000000001", "pw2": "abcd000000000002"}  # share the prefix "abcd"


def turn_id(label: str) -> str:
    return AMBIGUOUS_IDS.get(label) or hashlib.sha1(label.encode()).hexdigest()[:16]


@dataclass
class FixtureLog:
    path: Path
    ids: dict[str, str] = field(default_factory=dict)  # label -> turn id
    routes: dict[str, str] = field(default_factory=dict)  # label -> route
    feedback: dict[str, list[str]] = field(default_factory=dict)

    def id(self, label: str) -> str:
        return self.ids[label]


def _conv(channel: str, n: int) -> Conversation:
    if channel == "telegram":
        return Conversation("telegram", f"{1000 + n}", "private", user_id=f"{1000 + n}")
    if channel == "matrix":
        return Conversation("matrix", "!room:example.org", "group", user_id=f"@user{n}:example.org")
    return Conversation(channel, channel, channel, user_id="someone")


async def build_log_async(path: Path, settings: Settings | None = None) -> FixtureLog:
    settings = settings or Settings(db=path)
    answerer = Answerer(settings)
    fx = FixtureLog(path=Path(path))
    log = TurnLog(path, secret=SECRET, flush_interval=0.001)
    await log.start()
    try:
        for n, (label, channel, question, route, fbs, latency) in enumerate(MATCHED):
            reply = answerer.match(question)
            assert reply.route.value == route, (label, question, reply.route, reply.score, reply.reason)
            reply.turn_id = turn_id(label)
            reply.latency_ms = latency
            log.record_turn(_conv(channel, n), reply)
            fx.ids[label], fx.routes[label], fx.feedback[label] = reply.turn_id, route, fbs
            for kind in fbs:
                log.record_feedback(reply.turn_id, kind)

        kb = answerer.kb
        ctx = [kb.get("intro"), kb.get("apply")]
        cands = [Candidate(e.id, e.section, 20.0, e.question, e.title) for e in ctx]
        crafted = [
            (
                "llm_fail",
                "matrix",
                Reply(
                    route=Route.LLM,
                    text=texts.OUT_OF_SCOPE,
                    question="养老金怎么算",
                    normalized="养老金怎么算",
                    score=14.7,
                    candidates=cands,
                    context_ids=[e.id for e in ctx],
                    model="gpt-4o-mini",
                    llm_raw="养老金按照缴费年限和基数计算，每月可领3000元。",
                    guard="fail: ungrounded number 3000",
                    latency_ms=900.0,
                    knowledge_version=kb.version,
                ),
                ["down"],
            ),
            (
                "llm_ok",
                "telegram",
                Reply(
                    route=Route.LLM,
                    text="可以，在支付宝搜索“电子社保卡”即可申领和使用。",
                    question="电子社保卡能在支付宝里查缴费记录吗",
                    normalized="电子社保卡能在支付宝里查缴费记录吗",
                    score=45.0,
                    candidates=cands,
                    context_ids=["apply"],
                    model="gpt-4o-mini",
                    llm_raw="可以，在支付宝搜索“电子社保卡”即可申领和使用。",
                    guard="pass",
                    latency_ms=1200.0,
                    knowledge_version=kb.version,
                ),
                ["up"],
            ),
            (
                "error",
                "telegram",
                Reply(
                    route=Route.NONE,
                    text=texts.ERROR,
                    error="TimeoutError: the model did not answer in time",
                    reason="error",
                    latency_ms=8000.0,
                    knowledge_version=kb.version,
                ),
                [],
            ),
        ]
        for n, (label, channel, reply, fbs) in enumerate(crafted, start=len(MATCHED)):
            reply.turn_id = turn_id(label)
            log.record_turn(_conv(channel, n), reply)
            fx.ids[label], fx.routes[label], fx.feedback[label] = reply.turn_id, reply.route.value, fbs
            for kind in fbs:
                log.record_feedback(reply.turn_id, kind)
        await log.flush(timeout=10)
    finally:
        await log.close()
    assert log.dropped == 0

    conn = sqlite3.connect(path)
    try:
        now = dt.datetime.now(dt.UTC)
        with conn:
            for label, days in OLD_DAYS.items():
                ts = utc_iso(now - dt.timedelta(days=days))
                conn.execute("UPDATE turns SET ts = ? WHERE id = ?", (ts, fx.ids[label]))
                conn.execute("UPDATE feedback SET ts = ? WHERE turn_id = ?", (ts, fx.ids[label]))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return fx


def build_log(path: Path, settings: Settings | None = None) -> FixtureLog:
    """Synchronous wrapper (for module-scoped fixtures)."""
    return asyncio.run(build_log_async(Path(path), settings))


def copy_log(fx: FixtureLog, tmp_path: Path) -> Path:
    """A private copy of the module's fixture log, for a test that writes."""
    path = tmp_path / "faqbot.db"
    shutil.copy(fx.path, path)
    return path
