"""Claim checks for generated answers: the contradictions bigram overlap, numbers and names cannot see.

A model answer can restate an entry almost word for word and still flip what it says. Each rule below compares what
an answer *claims* with the cited entries (Simplified text, citation markers removed):

* numbers with their unit — "24小时" in the source does not ground "24天"; time, money and age units only;
* cost words (免费 / 收费 / 费用 / 工本费 / …) — only if the entries use the same word;
* documents (身份证 / 户口簿 / 结婚证 / 照片 / 委托书 …) — only documents the entries name;
* who and where together — the groups (成年人 / 未成年人 / 本人 / 代办人 / 监护人), channel kinds (online: APP, 小程序,
  公众号, 线上… / offline: 网点, 柜面, 窗口…), named platforms (微信, 支付宝…) and documents a clause of the answer
  names must all occur together in one sentence (or step, with its heading) of the entries: "未成年人也能在APP上改"
  fails when the entry's APP step says 仅限成人 and its minors' line names only 网点;
* polarity — a clause that restates a source clause must keep its negation (不 / 无需 / 不用 / 不需要 / 没有 / 无法 …):
  added where the source has none, or dropped where the source negates the very word the answer keeps;
* restriction and necessity — 只能 / 仅限 / 只有 need a restriction in the matching source sentence; 必须 / 一定要 need
  a necessity (必须 / 需 / 须 / 要);
* requirements waived — "不用 / 无需 X" where the source says "需要……X";
* before / after — "到期后" where the matching source clause says "到期之前" (or the reverse); "先A……再B" where the
  source sentence naming both does B first;
* a negated statement restated — a clause holding most of a negated source clause (bigrams weighted by rarity)
  without a negation contradicts it;
* statements the source itself declares wrong ("关于X的说法是错误的"): a clause restating what only X says, in a
  sentence without a refutation (错误 / 无关 / 不需要 / 也可以 …), fails;
* splices — one clause built from two cited entries, each adding words the other lacks (a link no entry makes).

Matching a clause to the source is by character-bigram coverage, so the rules hold for any FAQ, not only this one.
Every function here is pure; per-entry preparation is cached by the entry's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from bot.llm.numerals import chinese_numeral_value
from bot.llm.quote import split_units  # sentences and steps with their headings: one splitter for quoting and checks
from knowledge.bigrams import bigrams
from knowledge.loader import Entry

_CONTENT_RE = re.compile(r"[^\u4e00-\u9fffA-Za-z0-9]+")
_SENTENCE_RE = re.compile(r"[。！？!?\n]+")
_CLAUSE_RE = re.compile(r"[，,。；;！？!?\n]+")

# --- vocabularies (general, not this FAQ's wording) ---------------------------------------------------------------
_NUM = r"(\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万]+)"
_UNITS = {
    "小时": "h",
    "个小时": "h",
    "钟头": "h",
    "个钟头": "h",
    "分钟": "min",
    "天": "d",
    "日": "date",
    "个工作日": "wd",
    "工作日": "wd",
    "周": "w",
    "个星期": "w",
    "星期": "w",
    "个月": "mon",
    "月": "month",
    "年": "y",
    "周岁": "age",
    "岁": "age",
    "元": "yuan",
    "块": "yuan",
    "块钱": "yuan",
}
_UNIT_RE = re.compile(_NUM + r"\s*(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + ")")
_COST_RE = re.compile(r"免费|收费|费用|工本费|手续费|服务费|押金|付费|缴费|交费|花钱|要钱|不要钱|成本费")
_DOC_ALIASES = {
    "身份证": "身份证",
    "户口簿": "户口簿",
    "户口本": "户口簿",
    "户口": "户口簿",
    "结婚证": "结婚证",
    "离婚证": "离婚证",
    "出生证明": "出生证明",
    "出生医学证明": "出生证明",
    "居住证": "居住证",
    "暂住证": "居住证",
    "护照": "护照",
    "驾驶证": "驾驶证",
    "驾照": "驾驶证",
    "照片": "照片",
    "证件照": "照片",
    "委托书": "委托书",
    "授权书": "委托书",
    "介绍信": "介绍信",
    "存折": "存折",
    "通行证": "通行证",
    "学生证": "学生证",
    "残疾证": "残疾证",
    "军官证": "军官证",
    "社保卡": "社保卡",
    "社会保障卡": "社保卡",
    "银行卡": "银行卡",
    "医保卡": "医保卡",
    "复印件": "复印件",
    "证明材料": "证明",
    "单位证明": "证明",
    "证明": "证明",
    "公证": "公证",
    "回执": "回执",
    "凭条": "回执",
    "存根": "回执",
    "收据": "收据",
    "发票": "收据",
    "申请表": "申请表",
    "登记表": "申请表",
    "表格": "申请表",
    "协议": "协议",
    "合同": "协议",
    "执照": "执照",
}
_DOC_RE = re.compile("|".join(sorted(map(re.escape, _DOC_ALIASES), key=len, reverse=True)))
_WHO = {
    "minor": ("未成年人", "未成年", "儿童", "小孩", "孩子", "新生儿", "婴儿", "宝宝", "子女", "学生"),
    "adult": ("成年人", "成人", "大人"),
    "self": ("本人", "亲自"),
    "proxy": ("代办人", "他人代办", "代办", "代理人", "委托", "家人", "亲属", "别人"),
    "guardian": ("监护人", "父母", "家长"),
    "elderly": ("老人", "老年人"),
}
_CHANNELS = {
    "online": (
        "线上",
        "网上",
        "在线",
        "网页",
        "网站",
        "官网",
        "APP",
        "App",
        "app",
        "客户端",
        "小程序",
        "公众号",
        "手机银行",
        "掌上",
        "手机上",
        "微信",
        "支付宝",
        "云闪付",
    ),
    "offline": (
        "线下",
        "网点",
        "柜面",
        "柜台",
        "窗口",
        "大厅",
        "营业厅",
        "现场办理",
        "到现场",
        "去现场",
        "当面",
        "服务点",
        "服务中心",
    ),
}
_PLATFORMS = ("微信", "支付宝", "云闪付", "抖音", "淘宝", "京东", "国家政务服务平台", "掌上12333", "12333")
_FEATURE_TERMS: list[tuple[str, str]] = (
    [(t, "who:" + k) for k, ts in _WHO.items() for t in ts]
    + [(t, "ch:" + k) for k, ts in _CHANNELS.items() for t in ts]
    + [(t, "pf:" + t) for t in _PLATFORMS]
)
_FEATURE_RE = re.compile("|".join(sorted({re.escape(t) for t, _ in _FEATURE_TERMS}, key=len, reverse=True)))
_FEATURE_OF: dict[str, set[str]] = {}
for _t, _f in _FEATURE_TERMS:
    _FEATURE_OF.setdefault(_t, set()).add(_f)

# Negation. Words with a negation character that negate nothing are removed first; "X不X" asks a question.
_NOT_NEGATION_RE = re.compile(
    r"未成年|不同|不少|不久|不断|不仅|不论|不管|无论|非常|未来|查无此人|毫无疑问|无误|"
    r"识别|区别|特别|分别|告别|类别|级别|性别|个别|辨别|鉴别|无线|(.)不\1|(.)没\2"
)
_NEGATOR_RE = re.compile(r"不需要|不用|无需|不必|不要|不能|无法|不可以|不可|不会|不了|没有|没法|没|未|无|不|非|别|勿")
_REFUTE_RE = re.compile(
    r"错误|不对|不正确|误传|谣言|误解|无关|没有关系|没关系|不影响|不需要|无需|不用|不必|也可以|也能|"
    r"照样|照常|并非|不是|同样可以|一样可以|可以直接"
)
_RESTRICT_RE = re.compile(r"只能|仅限|只限|只有|只需|只要|仅|唯一")
_NEED_NEGATOR_RE = re.compile(r"不需要|无需|不用|不必|不要|不须|免去")
_NEED_RE = re.compile(r"必须|一定要|务必")
_NEED_SOURCE_RE = re.compile(r"必须|需|须|要|只能|仅限")
_ORDER_RE = re.compile(r"([\u4e00-\u9fff]{2})(之前|以前|前|之后|以后|后)")
_WRONG_RE = re.compile(r"(?:关于)?([^，。；\n]{4,80}?)的?(?:说法|观点|传言)(?:是|都是)?(?:错误|不正确|不对|不实)的?")

ALIGN = 0.5  # share of a clause's bigrams found in a source clause for the two to say the same thing
MIN_CLAUSE_CHARS = 6
SCOPE_ALIGN = 0.25  # share of what a clause is about that must match a source sentence to hold it to its scope
RESTATE = 0.5  # an answer clause holding this much (weighted) of a negated source clause restates it; without a
# negation it contradicts it ("医保功能密码会重置" against "医保功能密码不变")
MODAL_ALIGN = 0.34  # ... to hold it to that sentence's restriction / necessity


def content(text: str) -> str:
    """Only Han characters, letters and digits (lower case): what bigram overlap is computed on."""
    return _CONTENT_RE.sub("", text).lower()


def content_bigrams(text: str) -> frozenset[str]:
    """The bigrams of the text's content; a single character has none here (no clause is one character)."""
    return frozenset(bigrams(content(text), single=False))


