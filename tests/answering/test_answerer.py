"""The answering core: bad input, conversations (numbered clarify answers), personal data, reload, the log."""

from __future__ import annotations

import shutil
import sqlite3
import time

import pytest

from bot.answering import texts
from bot.answering.answerer import Answerer
from bot.answering.types import Conversation, Draft, Reply, Route, new_turn_id
from knowledge.loader import KnowledgeError
from knowledge.normalize import to_traditional

CLOSE_CALL = "电子社保卡信息跟实体卡不一样怎么办"  # clarify with 3 choices (see test_match)


def conv() -> Conversation:
    return Conversation(channel="cli", chat_id="test", chat_type="cli")


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question",
    [
        "",
        " ",
        "   \n\t  ",
        "\u3000\u3000",
        "？？！！。。",
        "...",
        "😀👍🎉",
        "🙏🏻❤️",
        "\x00\x01\x02",
        "\u200b\u200d\ufeff",
        "\u202e\u2066",
    ],
)
def test_empty_like_input_gets_a_prompt(answerer, question):
    reply = answerer.match(question)
    assert reply.route is Route.NONE
    assert reply.reason == "empty"
    assert reply.text == texts.EMPTY
    assert reply.normalized == "" and reply.candidates == []


def test_none_and_non_string_do_not_crash(answerer):
    for q in (None, 123, b"bytes"):
        reply = answerer.match(q)  # type: ignore[arg-type]
        assert reply.route is Route.NONE and reply.text == texts.EMPTY


def test_greeting_and_thanks_get_friendly_replies(answerer):
    for q in ("你好", "您好！", "hello", "在吗？"):
        reply = answerer.match(q)
        assert (reply.route, reply.reason, reply.text) == (Route.NONE, "greeting", texts.GREETING), q
    for q in ("谢谢", "谢谢你！", "多谢"):
        reply = answerer.match(q)
        assert (reply.route, reply.reason, reply.text) == (Route.NONE, "thanks", texts.THANKS), q


def test_long_question_same_route_bounded_key(answerer, settings):
    short = "社保卡丢了怎么办，" * 11  # ~100 characters
    long = "社保卡丢了怎么办，" * 1112  # ~10,000 characters
    assert 95 <= len(short) <= 105 and 9_900 <= len(long) <= 10_100
    a = answerer.match(short)
    started = time.perf_counter()
    b = answerer.match(long)
    elapsed = time.perf_counter() - started
    assert a.route is b.route is Route.FAQ
    assert a.faq_id == b.faq_id == "lost_reissue"
    assert len(b.normalized) <= settings.match_prefix_chars
    assert len(b.question) <= settings.max_question_chars
    assert texts.TOO_LONG_NOTE in b.text and texts.TOO_LONG_NOTE not in a.text
    assert elapsed < 0.5, f"a 10,000-character question took {elapsed * 1000:.0f} ms"


def test_long_noise_is_bounded_and_answered(answerer, settings):
    # 10,000 characters with no sentence breaks, emoji and control characters mixed in: no error.
    noise = ("社保卡😀\u200b丢了\x07" * 2000)[:10_000]
    started = time.perf_counter()
    reply = answerer.match(noise)
    assert time.perf_counter() - started < 0.5
    assert reply.route in (Route.FAQ, Route.CLARIFY, Route.NONE)
    assert len(reply.normalized) <= settings.match_prefix_chars
    assert "\u200b" not in reply.normalized and "\x07" not in reply.normalized


def test_control_and_zero_width_characters_stripped(answerer):
    plain = answerer.match("社保卡丢了怎么办")
    dirty = answerer.match("社\u200b保\u200c卡\u200d丢\ufeff了\x00怎\x1f么\u2060办\u202e")
    assert dirty.normalized == plain.normalized
    assert (dirty.route, dirty.faq_id) == (plain.route, plain.faq_id) == (Route.FAQ, "lost_reissue")


