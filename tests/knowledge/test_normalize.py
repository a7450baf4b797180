"""Question normalization: the matching key people's noisy questions and the curated phrases share."""

from __future__ import annotations

import pytest

from knowledge.normalize import Normalizer, clean, to_simplified, to_traditional


@pytest.fixture(scope="module")
def norm(kb) -> Normalizer:
    return Normalizer(kb.terms)


def key(norm: Normalizer, text: str) -> str:
    return norm.normalize(text).text


def test_full_width_to_half_width(norm):
    assert key(norm, "ＡＢＣ１２３社保卡") == "abc123社保卡"
    assert clean("ＡＢＣ　１２３") == "ABC 123"
    assert key(norm, "ｓｈｅｂａｏｋａ丢了") == key(norm, "社保卡丢了")


def test_traditional_to_simplified_sets_flag(norm):
    n = norm.normalize("社會保障卡丟了怎麼辦")
    assert n.text == "社保卡挂失怎么办"
    assert n.traditional is True
    assert n.cleaned == "社會保障卡丟了怎麼辦"  # the display text keeps the user's script
    plain = norm.normalize("社会保障卡丢了怎么办")
    assert plain.text == n.text and plain.traditional is False
    assert norm.normalize("電子社保卡登錄密碼忘記了").text == norm.normalize("电子社保卡登录密码忘记了").text


def test_traditional_round_trip_helpers():
    assert to_simplified("掛失補辦") == "挂失补办"
    assert to_traditional("挂失补办") == "掛失補辦"
    # OpenCC alone turns this 说明了 into 說明瞭 ("clear"): the bot's replies never mean that.
    assert to_traditional("常见问题只说明了电子社保卡登录密码的重置") == "常見問題只說明了電子社保卡登錄密碼的重置"


def test_case_folded(norm):
    assert key(norm, "SheBaoKa丢了") == key(norm, "shebaoka丢了") == key(norm, "社保卡丢了")
    assert key(norm, "电子社保卡App打不开") == key(norm, "电子社保卡APP打不开") == key(norm, "电子社保卡app打不开")
    assert key(norm, "ABC") == "abc"


@pytest.mark.parametrize(
    "noisy",
    [
        "社保卡丢了！！！？？",
        "“社保卡”丢了。。。",
        "（社保卡）丢了，，",
        "社保卡...丢了!!",
        "【社保卡】丢了～",
        "社保卡—丢了？",
    ],
)
def test_punctuation_stripped(norm, noisy):
    assert key(norm, noisy) == "社保卡挂失"


def test_emoji_stripped(norm):
    assert key(norm, "社保卡😀丢了👍") == "社保卡挂失"
    assert key(norm, "😭😭社保卡丢了🙏🏻") == "社保卡挂失"  # skin-tone modifier too
    assert key(norm, "❤️社保卡丢了") == "社保卡挂失"  # emoji + variation selector


def test_whitespace_stripped(norm):
    assert key(norm, "  社 保 卡\t丢了\n") == "社保卡挂失"
    assert key(norm, "社保卡\u3000丢了") == "社保卡挂失"  # ideographic space
    assert key(norm, "社保卡\u00a0丢了\r\n") == "社保卡挂失"


def test_zero_width_and_control_characters_stripped(norm):
    assert key(norm, "社\u200b保\u200d卡\ufeff丢\x00了\x07") == "社保卡挂失"
    assert key(norm, "社保卡丢了\u202e\u2066\u200e") == "社保卡挂失"  # bidi controls
    ansi = key(norm, "\x1b[31m社保卡丢了\x1b[0m")
    assert "\x1b" not in ansi and "社保卡挂失" in ansi
    assert clean("a\x00b\x7fc\u200bd") == "abcd"


@pytest.mark.parametrize(
    "text",
    [
        "你好社保卡丢了怎么办",
        "你好，请问社保卡丢了怎么办",
        "请问社保卡丢了怎么办呢",
        "社保卡丢了怎么办啊",
        "社保卡丢了怎么办呢？谢谢",
        "您好！请问：社保卡丢了怎么办呀？？谢谢您！",
        "麻烦问一下，社保卡丢了怎么办，谢谢啦",
        "在吗？社保卡丢了怎么办",
    ],
)
def test_greetings_and_fillers_stripped(norm, text):
    assert key(norm, text) == "社保卡挂失怎么办"


def test_greeting_alone_is_empty(norm):
    for text in ("你好", "您好！", "谢谢", "请问", "你好，谢谢"):
        assert key(norm, text) == "", text


def test_particle_only_at_clause_end(norm):
    # "啊" ends the clause and goes; a particle-like character inside a word stays.
    assert key(norm, "社保卡丢了啊") == "社保卡挂失"
    assert "呢" not in key(norm, "社保卡丢了呢")
    assert key(norm, "社保卡密码忘了吧") == key(norm, "社保卡密码忘了")


