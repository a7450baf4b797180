"""Splitting long answers for Telegram's 4096 UTF-16 unit limit, formatting, and callback data sizes."""

from __future__ import annotations

import re

import pytest

from bot.answering.types import Candidate, Reply, Route
from bot.telegram.keyboards import ChoiceCB, FeedbackCB, NoneCB, TopicCB, answer_keyboard, without_feedback_row
from bot.telegram.render import preview_text, reply_texts, sentences, split_text, utf16_len
from tests.fakes.telegram_api import utf16_len as fake_utf16_len
from tests.telegram.harness import knowledge


def _squash(text: str) -> str:
    return re.sub(r"\s", "", text)


def test_utf16_len_counts_astral_characters_twice():
    for s in ["", "abc", "社保卡", "👍", "𠀀社保👍卡", "a\nb"]:
        assert utf16_len(s) == fake_utf16_len(s)


def test_sentences_keep_every_character():
    text = "第一句。第二句！“第三句？”Fourth sentence. Fifth!\n\n第六句；最后没有句号"
    parts = sentences(text)
    assert "".join(parts) == text
    assert parts[0] == "第一句。" and parts[1] == "第二句！" and parts[2] == "“第三句？”"
    assert parts[-1] == "最后没有句号"


def test_short_text_is_one_chunk_unchanged():
    assert split_text("你好。\n") == ["你好。\n"]
    assert split_text("   ") == []


def test_9000_characters_split_at_sentence_boundaries():
    sentence = "电子社保卡可以在河北人社APP、微信、支付宝申领，如不会操作可以前往服务网点咨询。"  # 41 chars
    text = "".join(f"{i}{sentence}" for i in range(220))
    assert len(text) > 9000
    chunks = split_text(text)
    assert len(chunks) == 3
    assert all(0 < utf16_len(c) <= 4096 for c in chunks)
    assert all(c.endswith("。") for c in chunks)  # every cut is after a full stop
    assert "".join(chunks) == text  # no spaces in this text: nothing is lost or added


def test_paragraphs_and_emoji_count_in_utf16_units():
    para = "👍" * 1000 + "。\n\n"  # 2003 UTF-16 units, 1003 characters
    text = para * 5
    chunks = split_text(text)
    assert all(utf16_len(c) <= 4096 for c in chunks)
    assert len(chunks) == 3  # two paragraphs fit in 4096 units, not three
    assert _squash("".join(chunks)) == _squash(text)


def test_one_huge_sentence_is_cut_hard_without_breaking_surrogate_pairs():
    text = "卡" + "😀" * 5000  # no sentence end at all; 10001 UTF-16 units
    chunks = split_text(text, limit=4096)
    assert all(utf16_len(c) <= 4096 for c in chunks)
    assert "".join(chunks) == text
    assert all("\ud83d" not in c for c in chunks)  # no lone surrogate (Python str holds code points)


def test_smaller_limit_and_bad_limit():
    chunks = split_text("一。二。三。四。", limit=4)
    assert chunks == ["一。二。", "三。四。"]
    with pytest.raises(ValueError):
        split_text("x", limit=1)


def test_faq_answer_first_line_bold_only_in_first_chunk():
    e = knowledge().get("lost_reissue")
    reply = Reply(route=Route.FAQ, text=f"{e.question}\n\n{e.answer}", faq_id=e.id)
    [part] = reply_texts(reply)
    kw = part.as_kwargs()
    assert kw["text"] == reply.text
    assert kw["entities"][0].type == "bold" and kw["entities"][0].offset == 0
    assert kw["entities"][0].length == utf16_len(e.question)
    # not a curated answer: no bold
    assert reply_texts(Reply(route=Route.NONE, text="抱歉。"))[0].as_kwargs()["entities"] == []
    long = Reply(route=Route.FAQ, text="标题\n" + "内容很长。" * 2000)
    parts = reply_texts(long)
    assert len(parts) == 3
    assert parts[0].as_kwargs()["entities"] and not parts[1].as_kwargs()["entities"]


def test_preview_is_cut_and_marked():
    assert preview_text("  部分回答  ", marker="…") == "部分回答…"
    long = preview_text("字" * 5000, marker="（生成中）")
    assert utf16_len(long) <= 4096 and long.endswith("（生成中）")


