"""Load and validate the curated knowledge base (TOML files a curator edits).

Layout: `knowledge/faq/*.toml` (one entry per file), `knowledge/terms.toml` (synonyms, fillers, foreign terms) and
`knowledge/paraphrases.toml` (phrase-level equivalences, some conditional on another word), `knowledge/places.toml`
(place names: Hebei's, and the others that get a "local rules may differ" note).
Every problem is reported with the file, the entry and what is wrong; nothing half-loaded is ever returned.
"""

from __future__ import annotations

import hashlib
import re
import threading
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from cachetools import LRUCache

PACKAGE_KNOWLEDGE_DIR = Path(__file__).resolve().parent  # the built-in FAQ ships inside this package

# The seed FAQ has an introduction (0) and 13 numbered questions.
SEED_SECTIONS = range(0, 14)
ID_RE = re.compile(r"^[a-z0-9_]{2,40}$")
MIN_ALTERNATES = 12
_ID_LINE_RE = re.compile(r"""^\s*id\s*=\s*["']([^"'\n]+)["']""", re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    id: str
    section: int
    title: str
    question: str
    answer: str
    alternates: tuple[str, ...]
    source_file: str = ""
    requires: tuple[str, ...] = ()  # a direct answer needs one of these words in the question (empty: no condition)


@dataclass(frozen=True)
class Paraphrase:
    """Rewrite any of `variants` to `canonical` in a segment that names one of `when` (if given) and none of `unless`."""

    canonical: str
    variants: tuple[str, ...]
    when: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class Places:
    """Place names (places.toml): Hebei's own, others (some only with 市/省/地区 after them), vague "elsewhere" words."""

    home: tuple[str, ...] = ()
    other: tuple[str, ...] = ()
    need_suffix: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()


@dataclass(frozen=True)
class Terms:
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # canonical -> variants
    greetings: tuple[str, ...] = ()
    particles: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()
    anchors: tuple[str, ...] = ()  # words that place a question in the FAQ's domain
    paraphrases: tuple[Paraphrase, ...] = ()  # applied after the synonyms, in file order
    question_words: tuple[str, ...] = ()  # how people ask, not what about: their bigrams weigh little in matching
    places: Places = field(default_factory=lambda: Places())


@dataclass(frozen=True)
class Aspect:
    """A detail next to what some entries cover that the FAQ does not answer (partial.toml)."""

    id: str
    words: tuple[str, ...]
    says: str  # the honest line shown to the user
    mode: str  # "answer" (entry + line) or "offer" (line + choices, never a direct answer)
    entries: tuple[str, ...] = ()  # entry ids it belongs to; empty = any
    unless: tuple[str, ...] = ()


ASPECT_MODES = ("answer", "offer")


@dataclass(frozen=True)
class Problem:
    file: str
    entry: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" [{self.entry}]" if self.entry else "")
        return f"{where}: {self.message}"