@pytest.mark.parametrize(
    "variant, canonical",
    [
        ("社会保障卡", "社保卡"),
        ("刷脸", "人脸识别"),
        ("丢了", "挂失"),
        ("电话号码", "手机号"),
        ("宝宝", "新生儿"),
        ("过期", "有效期"),
        ("到期", "有效期"),
        ("密马", "密码"),
        ("社宝卡", "社保卡"),
        ("忘了", "忘记"),
        ("登陆", "登录"),
    ],
)
def test_synonyms_rewritten_to_canonical(norm, kb, variant, canonical):
    assert canonical in kb.terms.synonyms, f"{canonical} is not a canonical term in terms.toml"
    assert variant in kb.terms.synonyms[canonical]
    assert canonical in key(norm, variant)
    # In context too, and the canonical term itself is left alone.
    assert key(norm, f"我的{variant}怎么办") == key(norm, f"我的{canonical}怎么办")


def test_synonyms_longest_first(norm):
    # "电话号码" must not become "手机号码" via the shorter "电话号" -> "手机号" ... + "码".
    assert key(norm, "电话号码") == "手机号"
    assert key(norm, "手机号码") == "手机号"
    # "电子社会保障卡" is one term, not "电子" + "社保卡" rewritten twice.
    assert key(norm, "电子社会保障卡") == "电子社保卡"


SAME_KEY = [
    "社保卡丢了怎么办",
    "社保卡丢了怎么办？",
    "社会保障卡丢了怎么办",
    "社會保障卡丟了怎麼辦",
    "您好，请问社保卡丢了怎么办呀？谢谢！",
    "社 保 卡 丢 了 怎 么 办 😭",
    "社\u200b保卡丢了怎么办\u200d",
    "ＳＨＥＢＡＯＫＡ丢了怎么办",
    "社保卡丢了咋办",
    "社宝卡丢了怎么办！！",
]


def test_noisy_variants_share_one_key(norm):
    keys = {text: key(norm, text) for text in SAME_KEY}
    assert set(keys.values()) == {"社保卡挂失怎么办"}, keys


def test_normalize_is_idempotent_on_keys(norm):
    for text in SAME_KEY:
        k = key(norm, text)
        assert key(norm, k) == k


def test_max_chars_bounds_the_work(norm):
    long = "社保卡丢了怎么办" * 5000
    n = norm.normalize(long, max_chars=100)
    assert len(n.cleaned) <= 100
    assert len(n.text) <= 100


def test_empty_and_none_like_inputs(norm):
    for text in ("", "   ", "\n\t", "？！。，", "😀🎉", "\u200b\ufeff"):
        n = norm.normalize(text)
        assert n.text == "" and n.traditional is False, repr(text)


# -- asking parts of long questions -----------------------------------------------------------------------------
def test_a_bare_question_has_no_asking_parts(norm):
    assert norm.normalize("社保卡丢了怎么办").asks == ()
    assert norm.normalize("社保卡丢了").asks == ()


def test_asking_parts_skip_background_sentences(norm):
    n = norm.normalize("上个月我带着孩子回老家，在车站人多，回来以后发现包里的东西少了。请问社保卡丢了怎么补办？")
    assert n.text.startswith("上个月我带着儿童回老家")  # the whole key keeps everything
    assert n.asks[0] == (key(norm, "社保卡丢了怎么补办"), 1.0)  # the asking sentence on its own
    assert not any("车站" in a for a, _ in n.asks)


def test_asking_segment_keeps_the_topic_before_it(norm):
    # Inside one sentence the asking segment ("该怎么办") names no topic: the segment before it does.
    n = norm.normalize("我在外地工作的时候也办过一张，现在手里有两张社保卡，该怎么办？")
    parts = dict(n.asks)
    assert parts[key(norm, "现在手里有两张社保卡该怎么办")] == 1.0
    # The sentence's first segment with the asking one: a part cut loose from its neighbour weighs a little less.
    assert parts[key(norm, "我在外地工作的时候也办过一张该怎么办")] < 1.0
    assert all(len(a) >= 5 for a in parts) and len(parts) <= 5


def test_lead_ins_are_not_asking_parts(norm):
    n = norm.normalize("我想问一下，电子社保卡怎么激活？")
    assert n.text == key(norm, "电子社保卡怎么激活")


