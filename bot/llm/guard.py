"""Grounding guard: decide, before anyone sees it, whether a model answer may be shown. Pure functions, fast.

An answer passes only if
  * it contains neither the canary token nor any 12-character stretch of the system prompt (stretches that also
    occur in the FAQ, the refusal or our own notes do not count);
  * it is the configured refusal (then nothing the model wrote is shown), or
  * it cites at least one entry as ``[来源: id]`` and every cited id was in the context;
  * every number (digits; Chinese numerals before a unit of time, money or age), URL, and app / mini-program /
    public-account name, and every name in 〈〉《》「」『』, occurs in the cited entries;
  * each sentence of substance shares at least `threshold` of its character bigrams with the cited entries;
  * no claim contradicts or goes beyond the cited entries (`bot.llm.claims`: numbers with units, cost words,
    documents, who/where together, polarity, restriction, before/after, statements the source calls wrong).
Traditional answers are converted to Simplified before checking (the knowledge is Simplified).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.llm import claims
from bot.llm.numerals import chinese_numeral_value
from knowledge.bigrams import bigram_set
from knowledge.loader import Entry
from knowledge.normalize import to_simplified

# [来源: apply] / 【来源：apply, two_accounts】 / （来源: apply） — also 來源 (Traditional) and 出处.
CITE_RE = re.compile(
    r"\s*[\[［【〔（(]\s*(?:来源|來源|出处|出處|引用)\s*[:：]\s*([A-Za-z0-9_\-]+(?:\s*[,，、;；\s]\s*[A-Za-z0-9_\-]+)*)\s*[\]］】〕）)]"
)
_ID_SPLIT_RE = re.compile(r"[,，、;；\s]+")
# An unfinished citation at the end of a streamed preview ("…即可。[来" ) is held back.
_OPEN_CITE_TAIL_RE = re.compile(r"[\[［【〔（(][^\]］】〕）)\n]{0,40}$")

_FULLWIDTH_DIGITS = {0xFF10 + i: ord("0") + i for i in range(10)}
_LIST_MARKER_RE = re.compile(
    r"(?m)(?:^|(?<=[\s：:；;。，,]))(?:[（(]\d{1,2}[)）]|\d{1,2}[.、．)）](?!\d))|(?<![\d.])\d{1,2}、"
)
_ORDINAL_RE = re.compile(r"第\d{1,2}(?=[步种个条点项次类])")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
# Chinese numerals count as facts when they state a time, an amount of money, an age or a share.
_CN_NUMBER_RE = re.compile(
    r"([零〇一二两三四五六七八九十百千万]+)(?=年|个月|月|日|天|周岁|岁|小时|分钟|工作日|个工作日|周|星期|元|块|角|分钱|万元|%|％|倍)"
)
_URL_RE = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s，。；、）)\]】]+|\b[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.(?:com|cn|net|org|gov|edu|io|info)(?:/[^\s，。；、）)\]】]*)?"
)
_BRACKET_NAME_RE = re.compile(
    r"〈([^〈〉\n]{1,30})〉|《([^《》\n]{1,30})》|「([^「」\n]{1,30})」|『([^『』\n]{1,30})』|<([^<>\n]{1,30})>"
)
_KIND_WORDS = r"(?:APP|App|app|客户端|小程序|公众号|服务号|网站|官网|热线)"
_QUOTED_NAME_RE = re.compile(r"[“\"'〈《「『]([^”\"'〉》」』\n]{1,30})[”\"'〉》」』]\s*(" + _KIND_WORDS + ")")
_NAMED_KIND_RE = re.compile(r"([\u4e00-\u9fffA-Za-z0-9]{0,16})\s*(" + _KIND_WORDS + ")")
# Words that end a verb phrase before a name ("用河北人社APP", "搜索衡水人社公众号"): the name starts after them.
_BOUNDARY_WORDS = sorted(
    [
        "用",
        "在",
        "通过",
        "登录",
        "登陆",
        "打开",
        "下载",
        "搜索",
        "关注",
        "进入",
        "使用",
        "的",
        "和",
        "或",
        "及",
        "与",
        "是",
        "到",
        "去",
        "里",
        "中",
        "点击",
        "选择",
        "找到",
        "安装",
        "从",
        "经",
        "由",
        "向",
        "对",
        "把",
        "等",
        "即",
        "如",
        "以",
        "可",
        "或者",
        "以及",
        "还有",
        "上",
        "微信搜索",
        "支付宝搜索",
    ],
    key=len,
    reverse=True,
)
_KIND_ALIASES = {
    "app": ("app", "客户端"),
    "客户端": ("app", "客户端"),
    "小程序": ("小程序",),
    "公众号": ("公众号", "服务号"),
    "服务号": ("公众号", "服务号"),
    "网站": ("网站", "官网"),
    "官网": ("网站", "官网"),
    "热线": ("热线",),
}
_SENTENCE_SPLIT_RE = re.compile(r"[。！？!?；;\n]+")

# Pleasantries state nothing about the FAQ ("希望对您有帮助", "祝您办理顺利"): not held to the overlap rule (the
# claim checks still read them).
COURTESY_RE = re.compile(
    r"^(?:(?:您好|你好)[呀啊]?[！!～~。]*$|(?:您好|你好)?[，,！!～~]?(?:很高兴为您(?:解答|服务)|感谢您?的?(?:咨询|提问|耐心|理解)|希望(?:以上)?(?:内容|回答|信息)?"
    r"(?:对您|能)?有(?:所)?帮助|祝您?.{0,6}(?:顺利|愉快)|(?:如果|如)?(?:还有|有)其他问题.{0,12}(?:问我|咨询|提问|联系)"
    r"|不客气|别着急|别担心|请放心)[。！!～~]*$)"
)
MIN_SENTENCE_CHARS = 6  # shorter sentences ("具体如下：", "您好！") are connectives, not claims
DEFAULT_THRESHOLD = (
    0.35  # the claim checks catch contradictions, so paraphrase may drift further (tests/data/guard_answers.jsonl)
)
LEAK_CHARS = 12


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # "" when ok; short machine-readable reason otherwise
    text: str = ""  # the answer with citation markers removed (for display), "" for a refusal
    cited: tuple[str, ...] = ()
    refusal: bool = False

    @property
    def label(self) -> str:
        return "pass" if self.ok else f"fail: {self.reason}"


# ---------------------------------------------------------------------------------------------- citations
def parse_citations(text: str) -> list[str]:
    """Cited ids in order of first appearance."""
    out: list[str] = []
    for m in CITE_RE.finditer(text):
        for cid in _ID_SPLIT_RE.split(m.group(1).strip()):
            if cid and cid not in out:
                out.append(cid)
    return out


def strip_citations(text: str) -> str:
    """The text without citation markers, tidied (no space before punctuation, no trailing spaces)."""
    text = CITE_RE.sub("", text)
    text = re.sub(r"[ \t]+([。，；！？、])", r"\1", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_THINK_RE = re.compile(r"<think>.*?</think>\s*", re.S | re.I)
_OPEN_THINK_RE = re.compile(r"<think>.*\Z", re.S | re.I)


def strip_reasoning(text: str) -> str:
    """Drop reasoning blocks (<think>…</think>, as Qwen3 / DeepSeek-R1 servers emit them); an unclosed one to the end.

    Reasoning is never shown, so it is neither checked for leaks (it often restates the rules) nor displayed.
    """
    if "<think" not in text and "<THINK" not in text:
        return text
    return _OPEN_THINK_RE.sub("", _THINK_RE.sub("", text))


def preview_text(text: str) -> str:
    """A streamed partial answer for display: complete markers removed, an unfinished one at the end held back."""
    text = CITE_RE.sub("", text)
    text = _OPEN_CITE_TAIL_RE.sub("", text)
    return text.rstrip()


# ---------------------------------------------------------------------------------------------- facts
def numbers(text: str) -> set[str]:
    """Every number stated in `text` as a canonical string: digit runs as written, Chinese numerals as their value.

    List markers ("1. ", "（2）") and ordinals ("第1步") are structure, not facts, and are skipped.
    """
    text = text.translate(_FULLWIDTH_DIGITS)
    text = _LIST_MARKER_RE.sub(" ", text)
    text = _ORDINAL_RE.sub("第", text)
    return source_numbers(text)


def source_numbers(text: str) -> set[str]:
    """Numbers a source states, in both forms, so "10年" in the source grounds "十年" in an answer and back."""
    text = text.translate(_FULLWIDTH_DIGITS)
    out = set(_NUMBER_RE.findall(text))
    for m in _CN_NUMBER_RE.finditer(text):
        v = chinese_numeral_value(m.group(1))
        if v is not None:
            out.add(str(v))
    return out


def urls(text: str) -> list[str]:
    return [m.group(0).rstrip(".") for m in _URL_RE.finditer(text)]


def _strip_boundary(run: str) -> str:
    """The part of `run` after the last verb/connective word: the name itself ("可以用河北人社" -> "河北人社")."""
    best = -1
    best_len = 0
    for w in _BOUNDARY_WORDS:
        i = run.rfind(w)
        if i >= 0 and i + len(w) > best + best_len:
            best, best_len = i, len(w)
    return run[best + best_len :] if best >= 0 else run


def names(text: str) -> list[tuple[str, str]]:
    """(name, kind) pairs the answer states: bracketed names (kind "") and names of apps, mini-programs, ..."""
    out: list[tuple[str, str]] = []
    for m in _BRACKET_NAME_RE.finditer(text):
        name = next(g for g in m.groups() if g is not None).strip()
        if name:
            out.append((name, ""))
    for m in _QUOTED_NAME_RE.finditer(text):
        out.append((m.group(1).strip(), m.group(2)))
    for m in _NAMED_KIND_RE.finditer(text):
        name = _strip_boundary(m.group(1))
        out.append((name, m.group(2)))
    return out


_FUNCTION_CHARS = set("请您你可以用在到去里和或及与并再先后就也都还要需将把从")


def _kind_key(kind: str) -> str:
    return _KIND_ALIASES.get(kind.lower(), (kind.lower(),))[0]


def source_names(source: str) -> set[tuple[str, str]]:
    """(name, kind group) of every app / mini-program / public account the source names."""
    return {(n.lower(), _kind_key(k)) for n, k in names(source) if k and n}


def _name_in_source(name: str, kind: str, source_lower: str, known: set[tuple[str, str]]) -> bool:
    n = name.lower()
    if not kind:
        return n in source_lower
    if not n:  # "下载APP", "合作银行的APP": a generic mention names nothing
        return True
    key = _kind_key(kind)
    for known_name, known_kind in known:
        if known_kind != key or not n.endswith(known_name):
            continue
        # "请河北人社APP" is fine; "掌上人社APP" (prefix 掌上) or "石家庄人社APP" is another app.
        if all(ch in _FUNCTION_CHARS for ch in n[: len(n) - len(known_name)]):
            return True
    return False


# ---------------------------------------------------------------------------------------------- overlap
def content_bigrams(text: str) -> set[str]:
    return bigram_set(claims.content(text))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT_RE.split(text) if s.strip()]


def overlap(sentence: str, reference: set[str]) -> float:
    gs = content_bigrams(sentence)
    if not gs:
        return 1.0
    return len(gs & reference) / len(gs)


# ---------------------------------------------------------------------------------------------- leaks
class LeakDetector:
    """Finds the canary or a long stretch of the system prompt in model output (also split across whitespace)."""

    def __init__(self, system_prompt: str, canary: str, allowed: Iterable[str] = (), n: int = LEAK_CHARS):
        self.canary = canary
        self.n = n
        self._canary_key = _squash(canary)
        sys_key = _squash(system_prompt)
        grams = {sys_key[i : i + n] for i in range(len(sys_key) - n + 1)}
        for text in allowed:
            key = _squash(text)
            grams.difference_update(key[i : i + n] for i in range(len(key) - n + 1))
        self._grams = frozenset(grams)

    def find(self, text: str) -> str | None:
        """'canary', 'system-prompt' or None."""
        if not text:
            return None
        key = _squash(to_simplified(text))
        if self._canary_key and (self._canary_key in key or self._canary_key in _squash(text)):
            return "canary"
        # A canary cut in half by the model ("FAQ-CANARY-1a2b …") still counts: its random part is enough.
        tail = self._canary_key[-12:]
        if len(tail) >= 8 and tail in key:
            return "canary"
        n = self.n
        grams = self._grams
        for i in range(len(key) - n + 1):
            if key[i : i + n] in grams:
                return "system-prompt"
        return None

    def partial_canary_at_end(self, text: str) -> bool:
        """True when `text` ends with the start of the canary (a preview must not show even that)."""
        key = _squash(text)
        c = self._canary_key
        return any(key.endswith(c[:j]) for j in range(min(len(c), len(key)), 2, -1))


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


# ---------------------------------------------------------------------------------------------- the verdict
def is_refusal(answer: str, refusal: str) -> bool:
    """The model used the configured refusal (compared on content characters, any script)."""
    key = claims.content(refusal)
    return bool(key) and key in claims.content(to_simplified(strip_citations(answer)))


def check(
    answer: str,
    *,
    context: Mapping[str, Entry],
    refusal: str,
    leak: LeakDetector | None = None,
    boilerplate: Iterable[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
) -> Verdict:
    """The verdict on one model answer. `context` maps the ids sent to their entries."""
    raw = strip_reasoning(answer or "")
    if not raw.strip():
        return Verdict(False, "empty")
    if leak is not None:
        found = leak.find(raw)
        if found:
            return Verdict(False, f"leak:{found}")
    simple = to_simplified(raw)
    if is_refusal(simple, refusal):
        return Verdict(True, "", "", (), refusal=True)
    cited = parse_citations(simple)
    if not cited:
        return Verdict(False, "no-citation")
    unknown = [c for c in cited if c not in context]
    if unknown:
        return Verdict(False, "unknown-citation:" + ",".join(unknown[:3]))
    shown = strip_citations(raw)
    body = strip_citations(simple)
    entries = [context[c] for c in cited]
    source = "\n".join(f"{e.question}\n{e.answer}" for e in entries)
    source_lower = source.lower()

    for url in urls(body):
        if url.lower() not in source_lower:
            return Verdict(False, f"url-not-in-source:{url[:40]}", cited=tuple(cited))
    allowed_numbers = source_numbers(source)
    for num in sorted(numbers(body)):
        if num not in allowed_numbers:
            return Verdict(False, f"number-not-in-source:{num}", cited=tuple(cited))
    known = source_names(source)
    for name, kind in names(body):
        if not _name_in_source(name, kind, source_lower, known):
            return Verdict(False, f"name-not-in-source:{(name + kind)[:40]}", cited=tuple(cited))

    reference = content_bigrams(source)
    extra = [content_bigrams(b) for b in boilerplate]
    substantive = 0
    for s in sentences(body):
        if len(claims.content(s)) < MIN_SENTENCE_CHARS:
            continue
        if any(extra_set and overlap(s, extra_set) >= 0.8 for extra_set in extra):
            continue  # our own province note / referral, echoed
        s = "，".join(c for c in re.split(r"[，,]", s) if not COURTESY_RE.match(c.strip()))
        if not s.strip():
            continue
        substantive += 1
        score = overlap(s, reference)
        if score < threshold:
            return Verdict(False, f"low-overlap:{score:.2f}:{s[:24]}", cited=tuple(cited))
    if not substantive:
        return Verdict(False, "no-content", cited=tuple(cited))
    problem = claims.check(body, entries)
    if problem:
        return Verdict(False, f"claim:{problem}", cited=tuple(cited))
    return Verdict(True, "", shown, tuple(cited))