def _coverage(grams: frozenset[str], reference: frozenset[str]) -> float:
    return len(grams & reference) / len(grams) if grams else 0.0


def negations(text: str) -> list[re.Match]:
    return list(_NEGATOR_RE.finditer(_NOT_NEGATION_RE.sub(lambda m: "＿" * len(m.group(0)), text)))


def without_negators(text: str) -> str:
    masked = _NOT_NEGATION_RE.sub(lambda m: "＿" * len(m.group(0)), text)
    out = list(text)
    for m in _NEGATOR_RE.finditer(masked):
        for i in range(m.start(), m.end()):
            out[i] = " "
    return "".join(out)


_APP_NAME_RE = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{0,6}(?:APP|App|app|客户端|小程序|公众号|服务号)")


def without_features(text: str) -> str:
    """The text with group, channel and platform words and app names blanked (what a clause is *about* remains)."""
    return _FEATURE_RE.sub(" ", _APP_NAME_RE.sub(" ", text))


# Verbs ending in 成 make "成人" by accident ("完成人脸识别"): masked before groups are looked for.
_CHENG_VERB_RE = re.compile(r"[完达促构组形变养生造办]成")


def features(text: str) -> frozenset[str]:
    out: set[str] = set()
    text = _CHENG_VERB_RE.sub("＿＿", text)
    for m in _FEATURE_RE.finditer(text):
        out |= _FEATURE_OF[m.group(0)]
    for m in _DOC_RE.finditer(text):
        out.add("doc:" + _DOC_ALIASES[m.group(0)])
    return frozenset(out)