def test_a_second_matter_starts_a_sentence_of_its_own(norm):
    # "另外 / 顺便问下 / 还有就是 ..." open another matter: the matter before it is asked too (a problem told without a
    # question word), the one after it is looked for on its own, and the connector is no part of either key.
    n = norm.normalize("换了新的实体社保卡以后，电子社保卡上的信息跟卡上对不上，另外绑定的手机号也想换一个，要怎么弄？")
    parts = dict(n.asks)
    assert parts[key(norm, "换了新的实体社保卡以后电子社保卡上的信息跟卡上对不上")] == 1.0
    assert parts[key(norm, "绑定的手机号也想换一个要怎么弄")] == 1.0
    assert "另外" not in n.text and not any("另外" in a for a in parts)
    # Without the connector it is one sentence whose asking part carries both matters.
    one = dict(
        norm.normalize(
            "换了新的实体社保卡以后，电子社保卡上的信息跟卡上对不上，绑定的手机号也想换一个，要怎么弄？"
        ).asks
    )
    assert key(norm, "换了新的实体社保卡以后电子社保卡上的信息跟卡上对不上") not in one


def test_matters_are_listed_only_when_another_one_opens(norm):
    n = norm.normalize("我的社保卡丢了，另外电子社保卡密码忘了怎么办")
    assert n.matters == (key(norm, "我的社保卡丢了"), key(norm, "电子社保卡密码忘了怎么办"))
    assert norm.normalize("我的社保卡丢了，电子社保卡密码忘了怎么办").matters == ()
    assert norm.normalize("另外，电子社保卡密码忘了怎么办").matters == ()  # nothing before the connector
    # 另外 before an act means "separately": the same matter.
    n = norm.normalize("有了实体社保卡，另外再办一张电子社保卡吗")
    assert n.matters == () and "另外" in n.text


@pytest.mark.parametrize("connector", ["另外", "此外", "顺便问一下", "还有就是", "再就是", "其次"])
def test_second_matter_connectors(norm, connector):
    n = norm.normalize(f"我的社保卡丢了，{connector}，电子社保卡密码忘了怎么办")
    assert dict(n.asks).get(key(norm, "我的社保卡丢了")) == 1.0
    assert connector not in n.text


# -- paraphrases (knowledge/paraphrases.toml) -------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant, same_as",
    [
        ("电子社保卡怎么激活", "电子社保卡怎么申领"),
        ("怎么开通社保电子凭证", "怎么申领电子社保卡"),
        ("电子社保卡怎么添加家人", "电子社保卡怎么亲情服务"),
        ("手里有两张社保卡", "手里有两个账号"),
        ("电子社保卡看病能用吗", "电子社保卡就医能用吗"),
        ("户口上名字改了，社保卡呢", "户口上变更姓名，社保卡呢"),
        ("我手机换号了，社保卡咋办", "我手机号换了，社保卡咋办"),
        ("手机换了号码，电子社保卡还能用吗", "手机号换了，电子社保卡还能用吗"),
        ("电话号码变了，社保卡要去改吗", "手机号换了，社保卡要去改吗"),
    ],
)
def test_paraphrases_share_a_key(norm, variant, same_as):
    assert key(norm, variant) == key(norm, same_as)


def test_conditional_paraphrases_need_their_context(norm):
    # 激活 is 申领 only for the electronic card: activating the physical card or a bank account is another thing.
    assert "申领" not in key(norm, "社保卡怎么激活")
    assert "申领" not in key(norm, "电子社保卡里的银行账户要激活吗")
    assert "申领" in key(norm, "电子社保卡怎么激活")
    # The condition is checked per segment: the 激活 here is about the account named after the comma.
    assert "账户要激活" in key(norm, "申领电子社保卡，实体卡的社保账户要激活吗")
    # 医保电子凭证 is the medical-insurance code, not the electronic social security card.
    assert "电子社保卡" not in key(norm, "医保电子凭证怎么用")


def test_someone_else_going_for_the_holder_is_the_faqs_proxy(norm):
    # "让我老婆帮我去办" / "家里人帮我跑一趟" / "儿子替我去办" is what the FAQ calls 他人代办 (at the counter) ...
    assert "代办" in key(norm, "补卡的时候能让我老婆帮我去办吗")
    assert "代办" in key(norm, "手机号要改，家里人帮我跑一趟行吗")
    assert "代办" in key(norm, "改名的话能叫我儿子替我去办吗")
    # ... but not for the electronic card, where relatives use the family service (亲情服务).
    assert "代办" not in key(norm, "电子社保卡能让家人帮我办吗")


def test_paraphrase_context_may_be_in_another_clause(norm):
    # `when` words count anywhere in the message: the photo is named a clause before the "doesn't look like me".
    assert "相貌变化较大" in key(norm, "刷脸老是通不过，跟照片对不上，是不是我长得不像了")
    assert "相貌变化较大" not in key(norm, "我长得不像我爸")
    # ... or be the result of a paraphrase in an earlier segment (手机上的社保卡 -> 电子社保卡).
    assert "申领" in key(norm, "手机上的社保卡，我想自己弄一个")
    # `unless` still only in the segment itself.
    assert "账户要激活" in key(norm, "申领电子社保卡，实体卡的社保账户要激活吗")


