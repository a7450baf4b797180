"""Matching and routing: the labelled question set, look-alikes that must never get a direct answer, clarify and none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.answering import texts
from bot.answering.types import Route
from knowledge.bigrams import bigram_set
from knowledge.match import Matcher, Thresholds
from knowledge.normalize import to_traditional

LABELLED = Path(__file__).parents[1] / "data" / "labelled_questions.jsonl"
REAL_STYLE = Path(__file__).parents[1] / "data" / "real_style_questions.jsonl"


def load_labelled() -> list[dict]:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 100, "the labelled set is unexpectedly small"
    return rows


@pytest.fixture(scope="module")
def labelled_results(answerer):
    """Every labelled question through the real matcher, with the default thresholds from Settings."""
    return [(row, answerer.match(row["q"])) for row in load_labelled()]


def _describe(row, reply) -> str:
    return (
        f"{row['q']!r} want {row['sections']} got {reply.route.value} {reply.section} top3 "
        f"{[c.section for c in reply.candidates[:3]]}"
    )


# -- the project's own real-style set (issue 10) -----------------------------------------------------------
def test_real_style_questions_meet_the_targets(answerer):
    """Our own phrasings of what real questions do (background first, lead-ins, other verbs, places, half-covered
    asks, traps): the targets of issue 10 with a little room, since the knowledge was edited with these in view."""
    rows = [json.loads(line) for line in REAL_STYLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 60
    results = [(row, answerer.match(row["q"])) for row in rows]
    in_scope = [(r, rep) for r, rep in results if r["sections"]]
    direct = [1 for r, rep in in_scope if rep.route is Route.FAQ and rep.section in r["sections"]]
    wrong = [_describe(r, rep) for r, rep in results if rep.route is Route.FAQ and rep.section not in r["sections"]]
    useful = [
        1
        for r, rep in in_scope
        if (rep.route is Route.FAQ and rep.section in r["sections"])
        or set(r["sections"]) & {c.section for c in rep.choices}
    ]
    assert len(direct) >= 43, [_describe(r, rep) for r, rep in in_scope if rep.route is not Route.FAQ]
    assert wrong == []
    assert len(useful) / len(in_scope) >= 0.95


# -- the labelled set -----------------------------------------------------------------------------------
def test_labelled_direct_correct_rate(labelled_results):
    in_scope = [(r, rep) for r, rep in labelled_results if r["sections"]]
    correct = [1 for r, rep in in_scope if rep.route is Route.FAQ and rep.section in r["sections"]]
    rate = len(correct) / len(in_scope)
    # Issue 10 raised it from 116/160 to 125/160, its second pass to 132/160, with no wrong direct answer; it must
    # not drop below that.
    assert len(correct) >= 132, f"direct-correct {rate:.1%} of {len(in_scope)} in-scope questions"


def test_labelled_no_direct_wrong(labelled_results):
    wrong = [
        _describe(r, rep)
        for r, rep in labelled_results
        if r["sections"] and rep.route is Route.FAQ and rep.section not in r["sections"]
    ]
    assert wrong == []


def test_labelled_out_of_scope_rarely_direct(labelled_results):
    oos = [(r, rep) for r, rep in labelled_results if not r["sections"]]
    assert len(oos) >= 30
    direct = [_describe(r, rep) for r, rep in oos if rep.route is Route.FAQ]
    assert len(direct) <= 1, direct
    injection_direct = [_describe(r, rep) for r, rep in oos if r["kind"] == "injection" and rep.route is Route.FAQ]
    assert injection_direct == []


def test_labelled_recall_at_3(labelled_results):
    in_scope = [(r, rep) for r, rep in labelled_results if r["sections"]]
    misses = [
        _describe(r, rep) for r, rep in in_scope if not set(r["sections"]) & {c.section for c in rep.candidates[:3]}
    ]
    recall = 1 - len(misses) / len(in_scope)
    assert recall >= 0.95, f"recall@3 {recall:.1%}; misses: {misses}"


def test_labelled_replies_are_well_formed(labelled_results, kb):
    for row, reply in labelled_results:
        assert reply.text, row
        assert len(reply.candidates) <= 5
        scores = [c.score for c in reply.candidates]
        assert scores == sorted(scores, reverse=True), row
        assert all(0 <= s <= 100 for s in scores), (row, scores)
        assert reply.score == (scores[0] if scores else 0.0)
        if reply.route is Route.FAQ:
            entry = kb.get(reply.faq_id)
            assert entry is not None and reply.section == entry.section
            want = to_traditional(entry.answer) if reply.traditional else entry.answer
            assert want in reply.text, row  # the curated answer, verbatim (in the asker's script)
        else:
            assert reply.faq_id is None and reply.section is None
        if reply.route is Route.CLARIFY:
            assert 1 <= len(reply.choices) <= 3


# -- look-alikes: never a direct answer -------------------------------------------------------------------
LOOK_ALIKES = [
    "身份证丢了怎么补办",
    "银行卡密码忘了",
    "护照过期了怎么换",
    "孩子的出生证明怎么办",
    "信用卡丢了",
    "驾照到期",
    "微信密码忘了",
    "支付宝密码忘了",
    "QQ密码忘了",
    "医保卡丢了怎么办",
    "身份证过期了怎么换",
    "银行卡丢了怎么挂失",
    "户口本丢了怎么补办",
    "驾驶证过期了怎么换",
    "出生医学证明怎么办理",
    "公积金卡丢了",
    "健康码过期了",
    "居住证到期怎么续签",
    "学生证丢了怎么补",
    "手机丢了怎么办",
    "身份证改名字了怎么办",
    "银行卡怎么换绑手机号",
    "新生儿上户口要什么材料",
    "公交卡丢了怎么办",
    # real-question kinds (issue 10): another card's family accounts, activation or passwords, places
    "医保电子凭证怎么添加家人",
    "电子医保凭证怎么激活",
    "实体社保卡的金融功能密码忘了怎么办",
    "新领的社保卡要去银行激活吗",
    "身份证丢了在长沙怎么补办",
    "银行卡被冻结了怎么解冻",
    "公积金账户怎么绑定家人",
    "退休了社保卡还能用吗",  # "还能用吗" is how people ask, not what about
]


@pytest.mark.parametrize("question", LOOK_ALIKES)
def test_look_alikes_never_direct(answerer, question):
    reply = answerer.match(question)
    assert reply.route is not Route.FAQ, f"{question!r} answered directly with {reply.faq_id} ({reply.score:.0f})"
    assert reply.faq_id is None


def test_foreign_term_reason_is_recorded(answerer):
    reply = answerer.match("身份证丢了怎么补办")
    assert reply.reason.startswith("foreign-term:") and "身份证" in reply.reason


@pytest.mark.parametrize("question", ["身份证丢了怎么补办", "银行卡丢了怎么挂失", "电子驾驶证怎么申领"])
def test_question_about_another_thing_is_refused_without_a_menu(answerer, question):
    # Only about the other card or document: the FAQ's entries are no choices for it.
    reply = answerer.match(question)
    assert reply.route is Route.NONE and reply.choices == [], reply.reason
    assert reply.reason.startswith("foreign-term:") and reply.text == texts.OUT_OF_SCOPE


@pytest.mark.parametrize(
    "question, faq_id",
    [
        ("人社APP上怎么换手机号", "change_phone"),  # 人社 names the domain as 社保 does
    ],
)
def test_domain_words_besides_social_security(answerer, question, faq_id):
    reply = answerer.match(question)
    assert (reply.route, reply.faq_id) == (Route.FAQ, faq_id), reply.reason


def test_foreign_term_beside_a_card_keeps_the_choices(answerer):
    # "孩子的卡" may be the social security card: the reissue entry is offered.
    reply = answerer.match("那孩子的卡丢了，补办时要带户口本吗")
    assert reply.route is Route.CLARIFY and "lost_reissue" in [c.faq_id for c in reply.choices], reply.reason


# -- clear in-scope questions (written for this test) ---------------------------------------------------
CLEAR = [
    ("电子社保卡到底是什么", "intro", 0),
    ("怎么在手机上申领电子社保卡", "apply", 1),
    ("电子社保卡的登录密码忘记了怎么重置", "reset_password", 2),
    ("申领电子社保卡的时候提示查无此人", "no_record", 3),
    ("换了新的实体卡以后电子社保卡信息对不上", "info_mismatch", 4),
    ("电子社保卡人脸识别一直不通过", "face_failed", 5),
    ("电子社保卡绑定不了银行卡", "bind_bank", 6),
    ("电子社保卡怎么出现了两个账号", "two_accounts", 7),
    ("电子社保卡亲情服务怎么添加家人", "family_service", 8),
    # For a relative named with 我家 / 家里 and 也 / 都 in between: still the family service.
    ("电子社保卡上怎么给我们家老人也绑定一个", "family_service", 8),
    ("在电子社保卡里能帮爸妈也添加上吗", "family_service", 8),
    ("手机上的电子社保卡想给家里老人也领取一个，怎么操作", "family_service", 8),
    ("我社保卡丢了咋整", "lost_reissue", 9),
    ("社保卡绑定的手机号怎么更改", "change_phone", 10),
    ("社保卡上的姓名怎么变更", "change_name", 11),
    ("社保卡过期了怎么办", "validity_renewal", 12),
    ("给刚出生的娃办社保卡要啥材料", "newborn", 13),
    ("宝宝的社保卡怎么办", "newborn", 13),
    ("你好，请问社會保障卡丟了怎麼辦？謝謝", "lost_reissue", 9),
]


@pytest.mark.parametrize("question, faq_id, section", CLEAR)
def test_clear_questions_answered_directly(answerer, kb, question, faq_id, section):
    reply = answerer.match(question)
    assert reply.route is Route.FAQ, (question, reply.route, reply.reason, reply.score)
    assert (reply.faq_id, reply.section) == (faq_id, section)
    assert reply.candidates[0].faq_id == faq_id
    if not reply.traditional:
        assert reply.text == texts.faq_text(kb.get(faq_id).question, kb.get(faq_id).answer)


def test_every_entry_reachable_by_its_own_question(answerer, kb):
    for e in kb.entries:
        reply = answerer.match(e.question)
        assert reply.candidates and reply.candidates[0].faq_id == e.id, e.id


def test_traditional_question_gets_traditional_answer(answerer):
    reply = answerer.match("社保卡丟了怎麼辦")
    assert reply.route is Route.FAQ and reply.faq_id == "lost_reissue"
    assert reply.traditional is True
    assert "掛失" in reply.text and "挂失" not in reply.text


# -- clarify ---------------------------------------------------------------------------------------------
CLOSE_CALLS = [
    ("电子社保卡信息跟实体卡不一样怎么办", "info_mismatch"),
    ("社保卡掉了能在网上挂失不", "lost_reissue"),
    ("申领的时候人脸比对不成功", "face_failed"),
    ("卡上写的有效期到了，医保还能用吗", "validity_renewal"),
]


@pytest.mark.parametrize("question, faq_id", CLOSE_CALLS)
def test_close_calls_clarify_with_the_right_choice(answerer, question, faq_id):
    reply = answerer.match(question)
    assert reply.route is Route.CLARIFY, (question, reply.route, reply.score)
    assert 1 <= len(reply.choices) <= 3
    assert faq_id in [c.faq_id for c in reply.choices]
    assert reply.text.startswith(texts.CLARIFY_HEAD)
    for i, c in enumerate(reply.choices, 1):
        assert f"{i}. {c.question}" in reply.text
    assert reply.faq_id is None and reply.section is None


def test_two_matters_in_one_message_are_both_offered(answerer):
    # Two real asks joined by 另外: neither drowns the other; both are among the choices. Before, the first matter
    # (told without a question word) was background and its entry scored too low to be offered.
    reply = answerer.match(
        "换了新的实体社保卡以后，电子社保卡上的信息跟卡上对不上，另外绑定的手机号也想换一个，要怎么弄？"
    )
    assert reply.route is Route.CLARIFY
    assert {"info_mismatch", "change_phone"} <= {c.faq_id for c in reply.choices}


def test_a_second_matter_does_not_drown_a_clear_first_one(answerer, kb):
    reply = answerer.match("孩子的社保卡还没领到，另外我自己的电子社保卡刷脸一直过不去，咋整")
    assert reply.route is Route.FAQ and reply.faq_id == "face_failed"


def test_the_other_matter_is_named_under_the_answer(answerer, kb):
    # The clear matter is answered; the other one is named, so the asker can send it next.
    reply = answerer.match("补了新社保卡以后电子社保卡上显示的还是旧卡的信息，另外我还想把预留的手机号改一下，在哪改？")
    assert reply.route is Route.FAQ and reply.faq_id == "info_mismatch"
    assert reply.text.endswith(f"{texts.OTHER_MATTER_HEAD}\n{kb.get('change_phone').question}")
    assert reply.reason.endswith(";other:change_phone")
    # One matter only: nothing is added.
    single = answerer.match("补了新社保卡以后电子社保卡上显示的还是旧卡的信息，怎么办？")
    assert single.faq_id == "info_mismatch" and texts.OTHER_MATTER_HEAD not in single.text
    # Both matters about the same entry: nothing is added either.
    same = answerer.match("补了新社保卡以后电子社保卡上显示的还是旧卡的信息，另外信息跟实体卡对不上怎么办？")
    assert texts.OTHER_MATTER_HEAD not in same.text


def test_the_other_matter_in_traditional(answerer, kb):
    reply = answerer.match("補了新社保卡以後電子社保卡上顯示的還是舊卡的信息，另外我還想把預留的手機號改一下，在哪改？")
    assert reply.route is Route.FAQ and "您還問到了另一件事" in reply.text


def test_clarify_choices_are_distinct_and_ranked(answerer):
    reply = answerer.match("电子社保卡信息跟实体卡不一样怎么办")
    ids = [c.faq_id for c in reply.choices]
    assert len(ids) == len(set(ids)) == 3
    assert ids == [c.faq_id for c in reply.candidates[:3]]


# -- none ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "question", ["今天天气怎么样", "讲个笑话", "养老金什么时候发", "公积金怎么提取", "lost my card"]
)
def test_out_of_scope_refers_to_service_point(answerer, question):
    reply = answerer.match(question)
    assert reply.route is Route.NONE
    assert reply.text.startswith(texts.OUT_OF_SCOPE)
    assert "社会保障卡服务网点" in reply.text
    assert reply.faq_id is None
    assert len(reply.choices) <= 3


def test_none_offers_related_questions_when_any(answerer):
    reply = answerer.match("老年证丢了")  # related to 挂失, but about another card
    assert reply.route is not Route.FAQ
    if reply.route is Route.NONE and reply.choices:
        assert texts.RELATED_HEAD in reply.text
        assert all(c.score >= answerer.settings.related_threshold for c in reply.choices)


# -- thresholds come from settings ---------------------------------------------------------------------
def test_thresholds_from_settings(settings, kb):
    from bot.answering.answerer import Answerer

    strict = Answerer(settings.model_copy(update={"direct_threshold": 101.0, "direct_lead": 101.0}), kb)
    assert strict.match("社保卡丢了怎么办").route is not Route.FAQ
    # A clear leader is still answered below the direct threshold, unless the lead asked for is out of reach.
    leader = Answerer(settings.model_copy(update={"direct_threshold": 101.0}), kb)
    assert leader.match("社保卡丢了怎么办").route is Route.FAQ
    lax = Answerer(settings.model_copy(update={"clarify_threshold": 101.0, "direct_threshold": 101.0}), kb)
    assert lax.match("社保卡丢了怎么办").route is Route.NONE


# -- matcher internals ------------------------------------------------------------------------------------


def test_rank_is_bounded_and_sorted(kb):
    m = Matcher(kb)
    ranked = m.rank(m.normalizer.normalize("社保卡丢了怎么办").text, limit=5)
    assert 1 <= len(ranked) <= 5
    assert ranked[0].entry.id == "lost_reissue"
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert m.rank("") == []


def test_scores_stay_within_0_100(kb):
    # An exact phrase scores 100, never a float hair above it (the JSON contract says 0-100).
    m = Matcher(kb)
    for e in kb.entries:
        for phrase in (e.question, *e.alternates):
            ranked = m.rank(m.normalizer.normalize(phrase).text)
            assert ranked and all(0 <= s.score <= 100 for s in ranked), (phrase, [s.score for s in ranked])
    exact = m.rank(m.normalizer.normalize("社保卡丢了").text)[0]
    assert exact.entry.id == "lost_reissue" and exact.score == 100.0


def test_route_margin_blocks_ties(kb):
    m = Matcher(kb)
    q = m.normalizer.normalize("社保卡丢了怎么办").text
    assert m.route(q, Thresholds()).route == "faq"
    # A margin no gap can meet turns the confident answer into a clarify.
    assert m.route(q, Thresholds(margin=101.0, lead=101.0)).route == "clarify"


def test_route_clear_leader_below_direct_threshold(kb):
    """Between the clarify and direct thresholds, an entry far ahead of every other section is answered directly
    (`Thresholds.lead`); a close second keeps the choices."""
    m = Matcher(kb)

    def route(q, **th):
        n = m.normalizer.normalize(q)
        return m.route(n.text, Thresholds(**th), n.asks)

    lead = "社保卡到期了去医院还能刷吗"  # validity entry, far ahead
    assert route(lead).route == "faq"
    # With a direct threshold nothing reaches, only the lead rule can answer; a lead no gap meets cannot.
    assert route(lead, direct=101.0).route == "faq"
    assert route(lead, direct=101.0, lead=101.0).route == "clarify"
    close = route("我是外地来的，在这边上班，电子社保卡用微信能不能领", direct=101.0)
    assert close.route == "clarify" and close.ranked[0].score - close.ranked[1].score < Thresholds().lead


def _reference_rank(m: Matcher, q: str, entries: list[int] | None = None) -> list[tuple[str, float, str]]:
    """Every phrase scored one by one with `phrase_score` (the scalar formula), best phrase per entry, sorted."""
    qg = bigram_set(q)
    qw = sum(m._w(g) for g in qg) or 1.0
    best = {}
    for i in entries if entries is not None else range(len(m.entries)):
        for p in m.by_entry[i]:
            sc = m.phrase_score(q, qg, qw, p)
            if i not in best or sc > best[i][0]:
                best[i] = (sc, p.text)
    ranked = sorted(((sc, i, t) for i, (sc, t) in best.items() if sc > 0), key=lambda x: (-x[0], x[1]))
    return [(m.entries[i].id, sc, t) for sc, i, t in ranked]


def _same(got, want, question):
    # Same entries, phrases and order; scores equal up to float summation order (the reference sums the shared
    # bigrams' weights in set-intersection order, rank() gram by gram).
    assert [(e, t) for e, _, t in got] == [(e, t) for e, _, t in want], question
    assert [sc for _, sc, _ in got] == pytest.approx([sc for _, sc, _ in want], abs=1e-9), question


def test_vectorized_rank_equals_the_per_phrase_formula(kb):
    # rank() scores all phrases with arrays; the result must be exactly the scalar formula's, phrase for phrase.
    from tests.bench.queries import query_mix

    m = Matcher(kb)
    questions = query_mix(300, seed=5) + ["密码", "挂失", "社保", "卡", "社保卡丢了", "电子社保卡"]
    for question in questions:
        q = m.normalizer.normalize(question).text
        got = [(s.entry.id, s.score, s.phrase) for s in m.rank(q, limit=len(kb.entries))]
        _same(got, _reference_rank(m, q), question)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Matcher, list[str]]:
    """A Matcher on a generated 300-entry knowledge base (over PRESELECT entries) and questions aimed at its entries;
    built once for the module (generating, loading and indexing it is most of a test's time). Read-only."""
    from knowledge.loader import load_knowledge
    from tests.bench.synth import generate_knowledge

    directory, aimed = generate_knowledge(tmp_path_factory.mktemp("large") / "kb", 300, seed=3)
    return Matcher(load_knowledge(directory)), aimed


def test_vectorized_rank_with_a_large_knowledge_base(large):
    # Over 40 entries the inverted index preselects entries first; the scores of those must still be exact.
    m, aimed = large
    for question in aimed[:60] + ["社保卡丢了怎么办", "密码忘了"]:
        q = m.normalizer.normalize(question).text
        cand = m._candidate_entries(bigram_set(q))
        assert cand is not None
        got = [(s.entry.id, s.score, s.phrase) for s in m.rank(q, limit=len(cand))]
        _same(got, _reference_rank(m, q, cand), question)
        assert got[0][0] == m.rank(q, limit=1)[0].entry.id


def test_rank_many_equals_rank_for_each_part(kb, large):
    """The asking parts of a question are scored in one batch (`rank_many`); each part's ranking must be the one
    `rank` gives it alone (among the same entries on a large knowledge base)."""
    small = Matcher(kb)
    big, aimed = large
    # Aimed questions the vectorized test does not use (it takes the first 60).
    questions = [
        "我以前在天津办过卡，现在回河北又办了一张，两张社保卡到底用哪张？",
        "上周钱包丢了，里面有银行卡和社保卡。请问社保卡丢了怎么补办？",
        *aimed[-20:],
    ]
    for m in (small, big):
        for question in questions:
            n = m.normalizer.normalize(question)
            parts = [n.text, *(a for a, _ in n.asks)]
            within = m._candidate_entries(bigram_set(n.text))
            batch = m.rank_many(parts, limit=5, within=within)
            for part, got in zip(parts, batch, strict=False):
                want = m.rank(part, limit=5, within=within)
                assert [s.entry.id for s in got] == [s.entry.id for s in want], (question, part)
                assert [s.score for s in got] == pytest.approx([s.score for s in want], abs=1e-9)
                assert [s.phrase for s in got] == [s.phrase for s in want]


def test_an_entry_can_require_one_of_its_words(answerer, kb):
    """`requires` in an entry file: without one of those words the entry is offered, not answered. The newborn entry
    needs a child word, so a first card for an adult is not answered with the newborn's procedure."""
    assert "新生儿" in kb.get("newborn").requires
    adult = answerer.match("第一次办社保卡去哪里办")
    assert adult.route is Route.CLARIFY and adult.reason == "no-entry-word", (adult.reason, adult.candidates[:2])
    assert adult.choices[0].faq_id == "newborn"
    baby = answerer.match("宝宝第一次办社保卡去哪办")
    assert (baby.route, baby.faq_id) == (Route.FAQ, "newborn")