def unit_pairs(text: str) -> set[tuple[str, str]]:
    out = set()
    for m in _UNIT_RE.finditer(text):
        num = m.group(1)
        if not num[0].isdigit():
            value = chinese_numeral_value(num)
            if value is None:
                continue
            num = str(value)
        out.add((num.lstrip("0") or "0", _UNITS[m.group(2)]))
    return out


# --- the source side ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    text: str
    grams: frozenset[str]
    negated: bool
    negated_words: tuple[str, ...]  # the 1-2 characters right after each negator
    unit: int  # index into Source.units
    contexts: tuple[frozenset[str], ...] = ()  # per negation: the characters around it (what it negates)
    wrong: bool = False  # part of a statement the source declares wrong


def negation_contexts(text: str) -> tuple[frozenset[str], ...]:
    """For each negation, the character before it and three after it: "认证没有成功" -> {证, 成, 功};
    "绑不了" -> {绑} (a potential complement negates the verb before it)."""
    out = []
    for m in negations(text):
        around = content(text[max(0, m.start() - 1) : m.start()]) + content(text[m.end() : m.end() + 4])[:3]
        out.append(frozenset(around))
    return tuple(out)


@dataclass(frozen=True)
class UnitInfo:
    text: str  # the entry's question, the unit's headings and the unit
    features: frozenset[str]
    grams: frozenset[str]  # bigrams of the headings and unit without feature words (for alignment)
    negations: tuple[frozenset[str], ...]  # negation contexts in the headings and unit
    restricted: bool  # says 只 / 仅 / 唯一


