"""Curating the gap inbox from Telegram: /gaps with buttons, a cluster's questions, marking it, a reply with an
answer that becomes a draft entry. A real aiogram Bot and Dispatcher against the loopback fake Bot API, the real
answering core and a real SQLite log; non-admins never see any of it."""

from __future__ import annotations

import shutil
import tomllib

from bot.answering import texts
from knowledge.loader import PACKAGE_KNOWLEDGE_DIR, load_knowledge
from tests.telegram.harness import buttons

ADMIN, USER, OTHER = 1001, 2002, 3003
BUS = ["社保卡能坐公交吗", "社保卡能坐公交吗", "社保卡可以坐公交车吗", "社保卡能不能刷公交"]
WEATHER = ["今天天气怎么样", "今天天气怎么样", "明天天气怎么样"]


def _reviews(env) -> list[tuple]:
    return env.query(
        "SELECT r.label, r.faq_id, r.status, r.reviewer, t.question FROM reviews r "
        "JOIN turns t ON t.id = r.turn_id ORDER BY r.id"
    )


async def _open(env, listing, question):
    """Press the listing's button for the cluster whose label holds ``question``; returns the cluster message."""
    [data] = [d for text, d in buttons(listing) if question in text]
    await env.press(data, listing.result, user_id=ADMIN)
    return env.sent(ADMIN)[-1]