def test_paraphrase_not_rewritten_inside_its_canonical(norm):
    # 开通 is already 申领 after the synonyms; its tail "领一个" is a variant of 申领 but must not give "申申领".
    k = key(norm, "电子社保卡怎么给我开通一个")
    assert "申申领" not in k and "申领一个" in k


def test_newborn_said_by_what_just_happened(norm):
    assert "新生儿" in key(norm, "家里娃刚满月，社保卡怎么给他办")
    assert "新生儿" in key(norm, "孩子刚上完户口，能办社保卡了吗")
    # Without the card in the question it is about the household register, not about us.
    assert "新生儿" not in key(norm, "孩子刚上完户口，还要办什么")


def test_card_lost_with_what_held_it(norm):
    assert key(norm, "老伴的社保卡不见了") == key(norm, "老伴的社保卡丢了")
    assert "社保卡挂失" in key(norm, "钱包丢了，社保卡在里面")
    assert "社保卡挂失" not in key(norm, "钱包丢了，身份证在里面")


def test_another_card_is_not_a_reissue(norm):
    # "再办一张" asks for another card (the electronic one next to the physical), not for a reissue.
    assert "补办" not in key(norm, "有了实体卡还要再办一张电子的吗")


def test_paraphrase_file_problems_are_reported(knowledge_copy):
    from knowledge.loader import KnowledgeError, load_knowledge

    path = knowledge_copy / "paraphrases.toml"
    path.write_text(
        '[[rule]]\ncanonical = "申领"\nvariants = ["重新申领"]\n\n[[rule]]\nvariants = ["x"]\n'
        '\n[[rule]]\ncanonical = "y"\nvariants = []\nfrom = ["z"]\n',
        encoding="utf-8",
    )
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(knowledge_copy)
    msg = str(err.value)
    assert "paraphrases.toml [rule 1]: a variant contains the canonical '申领'" in msg
    assert "paraphrases.toml [rule 2]: 'canonical' must be a non-empty string" in msg
    assert "paraphrases.toml [rule 3]: unknown keys: from" in msg
    assert "paraphrases.toml [rule 3]: 'variants' must list at least one phrase" in msg


def test_partial_and_places_file_problems_are_reported(knowledge_copy):
    from knowledge.loader import KnowledgeError, load_knowledge

    (knowledge_copy / "partial.toml").write_text(
        '[[aspect]]\nid = "fee"\nwords = ["多少钱"]\nentries = ["no_such_entry"]\nsays = "x"\nmode = "answer"\n\n'
        '[[aspect]]\nid = "fee"\nwords = ["费用"]\nsays = "y"\n\n'
        '[[aspect]]\nid = "bad"\nwords = []\nsays = ""\nmode = "maybe"\n',
        encoding="utf-8",
    )
    (knowledge_copy / "places.toml").write_text(
        '[home]\nnames = ["河北", "长沙"]\n[other]\ncities = ["长沙"]\n', encoding="utf-8"
    )
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(knowledge_copy)
    msg = str(err.value)
    assert "partial.toml [fee]: unknown entry 'no_such_entry'" in msg
    assert "partial.toml [fee]: duplicate aspect id" in msg
    assert "partial.toml [bad]: 'words' must list at least one phrase" in msg
    assert "partial.toml [bad]: 'says' must be a non-empty string" in msg
    assert "partial.toml [bad]: 'mode' must be one of answer, offer" in msg
    assert "places.toml: listed both as Hebei and elsewhere: 长沙" in msg


@pytest.mark.parametrize(
    "text, places, elsewhere",
    [
        ("长沙的电子社保卡怎么领", ("长沙",), True),
        ("内蒙古自治区的社保卡丢了", ("内蒙古",), True),
        ("浙江西部的社保卡", ("浙江",), True),  # longest name at the leftmost position: not 江西
        ("大同市社保卡", ("大同",), True),
        ("两张卡大同小异", (), False),  # a name that is also a word counts only with 市/省/地区
        ("河北省石家庄市的社保卡", (), False),
        ("我们省能参照吗", (), True),
    ],
)
def test_places_are_found_and_left_out_of_the_key(norm, text, places, elsewhere):
    n = norm.normalize(text)
    assert (n.places, n.elsewhere) == (places, elsewhere)
    for p in places:
        assert p not in n.text
    assert "河北" in norm.normalize("河北省的社保卡").text