@pytest.mark.parametrize(
    "question",
    [
        "lost my card",
        "I lost my social security card",
        "How do I reset my password?",
        "hello world 123",
        "DROP TABLE turns;--",
        "<script>alert(1)</script>",
    ],
)
def test_english_and_junk_never_crash(answerer, question):
    reply = answerer.match(question)
    assert reply.route in (Route.NONE, Route.CLARIFY, Route.FAQ)
    assert reply.text
    if reply.route is Route.NONE:
        assert "社会保障卡服务网点" in reply.text or reply.text in (texts.EMPTY, texts.GREETING)


@pytest.mark.parametrize("question", ["123456", "886", "0", "2", "12333", "3.1415926"])
def test_digits_only(answerer, question):
    reply = answerer.match(question)  # no conversation: a number is just a (meaningless) question
    assert reply.route is Route.NONE
    assert reply.faq_id is None and reply.text


# -- conversations: numbered answers to a clarify --------------------------------------------------------
async def test_clarify_then_numbered_choice(answerer, kb):
    c = conv()
    first = await answerer.answer(CLOSE_CALL, c)
    assert first.route is Route.CLARIFY and len(first.choices) == 3
    assert [x.faq_id for x in c.pending_choices] == [x.faq_id for x in first.choices]

    second = await answerer.answer("2", c)
    picked = first.choices[1]
    assert second.route is Route.FAQ
    assert (second.faq_id, second.section) == (picked.faq_id, picked.section)
    entry = kb.get(picked.faq_id)
    assert second.text == texts.faq_text(entry.question, entry.answer)
    assert second.reason == "chosen"
    assert c.pending_choices == []  # the offer is used up

    # The same "2" again is an ordinary (meaningless) question now.
    third = await answerer.answer("2", c)
    assert third.route is Route.NONE and third.reason != "chosen"


async def test_clarify_then_zero_means_none_of_these(answerer):
    c = conv()
    assert (await answerer.answer(CLOSE_CALL, c)).route is Route.CLARIFY
    reply = await answerer.answer("0", c)
    assert reply.route is Route.NONE and reply.reason == "none-of-these"
    assert reply.text == texts.NONE_OF_THESE_ACK
    assert "社会保障卡服务网点" in reply.text
    assert c.pending_choices == []


@pytest.mark.parametrize("answer, index", [("１", 0), (" 3 ", 2), ("2。", 1), ("1、", 0), ("3️⃣", 2)])
async def test_numbered_choice_tolerates_full_width_and_punctuation(answerer, answer, index):
    c = conv()
    first = await answerer.answer(CLOSE_CALL, c)
    reply = await answerer.answer(answer, c)
    assert reply.route is Route.FAQ, (answer, reply.reason)
    assert reply.faq_id == first.choices[index].faq_id


@pytest.mark.parametrize("answer", ["4", "9", "12333", "\U00010a40"])
async def test_out_of_range_number_after_clarify_is_a_question(answerer, answer):
    c = conv()
    await answerer.answer(CLOSE_CALL, c)
    reply = await answerer.answer(answer, c)
    assert reply.reason not in ("chosen", "none-of-these", "error"), reply.reason
    assert reply.error is None


async def test_new_question_after_clarify_is_answered_normally(answerer):
    c = conv()
    await answerer.answer(CLOSE_CALL, c)
    reply = await answerer.answer("社保卡丢了怎么办", c)
    assert reply.route is Route.FAQ and reply.faq_id == "lost_reissue"
    assert c.pending_choices == []
    assert [e.faq_id for e in c.history] == [None, "lost_reissue"]


# -- personal data -----------------------------------------------------------------------------------------
PII_CASES = [
    ("我的身份证号是13110219650712341X，社保卡丢了怎么办", "13110219650712341X", "lost_reissue"),
    ("社保卡丢了怎么办，我电话138 1234 5678", "138 1234 5678", "lost_reissue"),
    ("社保卡丢了怎么办 手机号+86-13812345678", "13812345678", "lost_reissue"),
    ("我的银行卡号6217000130001234565，电子社保卡绑定不了银行卡", "6217000130001234565", "bind_bank"),
]


