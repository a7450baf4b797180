"""Indexes built once per knowledge content (knowledge/built.py): `matcher_for` and `retriever_for`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from knowledge.loader import load_knowledge
from knowledge.match import matcher_for
from knowledge.retrieve import retriever_for

ODD = "紫色长颈鹿的养老金怎么领"  # an alternate added to a copy of the knowledge


@pytest.fixture
def edited(knowledge_copy):
    """A copy of the knowledge with one more alternate (ODD) in its first entry file, and that file's name."""
    path = next((knowledge_copy / "faq").glob("*.toml"))
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("alternates = [", f'alternates = [\n  "{ODD}",', 1), encoding="utf-8")
    kb = load_knowledge(knowledge_copy)
    return kb, next(e.id for e in kb.entries if e.source_file == path.name)


@pytest.mark.parametrize("built_for", [matcher_for, retriever_for], ids=["matcher", "retriever"])
def test_the_same_files_share_one_index(kb, knowledge_copy, built_for):
    shared = built_for(kb)
    assert built_for(kb) is shared
    assert built_for(load_knowledge(kb.directory)) is shared  # loaded again, as a reload does
    assert built_for(load_knowledge(knowledge_copy)) is shared  # the same files in another folder


def test_edited_knowledge_gets_its_own_index_that_answers_from_it(kb, edited):
    edited_kb, owner = edited
    assert edited_kb.version != kb.version
    m, r = matcher_for(edited_kb), retriever_for(edited_kb)
    assert m is not matcher_for(kb) and r is not retriever_for(kb)
    assert matcher_for(edited_kb) is m and retriever_for(edited_kb) is r
    q = m.normalizer.normalize(ODD).text
    assert m.rank(q)[0].entry.id == owner
    assert r.retrieve(q, 1)[0].id == owner
    assert r.matcher.rank(q)[0].entry.id == owner  # the retriever fuses the edited knowledge's matcher


def test_a_knowledge_base_claiming_another_version_is_not_served_its_index(kb, edited):
    edited_kb, owner = edited
    shared = matcher_for(kb)
    impostor = replace(edited_kb, version=kb.version)  # built in code: same version string, other entries
    m = matcher_for(impostor)
    assert m is not shared
    assert m.rank(m.normalizer.normalize(ODD).text)[0].entry.id == owner
    assert ODD in {a for e in m.entries for a in e.alternates}
    again = matcher_for(kb)  # the impostor took that version's slot: kb gets a fresh index of its own content
    assert ODD not in {a for e in again.entries for a in e.alternates}
    assert [s.entry.id for s in again.rank("社保卡丢了")] == [s.entry.id for s in shared.rank("社保卡丢了")]
