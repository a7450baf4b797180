"""Request parameters follow the model: OpenAI reasoning models get max_completion_tokens and no temperature, and a
server that refuses a parameter gets the request again without it. Real openai client, loopback FakeOpenAI
(which applies OpenAI's rules for reasoning-model names and for response_format)."""

from __future__ import annotations

import pytest

from bot.answering.types import Route
from bot.app.settings import Settings
from bot.llm.client import is_reasoning_model, request_params
from tests.fakes.openai_server import FakeOpenAI, json_reply, reply, status
from tests.llm.test_fallback import GOOD, GOOD_BODY, Q_NONE


@pytest.mark.parametrize(
    "model, reasoning",
    [
        ("o1", True),
        ("o1-mini", True),
        ("o3-mini", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("openai/gpt-5-nano", True),
        ("gpt-5-chat-latest", False),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("qwen2.5:7b-instruct", False),
        ("omni-moderation", False),
    ],
)
def test_reasoning_models_are_recognised_by_name(model, reasoning):
    assert is_reasoning_model(model) is reasoning
    params = request_params(Settings(_env_file=None, openai_model=model, llm_max_tokens=300))
    if reasoning:
        assert params == {"max_completion_tokens": 4000}
    else:
        assert params == {"max_tokens": 300, "temperature": 0.1}


def test_token_parameter_can_be_overridden():
    s = Settings(_env_file=None, openai_model="my-azure-deployment", llm_token_param="max_completion_tokens")
    assert request_params(s) == {"max_completion_tokens": 400, "temperature": 0.1}


@pytest.mark.parametrize("mode", ["generate", "quote"])
async def test_reasoning_model_gets_max_completion_tokens(make, mode):
    async with FakeOpenAI() as fake:
        h = await make(fake, openai_model="o4-mini", llm_mode=mode)
        fake.script(reply(GOOD) if mode == "generate" else json_reply({"answerable": True, "quotes": ["apply.1"]}))
        _, final = await h.ask(Q_NONE)
        [req] = fake.requests
    assert final.route is Route.LLM and final.guard == "pass", final.reason
    assert req["model"] == "o4-mini" and req["max_completion_tokens"] == 4000
    assert "max_tokens" not in req and "temperature" not in req


async def test_refused_parameters_are_swapped_or_dropped_once_and_remembered(make):
    # A deployment alias whose name says nothing: the server's 400s name the parameters it refuses.
    async with FakeOpenAI(reasoning_models=("corp-reasoner",)) as fake:
        h = await make(fake, openai_model="corp-reasoner")
        fake.script(reply(GOOD), reply(GOOD))
        _, first = await h.ask(Q_NONE)
        _, second = await h.ask(Q_NONE)
        sent = [
            sorted(k for k in r if k in ("max_tokens", "max_completion_tokens", "temperature")) for r in fake.requests
        ]
    assert first.text.startswith(GOOD_BODY) and second.text.startswith(GOOD_BODY)
    assert sent == [
        ["max_tokens", "temperature"],
        ["max_completion_tokens", "temperature"],
        ["max_completion_tokens"],
        ["max_completion_tokens"],
    ]
    assert h.llm.client.dropped == {"max_tokens", "temperature"}


async def test_forced_max_tokens_on_a_reasoning_model_is_swapped(make):
    async with FakeOpenAI() as fake:
        h = await make(fake, openai_model="o3", llm_token_param="max_tokens", llm_mode="quote")
        fake.script(json_reply({"answerable": True, "quotes": ["apply.2"]}))
        _, final = await h.ask(Q_NONE)
        assert [("max_tokens" in r, "max_completion_tokens" in r) for r in fake.requests] == [
            (True, False),
            (False, True),
        ]
    assert final.reason == "llm-quote"


async def test_other_400s_are_not_repeated(make):
    async with FakeOpenAI() as fake:
        h = await make(fake, llm_max_retries=2)
        fake.script(
            status(
                400,
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": None,
                    }
                },
            )
        )
        _, final = await h.ask(Q_NONE)
    assert final.reason == "llm-error:http-error" and len(fake.calls) == 1 and not h.llm.client.dropped


async def test_fake_server_applies_openai_request_rules():
    """The fake refuses what OpenAI refuses, so the tests above can fail for the right reason."""
    import openai

    async with FakeOpenAI() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="k", max_retries=0)
        msgs = [{"role": "user", "content": "问"}]
        loose = {
            "type": "json_schema",
            "json_schema": {
                "name": "s",
                "strict": True,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": []},
            },
        }
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="gpt-4o-mini", messages=msgs, response_format=loose)
        assert exc.value.body["param"] == "response_format" and "additionalProperties" in exc.value.message
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="o4-mini", messages=msgs, max_tokens=10)
        assert exc.value.body["param"] == "max_tokens" and "max_completion_tokens" in exc.value.message
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(
                model="gpt-5", messages=msgs, max_completion_tokens=10, temperature=0.1
            )
        assert exc.value.body["param"] == "temperature"
        fake.script(reply("好"))
        ok = await client.chat.completions.create(model="o4-mini", messages=msgs, max_completion_tokens=10)
        assert ok.choices[0].message.content == "好"
        assert len(fake.calls) == 4 and fake.pending == 0  # refused requests consume no scripted answer
        await client.close()
    async with FakeOpenAI(response_formats=()) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model="m", messages=msgs, response_format={"type": "json_object"})
        assert exc.value.body["param"] == "response_format"
        await client.close()