@pytest.mark.parametrize("question, secret, faq_id", PII_CASES)
async def test_pii_masked_noted_and_still_answered(answerer, question, secret, faq_id):
    reply = await answerer.answer(question, conv())
    assert secret not in reply.question
    assert secret.replace(" ", "") not in reply.question.replace(" ", "")
    assert "[" in reply.question  # a placeholder where the number was
    assert sum(reply.masked.values()) >= 1
    assert reply.text.endswith(texts.PII_NOTE)
    assert reply.route is Route.FAQ and reply.faq_id == faq_id, (reply.route, reply.reason, reply.score)
    assert secret not in repr(reply.as_dict())


def test_hotline_is_not_personal_data(answerer):
    reply = answerer.match("社保卡丢了打12333可以挂失吗")
    assert "12333" in reply.question and not reply.masked
    assert texts.PII_NOTE not in reply.text


def test_only_pii_gets_prompt_and_note(answerer):
    reply = answerer.match("13812345678")
    assert "13812345678" not in reply.question
    assert reply.route is Route.NONE and reply.text.endswith(texts.PII_NOTE)


# -- the full pipeline: stream, answer_entry, feedback, the log ---------------------------------------
async def test_stream_without_llm_yields_exactly_one_reply(answerer):
    events = [e async for e in answerer.stream("社保卡丢了怎么办", conv())]
    assert len(events) == 1 and isinstance(events[0], Reply)
    assert not any(isinstance(e, Draft) for e in events)
    assert events[0].knowledge_version == answerer.kb.version
    assert events[0].latency_ms > 0


def test_answer_entry(answerer, kb):
    c = conv()
    reply = answerer.answer_entry("newborn", c)
    e = kb.get("newborn")
    assert reply is not None and reply.route is Route.FAQ and reply.section == 13
    assert reply.text == texts.faq_text(e.question, e.answer)
    assert reply.via == "button"
    assert answerer.answer_entry("no_such_entry", c) is None
    assert [x.faq_id for x in c.history] == ["newborn"]


def test_feedback_kinds(answerer):
    for kind in ("up", "down", "none"):
        answerer.feedback("0" * 16, kind)  # no log: accepted, nothing happens
    with pytest.raises(ValueError):
        answerer.feedback("0" * 16, "meh")


async def test_turns_reach_the_sqlite_log_masked(settings):
    from bot.app.services import build_services

    services = await build_services(settings, with_llm=False)
    try:
        c = Conversation(channel="console", chat_id="console", chat_type="console", user_id="alice")
        r1 = await services.answerer.answer("社保卡丢了怎么办", c)
        r2 = await services.answerer.answer("我的身份证号是13110219650712341X，社保卡丢了怎么办", c)
        services.answerer.feedback(r1.turn_id, "up")
    finally:
        await services.aclose()
    with sqlite3.connect(settings.db) as db:
        rows = db.execute("SELECT id, route, faq_id, question, answer FROM turns ORDER BY ts, id").fetchall()
        fb = db.execute("SELECT turn_id, kind FROM feedback").fetchall()
        dump = "\n".join(db.iterdump())
    assert [r[0] for r in rows] == [r1.turn_id, r2.turn_id]
    assert [(r[1], r[2]) for r in rows] == [("faq", "lost_reissue"), ("faq", "lost_reissue")]
    assert fb == [(r1.turn_id, "up")]
    assert "13110219650712341X" not in dump
    assert "alice" not in dump  # user ids are pseudonymized


# -- reload ------------------------------------------------------------------------------------------------
def test_reload_picks_up_changes_and_keeps_running_version_on_error(settings, knowledge_copy):
    a = Answerer(settings.model_copy(update={"knowledge_dir": knowledge_copy}))
    v1 = a.kb.version
    assert a.match("社保卡丢了怎么办").faq_id == "lost_reissue"

    f = knowledge_copy / "faq" / "09_lost_reissue.toml"
    good = f.read_text(encoding="utf-8")
    f.write_text(good.replace('"社保卡丢了",', '"社保卡丢了",\n  "社保卡叫狗叼走了",', 1), encoding="utf-8")
    kb2 = a.reload()
    assert kb2.version != v1 and a.kb is kb2
    assert a.match("社保卡叫狗叼走了").faq_id == "lost_reissue"

    f.write_text(good.replace("section = 9", "section = 99"), encoding="utf-8")
    with pytest.raises(KnowledgeError) as exc:
        a.reload()
    assert "09_lost_reissue.toml" in str(exc.value)
    assert a.kb is kb2  # still serving the last good version
    assert a.match("社保卡丢了怎么办").faq_id == "lost_reissue"