@dataclass(frozen=True)
class Source:
    text: str
    entry_grams: tuple[frozenset[str], ...]  # per cited entry: the bigrams of its question and answer
    units: tuple[UnitInfo, ...]
    clauses: tuple[Clause, ...]
    pairs: frozenset[tuple[str, str]]
    costs: frozenset[str]
    docs: frozenset[str]
    wrong: tuple[frozenset[str], ...]  # bigrams only the statements the source declares wrong have
    df: dict[str, int] = field(default_factory=dict, compare=False, hash=False)  # clauses each bigram occurs in


@dataclass(frozen=True)
class _Answer:
    """The two attributes `quote.split_units` reads from an entry."""

    id: str
    answer: str


@lru_cache(maxsize=256)
def _entry_source(question: str, answer: str) -> Source:
    units = split_units(_Answer("x", answer)).units  # type: ignore[arg-type]
    units_text: list[UnitInfo] = []
    clauses: list[Clause] = []
    wrong_texts = [m.group(0) for m in _WRONG_RE.finditer(answer)]
    for unit in units:
        # Headings on lines above apply ("①线下修改：" over "成年人：…"); the first sentence of the unit's own line
        # does not ("①挂失：…APP…" names the channels of 挂失, not of the 补卡 sentence after it).
        body = "".join(units[h - 1].text for h in unit.heads if units[h - 1].line != unit.line) + unit.text
        full = question + body
        units_text.append(
            UnitInfo(
                full,
                features(full),
                content_bigrams(without_features(without_negators(body))),
                negation_contexts(body),
                bool(_RESTRICT_RE.search(full)),
            )
        )
        for part in _CLAUSE_RE.split(unit.text):
            if not content(part):
                continue
            negs = negations(part)
            words = tuple(content(part[m.end() : m.end() + 2])[:2] for m in negs)
            clauses.append(
                Clause(
                    part,
                    content_bigrams(without_negators(part)),
                    bool(negs),
                    words,
                    len(units_text) - 1,
                    negation_contexts(part),
                    any(part in w for w in wrong_texts),
                )
            )
    text = f"{question}\n{answer}"
    # What only the wrong statement says: its bigrams minus those of every other sentence of the entry.
    wrong = []
    for m in _WRONG_RE.finditer(answer):
        rest = frozenset().union(*(content_bigrams(u.text) for u in units if m.group(0) not in u.text))
        wrong.append(content_bigrams(m.group(1)) - rest)
    wrong = tuple(w for w in wrong if w)
    return Source(
        text,
        (content_bigrams(text),),
        tuple(units_text),
        tuple(clauses),
        frozenset(unit_pairs(text)),
        frozenset(m.group(0) for m in _COST_RE.finditer(text)),
        frozenset(_DOC_ALIASES[m.group(0)] for m in _DOC_RE.finditer(text)),
        wrong,
        _clause_df(clauses),
    )


def source_of(entries: Sequence[Entry]) -> Source:
    parts = [_entry_source(e.question, e.answer) for e in entries]
    if len(parts) == 1:
        return parts[0]
    units: list = []
    clauses: list[Clause] = []
    for p in parts:
        offset = len(units)
        units.extend(p.units)
        clauses.extend(
            Clause(c.text, c.grams, c.negated, c.negated_words, c.unit + offset, c.contexts, c.wrong) for c in p.clauses
        )
    return Source(
        "\n".join(p.text for p in parts),
        tuple(g for p in parts for g in p.entry_grams),
        tuple(units),
        tuple(clauses),
        frozenset().union(*(p.pairs for p in parts)),
        frozenset().union(*(p.costs for p in parts)),
        frozenset().union(*(p.docs for p in parts)),
        tuple(w for p in parts for w in p.wrong),
        _clause_df(clauses),
    )


# --- the answer side -----------------------------------------------------------------------------------------------
def _clause_df(clauses: Sequence[Clause]) -> dict[str, int]:
    """In how many source clauses each bigram occurs."""
    df: dict[str, int] = {}
    for c in clauses:
        for g in c.grams:
            df[g] = df.get(g, 0) + 1
    return df


def _weighted_coverage(grams: frozenset[str], by: frozenset[str], src: Source) -> float:
    """Share of `grams` found in `by`, each bigram weighted by 1 / the number of source clauses it occurs in: words
    every sentence shares (社保, 保卡) say little about which statement is meant."""
    df = src.df
    total = sum(1 / df.get(g, 1) for g in grams)
    return sum(1 / df.get(g, 1) for g in grams & by) / total if total else 0.0


