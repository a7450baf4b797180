"""Pipeline overhead outside the model on the LLM route: retrieval + prompt assembly + guard.

Two views, same questions (the share of the query mix the core sends to the LLM: routes clarify/none):
  * direct: the three parts timed one by one, in-process (`LLMFallback.context_entries`, `.prepare`,
    `guard.check` on a grounded synthetic answer streamed through the `DraftFilter` as the model's pieces would be);
  * end to end: `await Answerer.answer()` against the loopback `FakeOpenAI` answering at once (streamed, grounded
    in the first entry it was sent), minus the time the server spent on the request. What remains is everything
    on our side, including the openai client and the loopback HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import re
import time
from collections import Counter

from tests.bench.common import settings as bench_settings
from tests.bench.common import summary_ms
from tests.bench.queries import query_mix

_ENTRY_RE = re.compile(r"<<<FAQ id=([A-Za-z0-9_\-]+) section=\d+>>>\n问：.*?\n答：(.*?)\n<<<END>>>", re.S)


def missing() -> str | None:
    """Why this benchmark cannot run yet (None when it can)."""
    for mod in ("bot.llm.fallback", "bot.llm.guard", "knowledge.retrieve"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not there yet"
    return None


def grounded_answer(entry_id: str, answer: str) -> str:
    first = re.split(r"(?<=[。；])", answer.strip())[0]
    return f"{first}[来源: {entry_id}]"


def _llm_questions(answerer, n: int) -> list[str]:
    """Questions of the mix the core hands to the LLM (clarify / none, not greetings or empty input)."""
    out = []
    answerer_llm, answerer.llm = answerer.llm, object()  # wants_llm only checks that an LLM is configured
    try:
        for q in query_mix(max(4 * n, 200), seed=41):
            if answerer.wants_llm(answerer.match(q)):
                out.append(q)
            if len(out) >= n:
                break
    finally:
        answerer.llm = answerer_llm
    return out


def _direct(n: int) -> dict:
    from bot.answering import texts
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation
    from bot.llm import guard
    from bot.llm.fallback import DraftFilter, LLMFallback
    from knowledge.loader import load_knowledge

    s = bench_settings(openai_base_url="http://127.0.0.1:9/v1", llm_mode="generate")
    kb = load_knowledge()
    answerer = Answerer(s, kb)
    llm = LLMFallback(s, kb)
    questions = _llm_questions(answerer, n)
    bases = [answerer.match(q) for q in questions]
    # Half the questions come with a conversation history (follow-ups pull the previous entry in).
    conv_hist = Conversation("bench", "hist")
    conv_hist.remember(answerer.match("电子社保卡的登录密码忘了怎么办"))
    convs = [Conversation("bench", "fresh"), conv_hist]
    parts: dict[str, list[int]] = {"retrieval": [], "prepare": [], "guard": [], "total": []}
    total_cpu: list[int] = []
    verdicts: Counter = Counter()
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for b in bases[:20]:  # warm-up
        llm.prepare(b, convs[0])
    gc.collect()
    boiler = (texts.SOURCE_NOTE, texts.REFERRAL)
    for i, base in enumerate(bases):
        conv = convs[i % 2]
        c0 = cpu_clock()
        t0 = clock()
        llm.context_entries(base, conv)  # retrieval alone
        t1 = clock()
        prep = llm.prepare(base, conv)  # retrieval + prompt assembly
        t2 = clock()
        if not prep.entries:
            verdicts["no-context (no LLM call)"] += 1
            continue
        top = prep.entries[0]
        answer = grounded_answer(top.id, top.answer)
        t3 = clock()
        drafts = DraftFilter(llm.leak, hold=max(len(llm.canary), guard.LEAK_CHARS))
        for j in range(0, len(answer), 8):
            drafts.feed(answer[j : j + 8])
        v = guard.check(
            answer,
            context={e.id: e for e in prep.entries},
            refusal=llm.prompts.refusal,
            leak=llm.leak,
            boilerplate=boiler,
            threshold=llm.guard_threshold,
        )
        t4 = clock()
        c1 = cpu_clock()
        parts["retrieval"].append(t1 - t0)
        parts["prepare"].append(t2 - t1)
        parts["guard"].append(t4 - t3)
        parts["total"].append((t2 - t1) + (t4 - t3))  # prepare (retrieval + prompt) + drafts + guard
        total_cpu.append(c1 - c0 - (t1 - t0))
        verdicts["guard pass" if v.ok else f"guard fail ({v.reason.split(':')[0]})"] += 1
    return {
        "questions": len(bases),
        "retrieval": summary_ms(parts["retrieval"]),
        "retrieval_and_prompt": summary_ms(parts["prepare"]),
        "drafts_and_guard": summary_ms(parts["guard"]),
        "total": summary_ms(parts["total"]),
        "total_cpu": summary_ms(total_cpu),
        "verdicts": dict(verdicts),
        "top_k": s.llm_top_k,
    }


async def _end_to_end(n: int) -> dict:
    from aiohttp import web

    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation, Route
    from bot.llm.fallback import LLMFallback
    from knowledge.loader import load_knowledge
    from tests.fakes.openai_server import Behaviour, FakeOpenAI, split_text

    class GroundedAtOnce(Behaviour):
        """Answers at once with the first sentence of the first entry it was sent, cited, streamed in pieces."""

        async def respond(self, ctx) -> web.StreamResponse:
            user = next((m.get("content", "") for m in ctx.body.get("messages", []) if m.get("role") == "user"), "")
            m = _ENTRY_RE.search(user)
            text = grounded_answer(m.group(1), m.group(2)) if m else "抱歉，常见问题里没有这个问题的答案。"
            pieces = split_text(text, max(1, len(text) // 8))
            if ctx.stream:
                return await ctx.stream_text(pieces, content_total=text)
            return web.json_response(ctx.completion(text))

    async with FakeOpenAI(default=GroundedAtOnce(), api_key="bench-key") as fake:
        s = bench_settings(
            openai_base_url=fake.base_url + "/v1", openai_api_key="bench-key", llm_max_retries=0, llm_mode="generate"
        )
        kb = load_knowledge()
        llm = LLMFallback(s, kb)
        answerer = Answerer(s, kb, llm=llm)
        questions = _llm_questions(answerer, n)
        convs = [Conversation("bench", str(i), user_id=str(i)) for i in range(8)]
        for q in questions[:10]:  # warm-up: connection pool, first-request costs
            await answerer.answer(q, convs[0])
        gc.collect()
        total: list[int] = []
        outside: list[int] = []
        server: list[int] = []
        outcomes: Counter = Counter()
        clock = time.perf_counter_ns
        for i, q in enumerate(questions):
            before = len(fake.calls)
            t0 = clock()
            reply = await answerer.answer(q, convs[i % len(convs)])
            dt = clock() - t0
            calls = fake.calls[before:]
            srv = sum(int(((c.finished_at or c.ts) - c.ts) * 1e9) for c in calls)
            if reply.route is not Route.LLM or not calls:
                outcomes[f"no model call ({reply.reason})"] += 1
                continue
            outcomes[reply.reason + (f" ({reply.guard})" if reply.guard and reply.guard != "pass" else "")] += 1
            total.append(dt)
            server.append(srv)
            outside.append(dt - srv)
        # The floor: the bare openai client streaming the same prompts from the same server (no pipeline).
        import openai

        client = openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="bench-key", max_retries=0)
        bare: list[int] = []
        bare_outside: list[int] = []
        prompts = [llm.prepare(answerer.match(q), convs[0]).messages for q in questions]
        for messages in prompts[:10] + prompts:
            before = len(fake.calls)
            t0 = clock()
            stream = await client.chat.completions.create(
                model=s.openai_model, messages=messages, stream=True, max_tokens=s.llm_max_tokens, temperature=0.1
            )
            async for _chunk in stream:
                pass
            dt = clock() - t0
            c = fake.calls[before]
            bare.append(dt)
            bare_outside.append(dt - int(((c.finished_at or c.ts) - c.ts) * 1e9))
        bare, bare_outside = bare[10:], bare_outside[10:]
        await client.close()
        await llm.aclose()
    return {
        "questions": len(questions),
        "with_model_call": len(total),
        "total": summary_ms(total),
        "server": summary_ms(server),
        "outside_model": summary_ms(outside),
        "outcomes": dict(outcomes),
        "bare_client_total": summary_ms(bare),
        "bare_client_outside_model": summary_ms(bare_outside),
    }


def _modes(n: int) -> dict:
    """Both modes outside the model, in-process: quote (prompt with numbered sentences, strict parse, compose) and
    generate's guard with the claim checks on the labelled model answers; and what each sends and receives."""
    import json

    from bot.answering import texts
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation
    from bot.llm import guard, quote
    from bot.llm.fallback import LLMFallback
    from knowledge.loader import load_knowledge
    from tests.conftest import DATA_DIR

    kb = load_knowledge()
    sq = bench_settings(openai_base_url="http://127.0.0.1:9/v1", llm_mode="quote")
    sg = bench_settings(openai_base_url="http://127.0.0.1:9/v1", llm_mode="generate")
    answerer = Answerer(sq, kb)
    lq, lg = LLMFallback(sq, kb), LLMFallback(sg, kb)
    questions = _llm_questions(answerer, n)
    bases = [answerer.match(q) for q in questions]
    conv = Conversation("bench", "modes")
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    quote_ns: list[int] = []
    quote_cpu: list[int] = []
    prompt_chars = {"quote": [], "generate": []}
    output_chars = {"quote": []}
    for b in bases[:20]:
        lq.prepare(b, conv)
    gc.collect()
    for base in bases:
        c0 = cpu_clock()
        t0 = clock()
        prep = lq.prepare(base, conv)
        if not prep.entries:
            continue
        context = {e.id: lq.units[e.id] for e in prep.entries}
        allowed = quote.labels(context.values())
        top = context[prep.entries[0].id]
        raw = json.dumps({"answerable": True, "quotes": [u.label for u in top.units[:2]]})
        body = quote.compose(quote.chosen_units(quote.parse(raw, allowed), context))
        quote_ns.append(clock() - t0)
        quote_cpu.append(cpu_clock() - c0)
        assert body.startswith(texts.QUOTE_LEAD)
        prompt_chars["quote"].append(
            sum(len(m["content"]) for m in prep.messages)
            + len(json.dumps(quote.response_format(allowed), ensure_ascii=False))
        )
        output_chars["quote"].append(len(raw))
        prompt_chars["generate"].append(sum(len(m["content"]) for m in lg.prepare(base, conv).messages))
    items = [
        json.loads(line)
        for line in (DATA_DIR / "guard_answers.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    guard_ns: list[int] = []
    guard_cpu: list[int] = []
    for item in items:  # warm-up: each entry's claim index is built once per process (cached by its text)
        guard.check(item["answer"], context={i: kb.get(i) for i in item["context"]}, refusal=lg.prompts.refusal)
    for _ in range(3):
        for item in items:
            ctx = {i: kb.get(i) for i in item["context"]}
            c0 = cpu_clock()
            t0 = clock()
            guard.check(
                item["answer"],
                context=ctx,
                refusal=lg.prompts.refusal,
                leak=lg.leak,
                boilerplate=(texts.SOURCE_NOTE, texts.REFERRAL),
                threshold=lg.guard_threshold,
            )
            guard_ns.append(clock() - t0)
            guard_cpu.append(cpu_clock() - c0)
    verify_chars = [
        len(lg.prompts.verify_system)
        + len(lg.prompts.verify_user)
        + len(i["answer"])
        + sum(len(kb.get(c).answer) + len(kb.get(c).question) for c in i["context"][:1])
        for i in items
    ]
    mean = lambda xs: round(sum(xs) / len(xs)) if xs else 0  # noqa: E731
    return {
        "questions": len(bases),
        "quote": summary_ms(quote_ns),
        "quote_cpu": summary_ms(quote_cpu),
        "guard_on_labelled": summary_ms(guard_ns),
        "guard_on_labelled_cpu": summary_ms(guard_cpu),
        "labelled_answers": len(items),
        "prompt_chars": {k: mean(v) for k, v in prompt_chars.items()},
        "quote_output_chars": mean(output_chars["quote"]),
        "generate_output_chars": mean([len(i["answer"]) for i in items]),
        "verify_prompt_chars": mean(verify_chars),
    }


def llm_overhead(n: int = 300) -> dict:
    why = missing()
    if why:
        return {"skipped": why}
    out = {"direct": _direct(n), "modes": _modes(n), "end_to_end": asyncio.run(_end_to_end(n)), "target_p99_ms": 5.0}
    return out