def test_reload_tells_the_llm(settings, knowledge_copy):
    class Recorder:  # stands in for the LLM fallback, which is not under test here
        def __init__(self):
            self.kbs = []

        def reload(self, kb):
            self.kbs.append(kb)

    rec = Recorder()
    a = Answerer(settings.model_copy(update={"knowledge_dir": knowledge_copy}), llm=rec)
    kb = a.reload()
    assert rec.kbs == [kb]
    shutil.rmtree(knowledge_copy / "faq")
    with pytest.raises(KnowledgeError):
        a.reload()
    assert rec.kbs == [kb]  # not told about a knowledge base that failed validation


def test_turn_ids_sort_in_the_order_they_were_made():
    # Many ids fall in one millisecond; the log orders turns by (ts, id), so ties must keep the asking order.
    ids = [new_turn_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 and int(i, 16) >= 0 for i in ids)
    # Within a millisecond the next id is not simply the previous one plus one (a forged 👍 must not be easy).
    same_ms = [(int(a[12:], 16), int(b[12:], 16)) for a, b in zip(ids, ids[1:], strict=False) if a[:12] == b[:12]]
    assert same_ms and sum(b - a == 1 for a, b in same_ms) < len(same_ms) / 100
    # The leading 12 hex digits are the wall-clock millisecond (not drifted far ahead by the counting).
    assert abs(int(ids[-1][:12], 16) - time.time() * 1000) < 5000


BACKGROUND = (
    "我是外地来石家庄打工的，平时上班很忙，单位给我们交的社保，前几年在单位统一办了社保卡。"
    "上周末我带着孩子去公园玩，人特别多，回家以后才发现钱包不见了，里面有银行卡、会员卡，还有一些现金。"
    "我打电话给银行把银行卡冻结了，可是别的卡我也不知道该找谁，家里老人说看病要用这张卡，我有点着急。"
    "今天我请了半天假，想趁着有空把事情办了，又怕跑错地方白跑一趟，所以先在网上问问。"
)


@pytest.mark.parametrize(
    "bare_question, faq_id",
    [
        ("请问社保卡丢了怎么补办？", "lost_reissue"),
        ("我想知道电子社保卡的登录密码忘了怎么办？", "reset_password"),
        ("社保卡绑定的手机号怎么改？", "change_phone"),
    ],
)
def test_background_does_not_drown_the_question(answerer, bare_question, faq_id):
    """A ~300-character message with one clear question gets the same answer as the bare question."""
    bare = answerer.match(bare_question)
    long = BACKGROUND + bare_question + "谢谢！"
    assert 150 <= len(long) <= 320
    reply = answerer.match(long)
    assert bare.route is Route.FAQ and bare.faq_id == faq_id
    assert (reply.route, reply.faq_id) == (bare.route, bare.faq_id), (reply.reason, reply.candidates[:3])
    assert kb_answer_in(reply, answerer, faq_id)


def kb_answer_in(reply, answerer, faq_id: str) -> bool:
    return answerer.kb.get(faq_id).answer in reply.text


# -- places outside Hebei ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question, place, faq_id",
    [
        ("我在长沙，电子社保卡怎么激活？", "长沙", "apply"),
        ("昆山的社保卡丢了怎么补办", "昆山", "lost_reissue"),
        ("广东省的电子社保卡登录密码忘了怎么办", "广东", "reset_password"),
        ("我在大同市，社保卡上的名字怎么改", "大同", "change_name"),
    ],
)
def test_another_place_is_answered_with_a_note(answerer, question, place, faq_id):
    reply = answerer.match(question)
    assert (reply.route, reply.faq_id) == (Route.FAQ, faq_id), (reply.reason, reply.candidates[:3])
    entry = answerer.kb.get(faq_id)
    assert reply.text.startswith(texts.faq_text(entry.question, entry.answer))
    assert reply.text.endswith(texts.place_note((place,)))
    assert f"您提到了{place}" in reply.text and "河北省" in reply.text
    assert reply.reason == "confident;place"