def check(answer: str, entries: Sequence[Entry]) -> str:
    """ "" when no claim contradicts or goes beyond the entries; else a short reason ("polarity:…")."""
    src = source_of(entries)
    for pair in sorted(unit_pairs(answer) - src.pairs):
        return f"number-unit:{pair[0]}{pair[1]}"
    for m in _COST_RE.finditer(answer):
        if m.group(0) not in src.costs:
            return f"cost:{m.group(0)}"
    for m in _DOC_RE.finditer(answer):
        if _DOC_ALIASES[m.group(0)] not in src.docs:
            return f"document:{m.group(0)}"
    for sentence in _SENTENCE_RE.split(answer):
        reversed_steps = _sequence_reversed(sentence, src)
        if reversed_steps:
            return reversed_steps
        refuted = bool(_REFUTE_RE.search(sentence))
        for clause in _CLAUSE_RE.split(sentence):
            reason = _check_clause(clause, src, refuted)
            if reason:
                return reason
    return ""


_FIRST_RE = re.compile(r"首先|先")
_THEN_RE = re.compile(r"然后|之后|以后|再|后")
_CLAUSE_END_RE = re.compile(r"[，,；;：:]")


def _common(a: str, b: str, n: int = 3) -> str:
    """The longest substring of `a` (at least n characters) that occurs in `b`."""
    a = content(a)
    for size in range(len(a), n - 1, -1):
        for i in range(len(a) - size + 1):
            if a[i : i + size] in b:
                return a[i : i + size]
    return ""


def _sequence_reversed(sentence: str, src: Source) -> str:
    """ "先A……再B" where the source sentence naming both does B first ("先绑定金融功能，……再进行实名认证")."""
    first = _FIRST_RE.search(sentence)
    if not first:
        return ""
    then = _THEN_RE.search(sentence, first.end() + 1)
    if not then:
        return ""
    a_text = _CLAUSE_END_RE.split(sentence[first.end() : then.start()])[0][:30]  # a step is short; bounded work
    b_text = _CLAUSE_END_RE.split(sentence[then.end() :])[0][:30]
    for unit in src.units:
        body = content(unit.text)
        a = _common(a_text, body)
        b = _common(b_text, body)
        if not a or not b or a in b or b in a:
            continue
        pos_a = body.find(a)
        if b in body[:pos_a] and b not in body[pos_a + len(a) :]:
            return f"sequence:{a}/{b}"
    return ""


def _order_flipped(text: str, src: Source) -> str:
    """ "X后" where the source clause that best matches the rest of the answer clause says "X前" (or the reverse)."""
    for m in _ORDER_RE.finditer(text):
        before = m.group(2) in ("之前", "以前", "前")
        rest = content_bigrams(without_negators(text[: m.start()] + " " + text[m.end() :]))
        best, flipped = 0.0, False
        df: dict[str, int] = {}
        for c in src.clauses:
            for g in c.grams & rest:
                df[g] = df.get(g, 0) + 1
        for c in src.clauses:
            for o in _ORDER_RE.finditer(c.text):
                if o.group(1) != m.group(1):
                    continue
                score = sum(1 / df[g] for g in c.grams & rest)  # words common to many clauses say little
                opposite = (o.group(2) in ("之前", "以前", "前")) != before
                if score > best or (score == best and not opposite):
                    best, flipped = score, opposite
        if flipped:
            return f"order:{m.group(0)}"
    return ""


def _aligned_units(grams: frozenset[str], src: Source, near: float = 1.0) -> tuple[float, list[UnitInfo]]:
    """The source units sharing the most of `grams` (with those sharing at least `near` times as many), and the
    share the best one covers."""
    counts = [(len(grams & u.grams), u) for u in src.units]
    best = max((n for n, _ in counts), default=0)
    if not best:
        return 0.0, []
    return best / len(grams), [u for n, u in counts if n >= best * near]


SPLICE_GRAMS = 3


def _spliced(grams: frozenset[str], src: Source) -> str:
    """One clause built from two cited entries, each adding words the other lacks ("两个账号是因为……平台数据异常"):
    a link between two entries no entry makes."""
    if len(src.entry_grams) < 2:
        return ""
    own = [grams & g for g in src.entry_grams]
    for i, a in enumerate(own):
        for b in own[i + 1 :]:
            if len(a - b) >= SPLICE_GRAMS and len(b - a) >= SPLICE_GRAMS:
                return "splice"
    return ""