class KnowledgeError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("invalid knowledge base:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class KnowledgeBase:
    entries: list[Entry]
    terms: Terms
    version: str
    directory: Path | None = None
    warnings: list[Problem] = field(default_factory=list)
    aspects: tuple[Aspect, ...] = ()  # half-covered details (partial.toml)

    def __post_init__(self) -> None:
        self.by_id = {e.id: e for e in self.entries}

    def get(self, faq_id: str) -> Entry | None:
        return self.by_id.get(faq_id)

    def content(self) -> tuple:
        """What the indexes are built from (frozen dataclasses, compared by value; see knowledge/built.py)."""
        return tuple(self.entries), self.terms, self.aspects


def _read_toml(path: Path, problems: list[Problem]) -> dict | None:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # Name the entry too when its id line is still readable.
        m = _ID_LINE_RE.search(path.read_text(encoding="utf-8", errors="replace"))
        problems.append(Problem(path.name, m.group(1) if m else None, f"TOML syntax error: {exc}"))
    except UnicodeDecodeError as exc:  # e.g. saved as GBK by an editor
        problems.append(Problem(path.name, None, f"not UTF-8 text (save the file as UTF-8): {exc}"))
    except OSError as exc:
        problems.append(Problem(path.name, None, f"cannot read: {exc}"))
    return None


def _str_list(value, file: str, entry: str | None, key: str, problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem(file, entry, f"'{key}' must be a list of strings"))
        return ()
    return tuple(v.strip() for v in value if v.strip())


def load_terms(path: Path, problems: list[Problem]) -> Terms:
    if not path.exists():
        return Terms()
    data = _read_toml(path, problems)
    if data is None:
        return Terms()
    syn: dict[str, tuple[str, ...]] = {}
    seen_variant: dict[str, str] = {}
    for canon, variants in (data.get("synonyms") or {}).items():
        vs = _str_list(variants, path.name, canon, "synonyms", problems)
        for v in vs:
            if v in seen_variant and seen_variant[v] != canon:
                problems.append(Problem(path.name, canon, f"variant '{v}' also maps to '{seen_variant[v]}'"))
            seen_variant[v] = canon
        syn[canon] = tuple(v for v in vs if v != canon)
    fillers = data.get("fillers") or {}
    return Terms(
        synonyms=syn,
        greetings=_str_list(fillers.get("greetings"), path.name, "fillers", "greetings", problems),
        particles=_str_list(fillers.get("particles"), path.name, "fillers", "particles", problems),
        foreign=_str_list((data.get("foreign") or {}).get("terms"), path.name, "foreign", "terms", problems),
        anchors=_str_list((data.get("domain") or {}).get("anchors"), path.name, "domain", "anchors", problems),
        question_words=_str_list(
            (data.get("question_words") or {}).get("words"), path.name, "question_words", "words", problems
        ),
    )


_CHOICES_RE = re.compile(r"\[([^\[\]]*)\]")


def expand_choices(variant: str) -> list[str]:
    """ "[帮|给]家人开通" -> ["帮家人开通", "给家人开通"] (every combination of the bracketed choices)."""
    m = _CHOICES_RE.search(variant)
    if m is None:
        if "[" in variant or "]" in variant:
            raise ValueError(f"unbalanced brackets in '{variant}'")
        return [variant]
    choices = [c.strip() for c in m.group(1).split("|")]
    if not all(choices):
        raise ValueError(f"empty choice in '{variant}'")
    head, tail = variant[: m.start()], variant[m.end() :]
    return [x for c in choices for x in expand_choices(head + c + tail)]


def load_paraphrases(path: Path, problems: list[Problem]) -> tuple[Paraphrase, ...]:
    if not path.exists():
        return ()
    data = _read_toml(path, problems)
    if data is None:
        return ()
    rules = data.get("rule") or []
    if not isinstance(rules, list):
        problems.append(Problem(path.name, None, "'rule' must be an array of tables ([[rule]])"))
        return ()
    out = []
    for n, rule in enumerate(rules, 1):
        label = f"rule {n}"
        if not isinstance(rule, dict):
            problems.append(Problem(path.name, label, "each [[rule]] must be a table"))
            continue
        unknown = set(rule) - {"canonical", "variants", "when", "unless"}
        if unknown:
            problems.append(Problem(path.name, label, f"unknown keys: {', '.join(sorted(unknown))}"))
        canon = rule.get("canonical")
        if not isinstance(canon, str) or not canon.strip():
            problems.append(Problem(path.name, label, "'canonical' must be a non-empty string"))
            continue
        variants = _str_list(rule.get("variants"), path.name, label, "variants", problems)
        if not variants:
            problems.append(Problem(path.name, label, "'variants' must list at least one phrase"))
            continue
        if any(canon.strip() in v for v in variants):
            problems.append(
                Problem(
                    path.name,
                    label,
                    f"a variant contains the canonical '{canon.strip()}' (it would be rewritten again and again)",
                )
            )
            continue
        try:
            variants = tuple(x for v in variants for x in expand_choices(v))
        except ValueError as exc:
            problems.append(Problem(path.name, label, str(exc)))
            continue
        out.append(
            Paraphrase(
                canon.strip(),
                variants,
                _str_list(rule.get("when"), path.name, label, "when", problems),
                _str_list(rule.get("unless"), path.name, label, "unless", problems),
            )
        )
    return tuple(out)


def load_places(path: Path, problems: list[Problem]) -> Places:
    if not path.exists():
        return Places()
    data = _read_toml(path, problems)
    if data is None:
        return Places()
    home = data.get("home") or {}
    other = data.get("other") or {}
    name = path.name
    places = Places(
        home=_str_list(home.get("names"), name, "home", "names", problems),
        other=(
            _str_list(other.get("provinces"), name, "other", "provinces", problems)
            + _str_list(other.get("cities"), name, "other", "cities", problems)
        ),
        need_suffix=_str_list(other.get("need_suffix"), name, "other", "need_suffix", problems),
        elsewhere=_str_list(other.get("elsewhere"), name, "other", "elsewhere", problems),
    )
    both = set(places.home) & set(places.other + places.need_suffix)
    if both:
        problems.append(Problem(name, None, f"listed both as Hebei and elsewhere: {', '.join(sorted(both))}"))
    return places


def load_aspects(path: Path, problems: list[Problem]) -> tuple[Aspect, ...]:
    if not path.exists():
        return ()
    data = _read_toml(path, problems)
    if data is None:
        return ()
    items = data.get("aspect") or []
    if not isinstance(items, list):
        problems.append(Problem(path.name, None, "'aspect' must be an array of tables ([[aspect]])"))
        return ()
    out, seen = [], set()
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            problems.append(Problem(path.name, f"aspect {n}", "each [[aspect]] must be a table"))
            continue
        aid = item.get("id")
        label = aid if isinstance(aid, str) else f"aspect {n}"
        ok = True
        if not isinstance(aid, str) or not ID_RE.match(aid):
            problems.append(Problem(path.name, label, "'id' must be 2-40 characters of a-z, 0-9, _"))
            ok = False
        elif aid in seen:
            problems.append(Problem(path.name, label, "duplicate aspect id"))
            ok = False
        unknown = set(item) - {"id", "words", "unless", "entries", "says", "mode"}
        if unknown:
            problems.append(Problem(path.name, label, f"unknown keys: {', '.join(sorted(unknown))}"))
            ok = False
        words = _str_list(item.get("words"), path.name, label, "words", problems)
        if not words:
            problems.append(Problem(path.name, label, "'words' must list at least one phrase"))
            ok = False
        says = item.get("says")
        if not isinstance(says, str) or not says.strip():
            problems.append(Problem(path.name, label, "'says' must be a non-empty string"))
            ok = False
        mode = item.get("mode", "offer")
        if mode not in ASPECT_MODES:
            problems.append(Problem(path.name, label, f"'mode' must be one of {', '.join(ASPECT_MODES)}"))
            ok = False
        if ok:
            seen.add(aid)
            out.append(
                Aspect(
                    aid,
                    words,
                    says.strip(),
                    mode,
                    _str_list(item.get("entries"), path.name, label, "entries", problems),
                    _str_list(item.get("unless"), path.name, label, "unless", problems),
                )
            )
    return tuple(out)


def _parse_entry(path: Path, data: dict, problems: list[Problem]) -> Entry | None:
    name = path.name
    eid = data.get("id")
    label = eid if isinstance(eid, str) else None
    ok = True
    if not isinstance(eid, str) or not ID_RE.match(eid):
        problems.append(Problem(name, label, "'id' must be 2-40 characters of a-z, 0-9, _"))
        ok = False
    section = data.get("section")
    if not isinstance(section, int) or isinstance(section, bool) or section not in SEED_SECTIONS:
        problems.append(Problem(name, label, f"unknown section {section!r} (the source has sections 0-13)"))
        ok = False
    for key in ("question", "answer"):
        v = data.get(key)
        if not isinstance(v, str) or not v.strip():
            problems.append(Problem(name, label, f"empty {key}"))
            ok = False
    title = data.get("title") or data.get("question") or ""
    if not isinstance(title, str):
        problems.append(Problem(name, label, "'title' must be a string"))
        ok = False
    alternates = _str_list(data.get("alternates"), name, label, "alternates", problems)
    if len(alternates) < MIN_ALTERNATES:
        problems.append(Problem(name, label, f"only {len(alternates)} alternates (at least {MIN_ALTERNATES} needed)"))
        ok = False
    requires = _str_list(data.get("requires"), name, label, "requires", problems)
    unknown = set(data) - {"id", "section", "title", "question", "answer", "alternates", "requires"}
    if unknown:
        problems.append(Problem(name, label, f"unknown keys: {', '.join(sorted(unknown))}"))
        ok = False
    if not ok:
        return None
    return Entry(
        id=eid,
        section=section,
        title=title.strip(),
        question=data["question"].strip(),
        answer=data["answer"].strip("\n").strip(),
        alternates=alternates,
        source_file=name,
        requires=requires,
    )


# Knowledge bases loaded, by the digest of their files' bytes. Loading parses the TOML, builds the normalizer and
# normalizes every phrase (~50 ms for the shipped FAQ); the same bytes always give the same base, so a reload that
# changed nothing, every `faqbot` command of one process and an Answerer per test share one load. Each caller gets
# its own KnowledgeBase object (its lists copied; entries, terms and aspects are frozen).
_LOADED: LRUCache[str, KnowledgeBase] = LRUCache(maxsize=4)
_LOADED_LOCK = threading.Lock()


def load_knowledge(directory: Path | str | None = None) -> KnowledgeBase:
    """Load `faq/*.toml` and `terms.toml` from `directory`; raise KnowledgeError listing every problem."""
    directory = Path(directory) if directory else PACKAGE_KNOWLEDGE_DIR
    digest = hashlib.sha256()
    files = sorted((directory / "faq").glob("*.toml"))
    if not files:
        raise KnowledgeError([Problem(str(directory / "faq"), None, "no entry files (*.toml) found")])
    sources = [
        *files,
        *(directory / name for name in ("terms.toml", "paraphrases.toml", "places.toml", "partial.toml")),
    ]
    for path in sources:
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    key = digest.hexdigest()
    with _LOADED_LOCK:
        loaded = _LOADED.get(key)
    if loaded is None:
        loaded = _load(directory, files, key[:12])
        with _LOADED_LOCK:
            _LOADED[key] = loaded
    return replace(loaded, entries=list(loaded.entries), warnings=list(loaded.warnings), directory=directory)


def _load(directory: Path, files: list[Path], version: str) -> KnowledgeBase:
    problems: list[Problem] = []
    terms_path = directory / "terms.toml"
    paraphrases_path = directory / "paraphrases.toml"
    places_path = directory / "places.toml"
    partial_path = directory / "partial.toml"
    terms = load_terms(terms_path, problems)
    terms = replace(
        terms, paraphrases=load_paraphrases(paraphrases_path, problems), places=load_places(places_path, problems)
    )
    aspects = load_aspects(partial_path, problems)

    entries: list[Entry] = []
    id_file: dict[str, str] = {}
    for path in files:
        data = _read_toml(path, problems)
        if data is None:
            continue
        entry = _parse_entry(path, data, problems)
        if entry is None:
            continue
        if entry.id in id_file:
            problems.append(Problem(path.name, entry.id, f"duplicate id (also in {id_file[entry.id]})"))
            continue
        id_file[entry.id] = path.name
        entries.append(entry)

    # An alternate (after normalization) may belong to one entry only: otherwise matching cannot decide.
    from knowledge.normalize import Normalizer

    norm = Normalizer(terms)
    owner: dict[str, Entry] = {}
    warnings: list[Problem] = []
    for e in entries:
        for phrase in (e.question, *e.alternates):
            key = norm.normalize(phrase).text
            if not key:
                problems.append(Problem(e.source_file, e.id, f"phrase '{phrase}' is empty after normalization"))
                continue
            other = owner.get(key)
            if other is not None and other.id != e.id:
                problems.append(
                    Problem(
                        e.source_file,
                        e.id,
                        f"alternate '{phrase}' is shared with entry '{other.id}' ({other.source_file})",
                    )
                )
            elif other is not None:
                warnings.append(Problem(e.source_file, e.id, f"alternate '{phrase}' repeats within the entry"))
            owner.setdefault(key, e)
    for a in aspects:
        for eid in a.entries:
            if eid not in id_file:
                problems.append(Problem(partial_path.name, a.id, f"unknown entry '{eid}'"))
    if problems:
        raise KnowledgeError(problems)
    entries.sort(key=lambda e: (e.section, e.id))
    return KnowledgeBase(
        entries=entries,
        terms=terms,
        version=version,
        directory=directory,
        warnings=warnings,
        aspects=aspects,
    )
