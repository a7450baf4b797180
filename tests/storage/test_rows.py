"""storage.rows.prepare_turn: one answered turn -> the rows the log stores, as a pure function (no database).

What is checked is what ends up on disk: masked texts and counts, pseudonymous ids, the conversation key, the
compact trace, and one value per schema column in the schema's order.
"""

from __future__ import annotations

import hashlib
import json

from bot.answering.privacy import pseudonymize
from bot.answering.types import Candidate, Reply, Route
from storage.rows import conversation_key, prepare_turn
from storage.schema import TURN_COLUMNS

SECRET = b"k" * 32
WHEN = 1_767_225_600.1234  # 2026-01-01T00:00:00.123Z
ID_NUMBER = "11010519491231002X"  # a valid 18-digit ID (check digit X)
PHONE = "13812345678"


def _pseudonym(value: str) -> str:
    return pseudonymize(value, SECRET)


def _reply(**kw) -> Reply:
    base = dict(
        route=Route.LLM,
        text="答案",
        question="问题",
        normalized="问题",
        faq_id=None,
        section=3,
        score=71.26,
        candidates=[Candidate("lost_reissue", 9, 87.46, "丢了怎么办"), Candidate("apply", 1, 40.0, "怎么申领")],
        context_ids=["lost_reissue", 7],
        model="m1",
        llm_raw="答案",
        guard="pass",
        turn_id="t1",
        latency_ms=12.6,
        knowledge_version="kv-1",
        masked={"id": 1},
        via="text",
    )
    base.update(kw)
    return Reply(**base)


def _prepare(reply: Reply, **kw):
    args = dict(when=WHEN, channel="telegram", chat_id=555, chat_type="private", user_id=555, pseudonym=_pseudonym)
    args.update(kw)
    return prepare_turn(reply, **args)


def test_one_value_per_schema_column_with_the_trace_compacted():
    rows = _prepare(_reply())
    turn = dict(zip(TURN_COLUMNS, rows.turn, strict=False))
    assert len(rows.turn) == len(TURN_COLUMNS)
    assert rows.turn_id == turn["id"] == "t1"
    assert turn["ts"] == "2026-01-01T00:00:00.123Z"
    assert (turn["channel"], turn["via"], turn["route"], turn["section"], turn["score"]) == (
        "telegram",
        "text",
        "llm",
        3,
        71.26,
    )
    assert json.loads(turn["candidates"]) == [["lost_reissue", 9, 87.5], ["apply", 1, 40.0]]  # no questions, 0.1
    assert json.loads(turn["context_ids"]) == ["lost_reissue", "7"]
    assert turn["llm_raw"] == ""  # equal to the answer: stored once (storage/trace.py)
    assert turn["latency_ms"] == 13.0  # whole milliseconds
    assert turn["knowledge_id"] == "kv-1"  # the INSERT turns the version text into its row id
    assert turn["conversation_id"] == rows.conversation[0]  # likewise the conversation key
    assert (turn["masked_id"], turn["masked_phone"], turn["masked_bank"]) == (1, 0, 0)
    assert not rows.remasked


def test_private_chat_and_user_are_pseudonymous_and_the_key_is_over_stored_values():
    rows = _prepare(_reply())
    key, channel, chat_id, chat_type, user_hash, started = rows.conversation
    assert chat_id == user_hash == _pseudonym("555") != "555"
    assert (channel, chat_type, started) == ("telegram", "private", "2026-01-01T00:00:00.123Z")
    assert key == conversation_key("telegram", chat_id, user_hash)
    assert key == hashlib.sha256(f"telegram|{chat_id}|{user_hash}".encode()).hexdigest()
    assert "555" not in repr(rows)


def test_group_chat_id_is_kept_and_a_dm_room_is_private():
    group = _prepare(_reply(), chat_id=-100123, chat_type="supergroup", user_id=42)
    assert group.conversation[2] == "-100123" and group.conversation[4] == _pseudonym("42")
    dm = _prepare(_reply(), channel="matrix", chat_id="!room:hs", chat_type="direct", user_id="@u:hs")
    assert dm.conversation[2] == _pseudonym("!room:hs")
    anonymous = _prepare(_reply(), chat_id="", chat_type="cli", user_id=None)
    assert anonymous.conversation[2] is None and anonymous.conversation[4] is None


def test_personal_data_missed_upstream_is_masked_counted_and_reported():
    reply = _reply(
        question=f"身份证{ID_NUMBER}手机{PHONE}",
        normalized=f"身份证{ID_NUMBER}",
        text=f"回拨{PHONE}",
        llm_raw=f"回拨{PHONE}!",
        guard=f"fail: {PHONE}",
        error=f"boom {ID_NUMBER}",
        masked={},
    )
    rows = _prepare(reply)
    turn = dict(zip(TURN_COLUMNS, rows.turn, strict=False))
    stored = " ".join(str(v) for v in rows.turn + rows.conversation)
    assert ID_NUMBER not in stored and PHONE not in stored
    assert "[身份证号]" in turn["question"] and "[手机号]" in turn["question"]
    assert (turn["masked_id"], turn["masked_phone"]) == (1, 1)  # counted from the question
    assert turn["llm_raw"] == "回拨[手机号]!"
    assert rows.remasked


def test_secrets_are_redacted_before_masking_and_the_function_is_deterministic():
    reply = _reply(error="server said: key sk-SECRET rejected", llm_raw=None, guard=None)
    redact = lambda text: text.replace("sk-SECRET", "[redacted]")  # noqa: E731
    a = _prepare(reply, redact=redact)
    b = _prepare(reply, redact=redact)
    assert a == b
    turn = dict(zip(TURN_COLUMNS, a.turn, strict=False))
    assert turn["error"] == "server said: key [redacted] rejected"
    assert turn["llm_raw"] is None and turn["guard"] is None