def _need_flipped(text: str, src: Source) -> str:
    """ "不用办理变更手续" where the source says "需要……办理变更手续": a requirement the answer waives."""
    for m in _NEED_NEGATOR_RE.finditer(text):
        predicate = content(text[m.end() : m.end() + 4])[:2]
        if len(predicate) < 2:
            continue
        for c in src.clauses:
            i = c.text.find(predicate)
            if i < 0 or c.wrong:
                continue
            before = c.text[max(0, i - 12) : i]
            if _NEED_SOURCE_RE.search(before) and not negations(before):
                return f"requirement:{m.group(0)}{predicate}"
    return ""


def _check_clause(clause: str, src: Source, refuted: bool = False) -> str:
    text = clause.strip()
    if not content(text):
        return ""
    feats = features(text)
    negs = negations(text)
    if feats and not negs:
        # Who, where, which platform and which document: each pair of different kinds must occur in one sentence.
        for f in feats:
            if not any(f in u.features for u in src.units):
                return f"together:{f.split(':', 1)[1]}"
        for f in feats:
            for g in feats:
                if f < g and f.split(":")[0] != g.split(":")[0] and not any({f, g} <= u.features for u in src.units):
                    return f"together:{f.split(':', 1)[1]}+{g.split(':', 1)[1]}"
        # The sentence this clause restates (matched on what it is about) must name its groups and channel kinds.
        about = content_bigrams(without_features(text))
        checked = {f for f in feats if f.startswith(("who:", "ch:"))}
        if checked and len(about) >= 3:
            share, aligned = _aligned_units(about, src, near=0.5)
            if share >= SCOPE_ALIGN and aligned and not any(checked <= u.features for u in aligned):
                return f"scope:{'+'.join(sorted(x.split(':', 1)[1] for x in checked))}"
    grams = content_bigrams(without_negators(text))
    long_enough = len(content(without_negators(text))) >= MIN_CLAUSE_CHARS
    restates_wrong = any(len(grams & wrong) >= 3 for wrong in src.wrong)
    if restates_wrong and not refuted:
        return f"declared-wrong:{text[:20]}"
    flipped = _order_flipped(text, src) or _need_flipped(text, src) or _spliced(grams, src)
    if flipped:
        return flipped
    if not long_enough:
        return ""
    if negs and not (refuted and restates_wrong):  # refuting what the source calls wrong negates it, rightly
        # Every negation must be one the matching source sentence makes about the same words.
        share, aligned = _aligned_units(content_bigrams(without_features(without_negators(text))), src)
        if share >= ALIGN and aligned:
            exempt = any(
                u.restricted and (u.features & feats - {f for f in feats if f.startswith("doc:")}) for u in src.units
            )  # the complement of a stated restriction ("仅限成人" -> 未成年人不能)
            for ctx in negation_contexts(text):
                if not exempt and not any(ctx & other for u in aligned for other in u.negations):
                    return f"polarity:{text[:20]}"
    if not negs:
        # A negation dropped: a source clause saying nearly as much as the best match negates a word the answer keeps.
        scored = [(_coverage(grams, c.grams), c) for c in src.clauses]
        best = max((x for x, _ in scored), default=0.0)
        for x, c in scored:
            if (
                c.negated
                and not c.wrong
                and (
                    (x >= ALIGN and x >= 0.8 * best and any(w and w[0] in content(text) for w in c.negated_words))
                    or (len(c.grams) >= 4 and _weighted_coverage(c.grams, grams, src) >= RESTATE)
                )
            ):
                return f"polarity:{text[:20]}"
    share, aligned = _aligned_units(content_bigrams(without_features(text)), src)
    if share < MODAL_ALIGN or not aligned:
        return ""
    if _RESTRICT_RE.search(text) and not any(_RESTRICT_RE.search(u.text) for u in aligned):
        return f"restriction:{text[:20]}"
    if _NEED_RE.search(text) and not any(_NEED_SOURCE_RE.search(u.text) for u in aligned):
        return f"necessity:{text[:20]}"
    return ""