def test_callback_data_fits_64_bytes_for_every_entry():
    turn = "f" * 20
    for e in knowledge().entries:
        for data in (TopicCB(faq=e.id), ChoiceCB(turn=turn, faq=e.id)):
            packed = data.pack()
            assert len(packed.encode()) <= 64
            assert type(data).unpack(packed) == data
    for kind in ("up", "down"):
        assert FeedbackCB.unpack(FeedbackCB(turn=turn, kind=kind).pack()).kind == kind
    assert NoneCB.unpack(f"no:{turn}").turn == turn


@pytest.mark.parametrize(
    "data",
    [
        "fb:zz:up",
        "fb:0123456789abcdef:maybe",
        "tp:../../etc",
        "tp:UPPER",
        "ch:0123456789abcdef",
        "no:",
        "fb:0123456789abcdef:up:extra",
    ],
)
def test_forged_callback_data_does_not_unpack(data):
    cls = {"fb": FeedbackCB, "tp": TopicCB, "ch": ChoiceCB, "no": NoneCB}[data.split(":")[0]]
    with pytest.raises((ValueError, TypeError)):
        cls.unpack(data)


def test_keyboards_for_each_route():
    c1 = Candidate("apply", 1, 60.0, "如何申领电子社保卡？", "申领")
    c2 = Candidate("intro", 0, 55.0, "什么是电子社保卡？", "简介")
    clarify = Reply(route=Route.CLARIFY, text="?", choices=[c1, c2])
    rows = answer_keyboard(clarify).inline_keyboard
    assert [b.callback_data.split(":")[0] for row in rows for b in row] == ["ch", "ch", "no", "fb", "fb"]
    related = Reply(route=Route.NONE, text="抱歉", choices=[c1])
    assert [b.callback_data[:3] for row in answer_keyboard(related).inline_keyboard for b in row] == [
        "tp:",
        "fb:",
        "fb:",
    ]
    greeting = Reply(route=Route.NONE, text="您好", reason="greeting")
    assert answer_keyboard(greeting) is None
    trad = Reply(route=Route.CLARIFY, text="?", choices=[c1], traditional=True)
    assert answer_keyboard(trad).inline_keyboard[0][0].text == "如何申領電子社保卡？"
    rest = without_feedback_row(answer_keyboard(clarify))
    assert [b.callback_data[:2] for row in rest.inline_keyboard for b in row] == ["ch", "ch", "no"]
    assert without_feedback_row(answer_keyboard(Reply(route=Route.FAQ, text="x"))) is None


def test_keyboard_data_is_what_the_factories_pack():
    # answer_keyboard formats callback data itself (no model per button); it must equal pack() to the byte.
    c1 = Candidate("apply", 1, 60.0, "如何申领电子社保卡？", "申领")
    c2 = Candidate("lost_reissue", 10, 55.0, "社保卡丢了怎么办？", "挂失")
    clarify = Reply(route=Route.CLARIFY, text="?", choices=[c1, c2])
    t = clarify.turn_id
    data = [b.callback_data for row in answer_keyboard(clarify).inline_keyboard for b in row]
    assert data == [
        ChoiceCB(turn=t, faq="apply").pack(),
        ChoiceCB(turn=t, faq="lost_reissue").pack(),
        NoneCB(turn=t).pack(),
        FeedbackCB(turn=t, kind="up").pack(),
        FeedbackCB(turn=t, kind="down").pack(),
    ]
    related = Reply(route=Route.NONE, text="抱歉", choices=[c2])
    first = answer_keyboard(related).inline_keyboard[0][0]
    assert first.callback_data == TopicCB(faq="lost_reissue").pack() and first.text == c2.question
    assert TopicCB.unpack(first.callback_data).faq == "lost_reissue"
    assert FeedbackCB.unpack(data[3]) == FeedbackCB(turn=t, kind="up")


def test_conversation_store_is_a_bounded_lru():
    from bot.telegram.conversations import ConversationStore

    store = ConversationStore(maxsize=2)
    a = store.get(1, "private", 1)
    store.get(-5, "supergroup", 2)
    assert store.get(1, "private", 1) is a  # touched: now the most recent
    store.get(-5, "supergroup", 3)  # evicts (-5, 2), the least recently used
    assert len(store) == 2 and (1, 1) in store and (-5, 2) not in store
    assert (a.channel, a.chat_id, a.chat_type, a.user_id) == ("telegram", "1", "private", "1")
    with pytest.raises(ValueError):
        ConversationStore(0)