def test_place_note_in_traditional_and_for_unnamed_elsewhere(answerer):
    reply = answerer.match("我們省的電子社保卡登錄密碼忘記了怎麼辦")
    assert reply.route is Route.FAQ and reply.traditional
    assert reply.text.endswith(to_traditional(texts.ELSEWHERE_NOTE))
    assert reply.reason == "confident;elsewhere"


@pytest.mark.parametrize(
    "question",
    ["社保卡丢了怎么办", "石家庄的社保卡丢了怎么办", "河北省电子社保卡怎么申领", "电子社保卡和实体卡大同小异吗"],
)
def test_no_place_note_for_hebei_or_ordinary_words(answerer, question):
    reply = answerer.match(question)
    assert "您提到了" not in reply.text and texts.ELSEWHERE_NOTE not in reply.text, reply.text


# -- half-covered questions (knowledge/partial.toml) -----------------------------------------------------------
def test_half_covered_question_gets_the_entry_and_what_the_faq_does_not_say(answerer):
    reply = answerer.match("社保卡挂失以后又找到了，怎么解除挂失？")
    entry = answerer.kb.get("lost_reissue")
    aspect = next(a for a in answerer.kb.aspects if a.id == "lift_loss")
    assert (reply.route, reply.faq_id) == (Route.FAQ, "lost_reissue")
    assert reply.text == texts.partial_answer_text(entry.question, entry.answer, aspect.says)
    assert "没有说明如何解除挂失" in reply.text and "社会保障卡服务网点" in reply.text
    assert reply.reason == "confident;partial:lift_loss"


@pytest.mark.parametrize(
    "question, aspect_id, faq_id",
    [
        ("补办一张社保卡要交多少钱", "fee", "lost_reissue"),
        ("领这个电子社保卡要不要花钱呀", "fee", "intro"),  # the card itself: its closest entry is the introduction
        ("社保卡丢了补办下来要等几天", "duration", "lost_reissue"),
        ("人在外地，社保卡丢了能不能异地补办", "other_place", "lost_reissue"),
        ("电子社保卡绑的银行卡想解绑换一张", "unbind", "bind_bank"),
        ("实体社保卡的医保密码忘了怎么改", "card_password", "reset_password"),
    ],
)
async def test_question_about_a_detail_the_faq_lacks_gets_the_line_and_choices(answerer, question, aspect_id, faq_id):
    from bot.answering.types import Conversation

    conv = Conversation("console", "c1")
    reply = await answerer.answer(question, conv)
    aspect = next(a for a in answerer.kb.aspects if a.id == aspect_id)
    assert reply.route is Route.CLARIFY and reply.faq_id is None, (reply.reason, reply.candidates[:3])
    assert reply.reason == f"partial:{aspect_id}"
    assert reply.text == texts.partial_offer_text(aspect.says, reply.choices)
    assert faq_id in [c.faq_id for c in reply.choices] and len(reply.choices) <= 3
    # The choices work like any other: the number gives the entry.
    pick = [c.faq_id for c in reply.choices].index(faq_id) + 1
    chosen = await answerer.answer(str(pick), conv)
    assert (chosen.route, chosen.faq_id, chosen.reason) == (Route.FAQ, faq_id, "chosen")


def test_asking_who_may_go_while_reissuing_is_not_the_while_reissuing_detail(answerer):
    """ "补卡的时候能让家人去办吗" asks about a proxy (the entry says what a proxy brings), not how to manage while the
    new card is made (the detail the FAQ lacks): no honest line about that, the reissue entry first."""
    reply = answerer.match("补卡的时候能让我老婆帮我去办吗")
    assert "partial:while_reissuing" not in reply.reason
    assert reply.candidates[0].faq_id == "lost_reissue"
    assert "partial:while_reissuing" in answerer.match("补办的时候社保卡还能用吗").reason


