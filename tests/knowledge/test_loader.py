"""Knowledge loading and validation: every way a curator can break a file is reported with file, entry and problem."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from knowledge.loader import MIN_ALTERNATES, KnowledgeError, load_knowledge

LOST = "09_lost_reissue.toml"
PHONE = "10_change_phone.toml"


def read_entry(kdir: Path, name: str) -> dict:
    with (kdir / "faq" / name).open("rb") as fh:
        return tomllib.load(fh)


def write_entry(kdir: Path, name: str, data: dict) -> None:
    """Write an entry as TOML (JSON strings, arrays and integers are valid TOML values)."""
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in data.items()]
    (kdir / "faq" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def change(kdir: Path, name: str, **fields) -> None:
    data = read_entry(kdir, name)
    data.update(fields)
    write_entry(kdir, name, data)


def problems_of(kdir: Path) -> tuple[str, KnowledgeError]:
    with pytest.raises(KnowledgeError) as exc:
        load_knowledge(kdir)
    return str(exc.value), exc.value


def test_the_built_in_knowledge_is_valid(kb):
    assert [e.section for e in kb.entries] == list(range(14))
    assert len({e.id for e in kb.entries}) == len(kb.entries)
    for e in kb.entries:
        assert e.answer.strip() and e.question.strip()
        assert len(e.alternates) >= MIN_ALTERNATES
        assert e.source_file.endswith(".toml")
    assert len(kb.version) >= 8
    assert kb.terms.synonyms and kb.terms.foreign and kb.terms.anchors


def test_write_entry_round_trips(knowledge_copy):
    before = load_knowledge(knowledge_copy)
    write_entry(knowledge_copy, LOST, read_entry(knowledge_copy, LOST))
    after = load_knowledge(knowledge_copy)
    assert after.get("lost_reissue") == before.get("lost_reissue")


def test_duplicate_id(knowledge_copy):
    change(knowledge_copy, PHONE, id="lost_reissue")
    msg, err = problems_of(knowledge_copy)
    assert f"{PHONE} [lost_reissue]: duplicate id (also in {LOST})" in msg
    assert any(p.file == PHONE and p.entry == "lost_reissue" and "duplicate id" in p.message for p in err.problems)


@pytest.mark.parametrize("answer", ["", "   \n\n  "])
def test_empty_answer(knowledge_copy, answer):
    change(knowledge_copy, LOST, answer=answer)
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: empty answer" in msg


def test_missing_question(knowledge_copy):
    data = read_entry(knowledge_copy, LOST)
    del data["question"]
    write_entry(knowledge_copy, LOST, data)
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: empty question" in msg


@pytest.mark.parametrize("section, shown", [(14, "14"), (-1, "-1"), ("3", "'3'"), (True, "True"), (9.0, "9.0")])
def test_unknown_section(knowledge_copy, section, shown):
    change(knowledge_copy, LOST, section=section)
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: unknown section {shown}" in msg
    assert "0-13" in msg


def test_alternate_shared_by_two_entries(knowledge_copy):
    phone = read_entry(knowledge_copy, PHONE)
    change(knowledge_copy, PHONE, alternates=[*phone["alternates"], "社保卡丢了"])
    msg, err = problems_of(knowledge_copy)
    assert PHONE in msg and "[change_phone]" in msg and "'社保卡丢了'" in msg
    assert "shared with entry 'lost_reissue'" in msg and LOST in msg
    assert len(err.problems) == 1


def test_alternate_shared_after_normalization(knowledge_copy):
    # Not the same string, but the same matching key: matching could not tell the entries apart.
    phone = read_entry(knowledge_copy, PHONE)
    change(knowledge_copy, PHONE, alternates=[*phone["alternates"], "您好，社会保障卡丢了！！"])
    msg, _ = problems_of(knowledge_copy)
    assert "'您好，社会保障卡丢了！！' is shared with entry 'lost_reissue'" in msg


def test_toml_syntax_error(knowledge_copy):
    path = knowledge_copy / "faq" / LOST
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"社保卡丢了",', '"社保卡丢了,', 1), encoding="utf-8")
    msg, err = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: TOML syntax error" in msg
    assert "line" in msg  # where in the file
    assert err.problems[0].entry == "lost_reissue"


def test_toml_syntax_error_without_readable_id(knowledge_copy):
    (knowledge_copy / "faq" / "99_broken.toml").write_text("section = = 3\n", encoding="utf-8")
    msg, _ = problems_of(knowledge_copy)
    assert "99_broken.toml: TOML syntax error" in msg


def test_not_utf8(knowledge_copy):
    path = knowledge_copy / "faq" / LOST
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))  # what a Windows editor might save
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST}: not UTF-8" in msg


def test_too_few_alternates(knowledge_copy):
    alts = read_entry(knowledge_copy, LOST)["alternates"][: MIN_ALTERNATES - 1]
    change(knowledge_copy, LOST, alternates=alts)
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: only {MIN_ALTERNATES - 1} alternates (at least {MIN_ALTERNATES} needed)" in msg


def test_blank_alternates_do_not_count(knowledge_copy):
    alts = read_entry(knowledge_copy, LOST)["alternates"][: MIN_ALTERNATES - 1]
    change(knowledge_copy, LOST, alternates=[*alts, "   ", ""])
    msg, _ = problems_of(knowledge_copy)
    assert f"only {MIN_ALTERNATES - 1} alternates" in msg


def test_alternates_not_a_list_of_strings(knowledge_copy):
    change(knowledge_copy, LOST, alternates=["社保卡丢了", 3])
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: 'alternates' must be a list of strings" in msg


def test_unknown_key(knowledge_copy):
    change(knowledge_copy, LOST, answr="typo of answer")
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [lost_reissue]: unknown keys: answr" in msg


def test_bad_id(knowledge_copy):
    change(knowledge_copy, LOST, id="Lost Reissue!")
    msg, _ = problems_of(knowledge_copy)
    assert f"{LOST} [Lost Reissue!]: 'id' must be" in msg


def test_every_problem_reported_at_once(knowledge_copy):
    change(knowledge_copy, LOST, section=14)
    change(knowledge_copy, PHONE, answer="", extra=1)
    _, err = problems_of(knowledge_copy)
    found = {(p.file, p.entry, p.message.split(" ")[0]) for p in err.problems}
    assert (LOST, "lost_reissue", "unknown") in found
    assert (PHONE, "change_phone", "empty") in found
    assert (PHONE, "change_phone", "unknown") in found


def test_no_entry_files(knowledge_copy):
    for f in (knowledge_copy / "faq").glob("*.toml"):
        f.unlink()
    msg, _ = problems_of(knowledge_copy)
    assert "no entry files" in msg


def test_terms_variant_mapped_twice(knowledge_copy):
    terms = knowledge_copy / "terms.toml"
    text = terms.read_text(encoding="utf-8")
    terms.write_text(text.replace('"补办" = ["补卡",', '"补办" = ["丢了", "补卡",', 1), encoding="utf-8")
    msg, _ = problems_of(knowledge_copy)
    assert "terms.toml [补办]: variant '丢了' also maps to '挂失'" in msg


def test_terms_syntax_error(knowledge_copy):
    terms = knowledge_copy / "terms.toml"
    terms.write_text(terms.read_text(encoding="utf-8") + "\n[synonyms\n", encoding="utf-8")
    msg, _ = problems_of(knowledge_copy)
    assert "terms.toml: TOML syntax error" in msg


# -- version ----------------------------------------------------------------------------------------------
def test_version_is_stable_and_follows_content(knowledge_copy, kb):
    v0 = load_knowledge(knowledge_copy).version
    assert v0 == kb.version  # same content as the built-in files, same version
    assert load_knowledge(knowledge_copy).version == v0  # deterministic

    path = knowledge_copy / "faq" / LOST
    original = path.read_bytes()
    path.write_bytes(original.replace("社保卡被偷了".encode(), "社保卡让人偷了".encode(), 1))
    v1 = load_knowledge(knowledge_copy).version
    assert v1 != v0

    path.write_bytes(original)
    assert load_knowledge(knowledge_copy).version == v0  # content, not modification time

    terms = knowledge_copy / "terms.toml"
    terms.write_text(terms.read_text(encoding="utf-8") + "\n# a curator's comment\n", encoding="utf-8")
    assert load_knowledge(knowledge_copy).version not in (v0, v1)


def test_broken_knowledge_never_half_loads(knowledge_copy):
    change(knowledge_copy, PHONE, section=-1)
    with pytest.raises(KnowledgeError):
        load_knowledge(knowledge_copy)
    # Fixing the file loads everything again.
    change(knowledge_copy, PHONE, section=10)
    kb = load_knowledge(knowledge_copy)
    assert len(kb.entries) == 14 and kb.get("change_phone").section == 10


def test_the_same_files_load_once_and_every_caller_gets_its_own_base(knowledge_copy, tmp_path, monkeypatch):
    """A load is kept by the digest of the files' bytes: loading unchanged files again gives an equal base without
    parsing anything, as a separate object, so what one caller changes in its base no other caller sees."""
    first = load_knowledge(knowledge_copy)
    parsed: list[object] = []
    monkeypatch.setattr(tomllib, "load", lambda fh: parsed.append(fh) or pytest.fail("parsed again"))
    first.entries.clear()
    first.warnings.append("changed by a caller")
    first.directory = tmp_path / "elsewhere"
    again = load_knowledge(knowledge_copy)
    assert again is not first and again.entries and "changed by a caller" not in again.warnings
    assert again.directory == knowledge_copy and again.version == first.version
    assert again.content() == load_knowledge().content()  # the same bytes as the shipped folder
    assert again.get("apply") is again.by_id["apply"]
    assert parsed == []

    # Another folder with the same files: the same content, its own directory.
    other = tmp_path / "other"
    shutil.copytree(knowledge_copy, other)
    assert load_knowledge(other).directory == other and load_knowledge(other).version == again.version


def test_a_changed_file_is_loaded_again(knowledge_copy):
    before = load_knowledge(knowledge_copy)
    data = read_entry(knowledge_copy, PHONE)
    change(knowledge_copy, PHONE, alternates=[*data["alternates"], "电子社保卡在哪个应用里能领到呀"])
    after = load_knowledge(knowledge_copy)
    assert after.version != before.version
    assert "电子社保卡在哪个应用里能领到呀" in after.get("change_phone").alternates
    assert "电子社保卡在哪个应用里能领到呀" not in before.get("change_phone").alternates
    # ... and a broken one is refused every time, not served from an earlier load.
    (knowledge_copy / "faq" / PHONE).write_text("id = ", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(KnowledgeError):
            load_knowledge(knowledge_copy)
