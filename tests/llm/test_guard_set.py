"""The labelled model answers (tests/data/guard_answers.jsonl) against both LLM modes.

generate: the guard shows no fabrication and withholds at most 5% of the faithful answers.
quote: every line a user is shown, over the whole set, is curated text or our fixed text — checked through the real
fallback (openai client -> loopback FakeOpenAI), whatever the model outputs.
"""

from __future__ import annotations

import json

import pytest

from bot.answering import texts
from bot.answering.types import Conversation, Draft
from bot.llm import claims, guard_eval, quote
from bot.llm.fallback import LLMFallback
from knowledge.normalize import to_simplified, to_traditional
from prompts.loader import load_prompts
from tests.conftest import DATA_DIR
from tests.fakes.openai_server import FakeOpenAI, reply
from tests.llm.harness import llm_settings
from tests.support.cli import faqbot_main

SET = DATA_DIR / "guard_answers.jsonl"
HELDOUT = DATA_DIR / "guard_answers_heldout.jsonl"  # written after the rules; see README for its first result


def _items(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


ITEMS = _items(SET)


def test_the_set_is_large_and_varied():
    faithful = [i for i in ITEMS if i["label"] == "faithful"]
    fabricated = [i for i in ITEMS if i["label"] == "fabricated"]
    assert len(faithful) >= 60 and len(fabricated) >= 60
    assert len({i["id"] for i in ITEMS}) == len(ITEMS)
    assert {"terse", "chatty", "multi", "steps", "traditional", "greeting"} <= {i["kind"] for i in faithful}
    assert {
        "cost",
        "polarity",
        "unit",
        "scope",
        "declared-wrong",
        "channel",
        "deadline",
        "extra-document",
        "hotline",
        "fee",
        "swap",
        "reversed-condition",
    } <= {i["kind"] for i in fabricated}
    assert all(i.get("select") for i in faithful) and all(i.get("claim") for i in fabricated)


@pytest.mark.parametrize("path", [SET, HELDOUT], ids=["set", "heldout"])
def test_targets_on_the_set(kb, path):
    report = guard_eval.evaluate(guard_eval.load(path, kb), kb, load_prompts())
    gen, quo = report["generate"], report["quote"]
    assert gen["fabrications_shown"] == 0, gen["misses"]
    assert gen["faithful_withheld_rate"] <= 0.05, gen["misses"]
    assert quo["fabrications_shown"] == 0 and quo["lines_not_curated"] == 0
    assert quo["faithful_withheld"] == 0  # a valid selection is always shown


# The five slips of the issue, each with its entry, and a faithful sentence about the same thing.
@pytest.mark.parametrize(
    "entry_id, fabricated, faithful",
    [
        ("lost_reissue", "补办是免费的", "补办要到社保卡银行服务网点或人社服务网点柜面办理"),
        ("lost_reissue", "代办时不需要持卡人本人的身份证", "他人代办时还需要提供代办人的有效居民二代身份证原件"),
        ("info_mismatch", "同步需要大约24天", "同步需要大约24小时"),
        ("change_phone", "未成年人也能在APP上改手机号", "成年人可以在河北人社APP上改手机号"),
        ("face_failed", "儿童必须先激活银行金融账户", "儿童没有激活银行金融账户也可以申领电子社保卡"),
    ],
)
def test_the_issue_examples(kb, entry_id, fabricated, faithful):
    entry = kb.get(entry_id)
    assert claims.check(fabricated, [entry])
    assert claims.check(faithful, [entry]) == ""


async def test_quote_mode_shows_only_curated_text_over_the_whole_set(kb, tmp_path):
    answers = [e.answer.replace("\n", "") for e in kb.entries]
    answers_t = [to_traditional(a) for a in answers]
    prompts = load_prompts()
    fixed = {
        texts.QUOTE_LEAD,
        texts.SOURCE_NOTE,
        texts.LLM_FALLBACK,
        texts.RELATED_HEAD,
        texts.REFERRAL,
        texts.PII_NOTE,
        prompts.refusal,
    } | {texts.quote_heading(e.question) for e in kb.entries}
    fixed |= {f"{i}. {e.question}" for e in kb.entries for i in (1, 2, 3)}
    fixed_t = {to_traditional(x) for x in fixed}
    shown_faithful = 0
    async with FakeOpenAI() as fake:
        # every entry in the context, so any selection of the set is in context
        s = llm_settings(
            tmp_path, fake.base_url + "/v1", llm_mode="quote", llm_top_k=len(kb.entries), llm_response_format="text"
        )
        llm = LLMFallback(s, kb)
        from bot.answering.answerer import Answerer

        matcher = Answerer(s, kb)
        try:
            for item in ITEMS + _items(HELDOUT):
                first = quote.split_units(kb.get(item["context"][0])).units[0].label
                if item["label"] == "faithful":
                    fake.script(reply(json.dumps({"answerable": True, "quotes": item["select"]})))
                else:  # the prose itself, then the claim smuggled in as a label
                    fake.script(
                        reply(item["answer"]),
                        reply(json.dumps({"answerable": True, "quotes": [first, item["claim"]]}, ensure_ascii=False)),
                    )
                final = None
                async for event in llm.stream(matcher.match(item["question"]), Conversation("t", item["id"])):
                    assert not isinstance(event, Draft)
                    final = event
                assert fake.pending == 0, item["id"]
                traditional = final.traditional
                for line in final.text.split("\n"):
                    if not line.strip():
                        continue
                    ok_fixed, ok_answers = (fixed_t, answers_t) if traditional else (fixed, answers)
                    assert line in ok_fixed or any(line in a for a in ok_answers), (item["id"], line)
                if item["label"] == "fabricated":
                    assert to_simplified(item["claim"]) not in to_simplified(final.text), item["id"]
                    assert final.reason.startswith("quote-"), item["id"]
                else:
                    assert final.reason == "llm-quote", (item["id"], final.reason, final.guard)
                    shown_faithful += 1
        finally:
            await llm.aclose()
    assert shown_faithful == sum(1 for i in ITEMS + _items(HELDOUT) if i["label"] == "faithful")


def test_eval_guard_command(faqbot, tmp_path, main_env, capsys):
    """`faqbot eval-guard` on the set in-process, and a bad file through the real command (entry point, exit code)."""
    code, out, err = faqbot_main(capsys, "eval-guard", SET, "--json", "--max-shown", "0", "--max-withheld", "5")
    assert code == 0, err
    report = json.loads(out)
    assert report["items"] == len(ITEMS) and report["generate"]["fabrications_shown"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "label": "maybe", "answer": "", "context": []}\n', encoding="utf-8")
    p = faqbot("eval-guard", bad, timeout=120)
    assert p.returncode == 1 and "label (faithful|fabricated)" in p.stderr and "Traceback" not in p.stderr
    # a stricter target than the set meets: exit 3
    code, out, err = faqbot_main(capsys, "eval-guard", SET, "--max-withheld", "0")
    assert code == 3 and "withholds" in err
