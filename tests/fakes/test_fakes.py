"""Self-tests of the loopback fakes, driven by the real client libraries (aiogram 3, openai)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from aiogram.utils.formatting import Bold, Text

from tests.fakes.openai_server import (
    FakeOpenAI,
    echo_messages,
    empty,
    hang,
    malformed,
    reply,
    split_text,
    status,
    stream_then_drop,
)
from tests.fakes.telegram_api import FakeBotAPI, utf16_len

MSGS = [{"role": "system", "content": "只根据FAQ回答。"}, {"role": "user", "content": "电子社保卡怎么申领？"}]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
async def tg():
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeBotAPI):
    b = tg.make_bot()
    yield b
    await b.session.close()


@pytest.fixture
async def llm():
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def client(llm: FakeOpenAI):
    c = openai.AsyncOpenAI(base_url=llm.base_url + "/v1", api_key="test-key", max_retries=0, timeout=5)
    yield c
    await c.close()


async def create(client: openai.AsyncOpenAI, **kw):
    return await client.chat.completions.create(model="qwen-test", messages=MSGS, **kw)


async def collect(stream) -> list[str]:
    out = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            out.append(chunk.choices[0].delta.content)
    return out


# ---------------------------------------------------------------------------------------------- Telegram
async def test_get_me_returns_configured_bot(tg: FakeBotAPI, bot: Bot):
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (42, "faq_test_bot", True)
    assert bot.id == me.id == tg.bot_id
    assert tg.base_url.startswith("http://127.0.0.1:") and tg.port > 0
    assert [c.method for c in tg.calls] == ["getMe"]


async def test_send_message_keyboard_entities_and_reply_are_decoded(tg: FakeBotAPI, bot: Bot):
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="有用", callback_data="fb:1:up"),
                InlineKeyboardButton(text="没用", callback_data="fb:1:down"),
            ]
        ]
    )
    incoming = tg.message_update("怎么申领？")["message"]
    first = await bot.send_message(
        1001, "123", reply_markup=kb, reply_parameters=ReplyParameters(message_id=incoming["message_id"])
    )
    second = await bot.send_message(1001, **Text("答案：", Bold("掌上12333")).as_kwargs())

    # aiogram parsed realistic Message objects
    assert first.message_id == incoming["message_id"] + 1 and second.message_id == first.message_id + 1
    assert first.chat.id == 1001 and first.chat.type == "private" and first.from_user.id == 42
    assert first.reply_markup.model_dump() == kb.model_dump()
    assert first.reply_to_message is not None and first.reply_to_message.text == "怎么申领？"
    assert second.entities[0].type == "bold"

    # and the recording has decoded params (text stays a string even when it looks like a number)
    [c1, c2] = tg.sent_messages(chat_id=1001)
    assert c1.params["text"] == "123" and c1.raw["text"] == "123"
    assert c1.params["chat_id"] == 1001
    assert c1.params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "有用", "callback_data": "fb:1:up"}, {"text": "没用", "callback_data": "fb:1:down"}]
        ]
    }
    assert isinstance(c1.raw["reply_markup"], str)  # it travelled as a JSON string
    assert c1.params["reply_parameters"] == {"message_id": incoming["message_id"]}
    assert c2.params["entities"] == [{"type": "bold", "offset": 3, "length": 7}]
    assert "parse_mode" not in c2.params  # falsy/None values are omitted by aiogram
    assert tg.sent_texts() == ["123", "答案：掌上12333"]
    assert tg.sent_messages(chat_id=999) == []


async def test_group_topic_message_keeps_thread(tg: FakeBotAPI, bot: Bot):
    update = tg.message_update("问一下", chat_type="supergroup", user_id=2002, thread_id=7)
    msg = Message.model_validate(update["message"], context={"bot": bot})
    assert msg.chat.id == tg.group_id < 0 and msg.message_thread_id == 7 and msg.is_topic_message
    answer = await msg.answer("好的")  # aiogram keeps the thread id in forum topics
    assert answer.message_thread_id == 7 and answer.chat.id == tg.group_id
    assert tg.sent_messages()[0].params["message_thread_id"] == 7


async def test_other_methods_answer_like_telegram(tg: FakeBotAPI, bot: Bot):
    assert await bot.set_my_commands([BotCommand(command="faq", description="常见问题")])
    assert tg.calls_to("setMyCommands")[0].params["commands"] == [{"command": "faq", "description": "常见问题"}]
    assert [c.command for c in await bot.get_my_commands()] == ["faq"]
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.send_chat_action(1001, "typing")
    assert await bot.send_message_draft(chat_id=1001, draft_id=5, text="正在")
    with pytest.raises(TelegramBadRequest):  # drafts exist only in private chats
        await bot.send_message_draft(chat_id=-1001, draft_id=5, text="正在")
    assert await bot.answer_callback_query("123", text="谢谢")
    sent = await bot.send_message(1001, "临时")
    assert await bot.delete_message(1001, sent.message_id)
    chat = await bot.get_chat(-100123)
    assert chat.type == "supergroup" and chat.id == -100123
    assert await bot.close() and await bot.log_out()


async def test_edit_message_text_validates_like_telegram(tg: FakeBotAPI, bot: Bot):
    sent = await bot.send_message(1001, "正在思考…")
    edited = await bot.edit_message_text("答案", chat_id=1001, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.text == "答案" and edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("答案", chat_id=1001, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("答案", chat_id=1001, message_id=9999)
    assert [c.failed for c in tg.calls_to("editMessageText")] == [False, True, True]


async def test_send_message_length_limit_counts_utf16(tg: FakeBotAPI, bot: Bot):
    await bot.send_message(1001, "字" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(1001, "😀" * 2049)  # 2049 characters, 4098 UTF-16 units
    assert utf16_len("😀a") == 3


async def test_wrong_token_is_unauthorized(tg: FakeBotAPI):
    # the long way, exactly as the bot's own code builds it
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    other = Bot("42:SomeOtherToken", session=session)
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await other.get_me()
    finally:
        await session.close()
    assert tg.calls[-1].failed and tg.calls[-1].status == 401


async def test_unknown_method_and_path_are_404(tg: FakeBotAPI):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.base_url}/bot{tg.token}/sendTelepathy", data={"chat_id": "1"}) as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.post(f"{tg.base_url}/bot{'1:wrong'}/getMe") as r:
            assert r.status == 401
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        # Telegram method names are case-insensitive; GET with a query string works too
        async with http.get(f"{tg.base_url}/bot{tg.token}/getme") as r:
            assert (await r.json())["result"]["username"] == "faq_test_bot"
    assert tg.calls[0].method == "sendTelepathy" and tg.calls[0].failed
    assert tg.calls[-1].method == "getMe"


async def test_429_surfaces_as_retry_after_and_is_recorded(tg: FakeBotAPI, bot: Bot):
    tg.fail("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(1001, "第一次")
    assert exc.value.retry_after == 7
    assert "Too Many Requests: retry after 7" in str(exc.value)
    await bot.send_message(1001, "第二次")  # times=1: the next call succeeds
    calls = tg.calls_to("sendMessage")
    assert [(c.failed, c.status) for c in calls] == [(True, 429), (False, 200)]
    assert [c.text for c in tg.sent_messages()] == ["第二次"]


async def test_server_errors_html_502_and_dropped_connection(tg: FakeBotAPI, bot: Bot):
    tg.fail("sendMessage", status=502, times=2)
    tg.fail("*", status=500)
    tg.fail("sendMessage", status=0)
    for _ in range(2):
        with pytest.raises(ClientDecodeError):  # an nginx HTML page is not JSON
            await bot.send_message(1001, "x")
    with pytest.raises(TelegramNetworkError):  # the per-method fault comes before the wildcard
        await bot.send_message(1001, "x")
    with pytest.raises(TelegramServerError):
        await bot.send_chat_action(1001, "typing")
    await bot.send_message(1001, "ok")
    assert [c.status for c in tg.calls] == [502, 502, 0, 500, 200]


async def test_undecodable_answers_to_calls_that_were_carried_out(tg: FakeBotAPI, bot: Bot):
    from bot.telegram.session import UnreadableResponse

    tg.undecodable("sendMessage")  # truncated JSON
    tg.undecodable("sendMessage", kind="schema")  # JSON of the wrong shape
    with pytest.raises(UnreadableResponse) as syntax:
        await bot.send_message(1001, "一")
    with pytest.raises(UnreadableResponse) as schema:
        await bot.send_message(1001, "二")
    await bot.send_message(1001, "三")
    assert isinstance(syntax.value, ClientDecodeError) and syntax.value.status_code == 200
    assert isinstance(syntax.value.data, str) and syntax.value.data.startswith('{"ok": true')
    assert schema.value.status_code == 200 and schema.value.data["result"]["unreadable"]["text"] == "二"
    assert tg.sent_texts(1001) == ["一", "二", "三"]  # all three were delivered
    with pytest.raises(ValueError):
        tg.undecodable("sendMessage", kind="html")


async def test_set_delay_slows_one_method(tg: FakeBotAPI, bot: Bot):
    tg.set_delay("sendChatAction", 0.3)
    t0 = time.monotonic()
    await bot.send_chat_action(1001, "typing")
    assert time.monotonic() - t0 >= 0.29
    t0 = time.monotonic()
    await bot.send_message(1001, "快")
    assert time.monotonic() - t0 < 0.25
    tg.set_delay("sendChatAction", 0)
    t0 = time.monotonic()
    await bot.send_chat_action(1001, "typing")
    assert time.monotonic() - t0 < 0.25


async def test_get_updates_long_poll_offset_and_limit(tg: FakeBotAPI, bot: Bot):
    # a waiting long poll is answered as soon as an update is pushed
    t0 = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for("getUpdates")
    pushed = tg.push_message("你好")
    [update] = await poll
    assert time.monotonic() - t0 < 1.5
    assert update.update_id == pushed["update_id"] and update.message.text == "你好"
    assert update.message.chat.id == update.message.from_user.id == tg.user_id

    # unconfirmed updates are delivered again; offset confirms (drops) them
    assert [u.update_id for u in await bot.get_updates()] == [pushed["update_id"]]
    more = [tg.push_message(f"第{i}条") for i in range(3)]
    got = await bot.get_updates(offset=pushed["update_id"] + 1, limit=2)
    assert [u.update_id for u in got] == [more[0]["update_id"], more[1]["update_id"]]
    assert [u["update_id"] for u in tg.updates] == [u["update_id"] for u in more]
    got = await bot.get_updates(offset=more[2]["update_id"])
    assert [u.message.text for u in got] == ["第2条"]
    assert await bot.get_updates(offset=more[2]["update_id"] + 1) == []
    assert tg.updates == []


async def test_get_updates_timeout_without_updates(tg: FakeBotAPI, bot: Bot):
    t0 = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - t0 < 2


async def test_newer_get_updates_terminates_older_with_409(tg: FakeBotAPI, bot: Bot):
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for("getUpdates")
    newer = asyncio.create_task(bot.get_updates(timeout=5))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(older, 2)
    tg.push_message("给新的")
    [u] = await asyncio.wait_for(newer, 2)
    assert u.message.text == "给新的"


async def test_get_updates_conflicts_with_webhook(tg: FakeBotAPI, bot: Bot):
    await bot.set_webhook("https://example.org/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == []


async def test_dispatcher_polling_round_trip(tg: FakeBotAPI, bot: Bot):
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        kb = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="再说一次", callback_data="again")]])
        await message.answer(f"echo:{message.text}", reply_markup=kb)

    @router.callback_query(F.data == "again")
    async def again(query: CallbackQuery) -> None:
        await query.answer("好")
        await query.message.edit_text(query.message.text + "!")

    dp = Dispatcher()
    dp.include_router(router)
    tg.push_message("第一条")
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    try:
        [sent] = await tg.wait_for(lambda c: c.method == "sendMessage" and c.text == "echo:第一条")
        tg.push_message("群里", chat_type="supergroup", user_id=2002)
        await tg.wait_for(lambda c: c.method == "sendMessage" and c.text == "echo:群里")
        tg.push_update(tg.callback_update("again", message=sent.result))
        [edit] = await tg.wait_for("editMessageText")
        await tg.wait_for("answerCallbackQuery")
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)
    assert edit.params["text"] == "echo:第一条!" and edit.params["message_id"] == sent.result["message_id"]
    assert tg.sent_messages(chat_id=tg.group_id)[0].params["chat_id"] == tg.group_id < 0
    polls = tg.calls_to("getUpdates")
    assert polls[0].params.get("offset") is None
    assert set(polls[0].params["allowed_updates"]) == {"message", "callback_query"}
    offsets = [p.params.get("offset") for p in polls[1:]]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)  # each batch confirmed once
    assert tg.calls[0].method == "getMe"


async def test_webhook_delivery_to_a_real_aiogram_handler(tg: FakeBotAPI, bot: Bot):
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler
    from aiohttp import web

    router = Router()

    @router.message(F.text)
    async def answer(message: Message) -> None:
        await message.answer("收到")

    dp = Dispatcher()
    dp.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret").register(app, path="/tg")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/tg", secret_token="s3cret")
        assert tg.webhook_secret == "s3cret"
        assert (await tg.deliver_webhook(tg.message_update("你好")))[0] == 200
        await tg.wait_for("sendMessage")
        assert tg.sent_texts() == ["收到"]
        status_code, _ = await tg.deliver_webhook(tg.message_update("伪造"), secret_token="wrong")
        assert status_code == 401
    finally:
        await runner.cleanup()


async def test_update_builders_are_valid_updates(tg: FakeBotAPI, bot: Bot):
    text = "你好😀 @faq_test_bot 请问"
    built = [
        tg.message_update("/start", user_id=5),
        tg.message_update(text, chat_type="group", chat_id=-555, user_id=6, username="li_si"),
        tg.sticker_update(user_id=5),
        tg.photo_update(caption="截图", user_id=5),
        tg.voice_update(user_id=5),
        tg.edited_message_update("改过的", message_id=1, user_id=5),
    ]
    updates = [Update.model_validate(tg.push_update(b), context={"bot": bot}) for b in built]
    start, mention, sticker, photo, voice, edited = updates
    assert start.message.chat.id == start.message.from_user.id == 5
    assert start.message.entities[0].type == "bot_command"
    assert mention.message.chat.id == -555 and mention.message.chat.type == "group"
    ent = mention.message.entities[0]
    assert (ent.type, ent.offset, ent.length) == ("mention", utf16_len("你好😀 "), len("@faq_test_bot"))
    assert ent.extract_from(text) == "@faq_test_bot"
    assert sticker.message.sticker.emoji and sticker.message.text is None
    assert photo.message.photo[-1].width == 1280 and photo.message.caption == "截图"
    assert voice.message.voice.duration == 3
    assert edited.edited_message.text == "改过的" and edited.edited_message.message_id == 1
    ids = [u.update_id for u in updates]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # message ids grow per chat; the edited message is the first one in chat 5
    assert [start.message.message_id, sticker.message.message_id, photo.message.message_id] == [1, 2, 3]
    # reply_to embeds the known message
    r = tg.message_update("回复", user_id=5, reply_to=start.message.message_id)
    assert r["message"]["reply_to_message"]["text"] == "改过的"  # its current (edited) version
    with pytest.raises(ValueError):
        tg.message_update("x", chat_id=1, user_id=2)  # private chat id must equal the user id


async def test_privacy_mode_hides_plain_group_messages():
    async with FakeBotAPI(privacy_mode=True) as fake:
        assert fake.push_message("大家好", chat_type="supergroup") is None
        assert fake.push_message("/faq@other_bot", chat_type="supergroup") is None
        assert fake.push_message("/faq", chat_type="supergroup") is not None
        assert fake.push_message("/faq@faq_test_bot 申领", chat_type="supergroup") is not None
        assert fake.push_message("@faq_test_bot 申领", chat_type="supergroup") is not None
        assert fake.push_message("私聊随便说") is not None
        assert len(fake.updates) == 4


async def test_wait_for_times_out_with_helpful_message(tg: FakeBotAPI, bot: Bot):
    await bot.get_me()
    with pytest.raises(TimeoutError, match="getMe"):
        await tg.wait_for("sendMessage", timeout=0.2)


async def test_stop_releases_pending_long_poll_quickly():
    fake = await FakeBotAPI().start()
    bot = fake.make_bot()
    try:
        poll = asyncio.create_task(bot(GetUpdates(timeout=30)))
        await fake.wait_for("getUpdates")
        t0 = time.monotonic()
        await fake.stop()
        assert time.monotonic() - t0 < 1.5
        assert await asyncio.wait_for(poll, 2) == []
    finally:
        await bot.session.close()


# ---------------------------------------------------------------------------------------------- OpenAI
async def test_reply_non_stream_and_request_recorded(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(reply("可以通过掌上12333申领。"))
    out = await create(client, temperature=0)
    assert out.choices[0].message.content == "可以通过掌上12333申领。"
    assert out.choices[0].finish_reason == "stop" and out.model == "qwen-test" and out.usage.total_tokens > 0
    [body] = llm.requests
    assert body["model"] == "qwen-test" and body["messages"] == MSGS and body["temperature"] == 0
    assert llm.headers[0]["authorization"] == "Bearer test-key"
    assert "电子社保卡怎么申领" in llm.prompt_text() and "身份证" not in llm.prompt_text()


async def test_stream_reply_joins_to_text(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    text = "电子社保卡可以在掌上12333、支付宝或微信中申领，全程线上办理。"
    llm.script(reply(text, chunks=5))
    stream = await create(client, stream=True, stream_options={"include_usage": True})
    chunks, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices:
            if chunk.choices[0].delta.content:
                chunks.append(chunk.choices[0].delta.content)
            finish = chunk.choices[0].finish_reason or finish
    assert len(chunks) == 5 and "".join(chunks) == text
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0
    assert llm.requests[0]["stream"] is True


async def test_default_behaviour_and_script_order(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(reply("一"), reply("二"))
    assert llm.pending == 2
    got = [(await create(client)).choices[0].message.content for _ in range(3)]
    assert got == ["一", "二", "这是测试模型的回答。"]
    assert llm.pending == 0 and len(llm.calls) == 3


async def test_http_errors_map_to_openai_exceptions(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(status(500), status(429, retry_after=2), status(503), status(400, {"error": {"message": "坏请求"}}))
    with pytest.raises(openai.InternalServerError):
        await create(client)
    with pytest.raises(openai.RateLimitError) as exc:
        await create(client)
    assert exc.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.InternalServerError) as exc503:
        await create(client)
    assert exc503.value.status_code == 503
    with pytest.raises(openai.BadRequestError, match="坏请求"):
        await create(client)


async def test_client_retries_on_429_then_succeeds(llm: FakeOpenAI):
    llm.script(status(429, retry_after=0.05), reply("重试成功"))
    async with openai.AsyncOpenAI(base_url=llm.base_url + "/v1", api_key="k", max_retries=1) as c:
        out = await create(c)
    assert out.choices[0].message.content == "重试成功" and len(llm.requests) == 2


async def test_hang_past_client_timeout_raises_timeout(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(hang(10))
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await create(client, timeout=0.5)
    assert 0.45 <= time.monotonic() - t0 < 2
    out = await create(client)  # the server is not stuck behind the hanging request
    assert out.choices[0].message.content == "这是测试模型的回答。"


async def test_hang_then_answers(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(hang(0.2, then=reply("慢慢来")))
    t0 = time.monotonic()
    out = await create(client)
    assert out.choices[0].message.content == "慢慢来" and time.monotonic() - t0 >= 0.19


async def test_malformed_raises_json_decode_error(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    # What openai 3.51 really does: the body is parsed with json and the ValueError escapes as-is.
    llm.script(malformed(), malformed())
    with pytest.raises(json.JSONDecodeError) as exc:
        await create(client)
    assert not isinstance(exc.value, openai.APIError)
    stream = await create(client, stream=True)
    with pytest.raises(json.JSONDecodeError):
        await collect(stream)


async def test_malformed_html_is_returned_as_a_string(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(malformed("html"))
    out = await create(client)
    assert isinstance(out, str) and "nginx" in out  # no exception: callers must check the type


async def test_empty_reply(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(empty(), empty())
    assert (await create(client)).choices[0].message.content == ""
    assert await collect(await create(client, stream=True)) == []


async def test_stream_then_drop_raises_during_iteration(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    text = "第一段第二段第三段第四段"
    llm.script(stream_then_drop(text, after_chunks=2, chunks=4), stream_then_drop(text))
    stream = await create(client, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["第一段", "第二段"]
    with pytest.raises(openai.APIConnectionError):  # non-stream: the body is cut halfway
        await create(client)


async def test_echo_messages_returns_the_prompt(llm: FakeOpenAI, client: openai.AsyncOpenAI):
    llm.script(echo_messages(), echo_messages())
    out = await create(client)
    assert json.loads(out.choices[0].message.content) == MSGS
    assert json.loads("".join(await collect(await create(client, stream=True)))) == MSGS


async def test_api_key_check_and_models(llm: FakeOpenAI):
    async with FakeOpenAI(api_key="right", model="m1") as strict:
        async with openai.AsyncOpenAI(base_url=strict.base_url + "/v1", api_key="wrong", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                await create(c)
        async with openai.AsyncOpenAI(base_url=strict.base_url + "/v1", api_key="right", max_retries=0) as c:
            assert [m.id async for m in c.models.list()] == ["m1"]
            assert (await create(c)).choices[0].message.content
        assert [h["Authorization"] for h in strict.headers] == ["Bearer wrong", "Bearer right"]


async def test_stop_releases_hanging_request_quickly():
    fake = await FakeOpenAI().start()
    fake.script(hang(30))
    async with openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="k", max_retries=0, timeout=30) as c:
        pending = asyncio.create_task(create(c))
        await fake.wait_for_requests(1)
        t0 = time.monotonic()
        await fake.stop()
        assert time.monotonic() - t0 < 1.5
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(pending, 2)


def test_split_text():
    assert split_text("") == []
    assert split_text("ab", 6) == ["a", "b"]
    pieces = split_text("一二三四五六七", 3)
    assert pieces == ["一二三", "四五", "六七"] and "".join(pieces) == "一二三四五六七"
