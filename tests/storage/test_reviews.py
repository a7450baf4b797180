"""The review queue and the review view's gap flag (storage/reviews.py, the turn_review view of storage/migrations.py),
on the conversation-log fixture written by the real answerer and writer (tests/support/logs.py)."""

from __future__ import annotations

import pytest

from storage import reviews
from storage.db import open_db_sync
from tests.support.logs import build_log


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_log(tmp_path_factory.mktemp("reviews") / "faqbot.db")


def test_is_gap_is_true_or_false_for_every_turn(fx):
    """A direct answer has no guard verdict and often no feedback; its gap flag is still 0, not NULL (NULL made
    `NOT is_gap` false too, so such turns were in neither part of the review queue)."""
    conn = open_db_sync(fx.path)
    try:
        flags = dict(conn.execute("SELECT id, is_gap FROM turn_review").fetchall())
    finally:
        conn.close()
    assert set(flags.values()) == {0, 1}
    assert flags[fx.id("apply_mx")] == 0 and flags[fx.id("reissue")] == 0  # faq, no feedback, no guard
    assert flags[fx.id("lost_pii")] == 1  # faq with a thumbs-down
    assert flags[fx.id("bus1")] == 1  # no answer


def test_the_queue_offers_the_unreviewed_direct_answers_after_the_gaps(fx):
    conn = open_db_sync(fx.path)
    try:
        offered = reviews.queue(conn, limit=1000)
        size = reviews.queue_size(conn)
    finally:
        conn.close()
    parts = {r["turn_id"]: r["part"] for r in offered}
    for label in ("apply_tg", "apply_mx", "apply_console", "reissue"):  # direct answers without a bad signal
        assert parts.get(fx.id(label)) == "filter", label
    for label in ("lost_pii", "bus1", "bus4", "pw1", "weather"):
        assert parts.get(fx.id(label)) == "gap", label
    assert fx.id("greeting") not in parts  # a greeting is no question to review
    kinds = [r["part"] for r in offered]
    assert kinds == sorted(kinds, key=["gap", "filter"].index)  # every gap before the other turns
    assert size == len(offered)