def test_comparing_the_two_cards_passwords_gets_the_honest_line(answerer):
    """Whether the electronic and the physical card share a password is not in the FAQ (its closest entry is the
    introduction, which says nothing of passwords): the card-password line and choices, never a direct answer; in
    Traditional script when asked in it, with 說明了 as written (not OpenCC's 說明瞭)."""
    for question in ("电子社保卡和实体卡的密码一样吗", "電子社保卡跟實體卡的密碼一樣嗎"):
        reply = answerer.match(question)
        assert reply.route is Route.CLARIFY and reply.reason == "partial:card_password", (question, reply.reason)
        assert "reset_password" in [c.faq_id for c in reply.choices]
    assert reply.text.startswith("常見問題只說明了電子社保卡登錄密碼的重置")


def test_a_detail_of_no_entry_is_said_plainly(answerer):
    reply = answerer.match("实体社保卡拿到手以后怎么激活？")  # scores low: the line is shown all the same
    assert reply.route is Route.NONE and reply.reason == "partial:activate_card"
    assert reply.text.startswith("常见问题没有说明实体社保卡")
    # Activating the *electronic* card is applying for it: answered.
    assert answerer.match("电子社保卡怎么激活？").faq_id == "apply"


def test_a_detail_the_matched_entry_answers_is_not_a_gap(answerer):
    # The face-recognition entry says applying has nothing to do with activating the bank account: no "not covered".
    reply = answerer.match("孩子领电子社保卡一直刷脸不成功，是不是得先去激活")
    assert (reply.route, reply.faq_id) == (Route.FAQ, "face_failed"), reply.reason
    assert "partial" not in reply.reason


def test_card_password_inside_an_app_is_the_login_password(answerer):
    # In WeChat or Alipay the "社保卡密码" is the electronic card's password, which the FAQ covers.
    reply = answerer.match("微信里的社保卡密码忘了怎么找回")
    assert (reply.route, reply.faq_id) == (Route.FAQ, "reset_password"), reply.reason
    assert answerer.match("实体社保卡的医保密码忘了怎么改").reason == "partial:card_password"


async def test_half_covered_reply_is_kept_from_the_llm(tmp_path, kb):
    """With an LLM configured, a question about a detail the FAQ lacks still gets the honest line and the entries:
    the model (limited to the FAQ's text) is not asked; an ordinary close call still goes to it."""
    from bot.app.settings import Settings
    from bot.llm.fallback import LLMFallback
    from tests.conftest import KNOWLEDGE_DIR
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.openai_server import reply as llm_reply

    async with FakeOpenAI() as server:
        server.script(llm_reply("可以在河北人社APP申领电子社保卡。[来源: apply]"))
        s = Settings(
            db=tmp_path / "faqbot.db",
            knowledge_dir=KNOWLEDGE_DIR,
            openai_base_url=server.base_url + "/v1",
            openai_api_key=None,
            openai_model="test-model",
            llm_timeout=2.0,
            llm_budget=5.0,
            llm_max_retries=0,
            telegram_bot_token=None,
            matrix_homeserver=None,
            transports=[],
        )
        llm = LLMFallback(s, kb)
        try:
            answerer = Answerer(s, kb, llm=llm)
            final = await answerer.answer("补办一张社保卡要交多少钱", Conversation("test", "c1"))
            assert final.route is Route.CLARIFY and final.reason == "partial:fee"
            assert final.text.startswith("常见问题没有说明办理的费用")
            assert server.requests == []
            other = await answerer.answer("俺不会用手机弄电子社保卡，咋整", Conversation("test", "c2"))
            assert other.route is Route.LLM and len(server.requests) >= 1  # the model was asked
        finally:
            await llm.aclose()


def test_replayed_masked_question_matches_like_the_live_one(answerer):
    """A question read back from the log carries the placeholders already: they are left out of matching as they were
    when the number was masked live (else "[手机号]" pulls toward the phone-number entry)."""
    live = answerer.match("我的手机号13812345678，社保卡丢了怎么办")
    stored = answerer.match(live.question)
    assert "[手机号]" in live.question
    assert stored.normalized == live.normalized
    assert (stored.route, stored.faq_id) == (live.route, live.faq_id) == (Route.FAQ, "lost_reissue")