async def test_admin_marks_clusters_and_writes_a_draft_by_reply(tmp_path, tg):
    kdir = tmp_path / "knowledge"
    shutil.copytree(PACKAGE_KNOWLEDGE_DIR, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    async with tg(kb=load_knowledge(kdir), knowledge_dir=kdir, admin_ids=[ADMIN]) as env:
        for i, q in enumerate(BUS + WEATHER + ["社保卡密码被锁了怎么办"]):
            await env.ask(q, user_id=USER + i)  # several people (one person would hit the flood limit)

        await env.ask("/gaps", user_id=ADMIN)
        listing = env.sent(ADMIN)[-1]
        assert listing.params["text"].startswith(texts.ADMIN_GAPS_HEAD)
        labels = [text for text, _ in buttons(listing)]
        assert any("社保卡能坐公交吗" in t and "×4" in t for t in labels)
        assert any("今天天气怎么样" in t and "×3" in t for t in labels)

        # open the weather cluster: its questions, then "out of scope"
        view = await _open(env, listing, "今天天气怎么样")
        assert view.params["text"].startswith(texts.CURATE_CLUSTER_HEAD.format(count=3))
        assert "今天天气怎么样 ×2" in view.params["text"] and "明天天气怎么样 ×1" in view.params["text"]
        [oos] = [d for t, d in buttons(view) if t == texts.CURATE_BTN_OOS]
        await env.press(oos, view.result, user_id=ADMIN)
        assert env.sent(ADMIN)[-1].params["text"] == texts.CURATE_MARKED_OOS.format(n=3)
        assert [(r[0], r[3]) for r in _reviews(env)] == [("out-of-scope", f"telegram:{ADMIN}")] * 3
        await env.press(oos, view.result, user_id=ADMIN)  # pressed again: nothing left to mark
        assert env.sent(ADMIN)[-1].params["text"] == texts.CURATE_NOTHING_LEFT

        # the password question: pick an entry from the full list
        view = await _open(env, listing, "社保卡密码被锁了")
        [pick] = [d for t, d in buttons(view) if t == texts.CURATE_BTN_PICK]
        await env.press(pick, view.result, user_id=ADMIN)
        picker = env.sent(ADMIN)[-1]
        assert picker.params["text"] == texts.CURATE_PICK_HEAD and len(buttons(picker)) == len(
            env.services.answerer.kb.entries
        )
        [lost] = [d for t, d in buttons(picker) if d.endswith(":lost_reissue")]
        await env.press(lost, picker.result, user_id=ADMIN)
        entry = env.services.answerer.kb.get("lost_reissue")
        assert env.sent(ADMIN)[-1].params["text"] == texts.CURATE_MARKED_ENTRY.format(
            n=1, title=entry.title, faq_id="lost_reissue"
        )
        assert _reviews(env)[-1][:3] == ("entry", "lost_reissue", "open")

        # /stats counts the verdicts
        await env.ask("/stats", user_id=ADMIN)
        assert (
            texts.ADMIN_STATS_REVIEWS_LINE.format(reviewed=4, confirmed=0, direct=0, open=1)
            in env.sent(ADMIN)[-1].params["text"]
        )

        # /gaps again: the weather cluster has left the inbox
        await env.ask("/gaps", user_id=ADMIN)
        assert "天气" not in env.sent(ADMIN)[-1].params["text"]
        # the old listing's buttons are stale now
        stale = await env.press(pick, view.result, user_id=ADMIN)
        assert stale.params["text"] == texts.CURATE_STALE

        # the bus cluster: reply with an answer -> a draft entry, never served
        listing = env.sent(ADMIN)[-1]
        view = await _open(env, listing, "社保卡能坐公交吗")
        await env.ask(
            "部分城市的社保卡可以乘坐公交车，请咨询当地公交公司。", user_id=ADMIN, reply_to=view.result["message_id"]
        )
        done = env.sent(ADMIN)[-1].params["text"]
        [draft] = list((kdir / "drafts").glob("*.toml"))
        assert done == texts.CURATE_DRAFT_OK.format(draft_id=draft.stem, path=f"drafts/{draft.name}")
        data = tomllib.loads(draft.read_text(encoding="utf-8"))
        assert data["answer"].strip() == "部分城市的社保卡可以乘坐公交车，请咨询当地公交公司。"
        assert data["question"] == "社保卡能坐公交吗"
        assert set(data["alternates"]) == {"社保卡可以坐公交车吗", "社保卡能不能刷公交"}
        assert load_knowledge(kdir).get(draft.stem) is None  # a draft is never served
        bus = [r for r in _reviews(env) if "公交" in r[4]]
        assert len(bus) == 4 and {(r[0], r[1], r[2]) for r in bus} == {("new-entry", draft.stem, "applied")}

        # a reply to something else is an ordinary question
        await env.ask("社保卡丢了怎么办", user_id=ADMIN, reply_to=listing.result["message_id"])
        assert env.sent(ADMIN)[-1].params["text"].startswith(entry.question)


async def test_non_admins_never_see_curation(tg):
    async with tg(admin_ids=[ADMIN]) as env:
        for i, q in enumerate(WEATHER):
            await env.ask(q, user_id=USER + i)
        await env.ask("/gaps", user_id=ADMIN)
        listing = env.sent(ADMIN)[-1]
        [(label, data)] = [b for b in buttons(listing) if "天气" in b[0]]

        await env.ask("/gaps", user_id=OTHER)  # an ordinary question to them
        assert texts.ADMIN_GAPS_HEAD not in env.sent(OTHER)[-1].params["text"]
        assert not buttons(env.sent(OTHER)[-1]) or all(not d.startswith("gp:") for _, d in buttons(env.sent(OTHER)[-1]))
        # the admin's button pressed by someone else (forwarded or forged): the generic "expired" toast
        answer = await env.press(data, listing.result, user_id=OTHER)
        assert answer.params["text"] == texts.STALE_BUTTON
        forged = data.replace(":open:", ":oos:")
        answer = await env.press(forged, listing.result, user_id=OTHER)
        assert answer.params["text"] == texts.STALE_BUTTON
        # in a group the admin's /gaps is ignored
        await env.ask("/gaps", chat_type="supergroup", user_id=ADMIN)
        assert env.sent(env.fake.group_id) == []
        assert env.query("SELECT count(*) FROM reviews") == [(0,)]
        # malformed curation data from the admin: no handler takes it, a polite toast
        answer = await env.press("gp:oos:zzzz:99", listing.result, user_id=ADMIN)
        assert answer.params["text"] == texts.STALE_BUTTON
