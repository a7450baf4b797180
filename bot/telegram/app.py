"""The Telegram adapter's entry points: factories and the polling / webhook runners.

    bot = create_bot(settings)                       # aiogram Bot (+ retrying request middleware)
    dp = build_dispatcher(services, settings)        # routers, middlewares, services as workflow data
    await run_telegram(services, settings, stop)     # long polling, or webhook when TELEGRAM_WEBHOOK_URL is set

Nothing is created at import time. ``run_telegram`` returns after ``stop`` is set: it stops taking updates, waits
for the answers in flight (up to ``options.drain_timeout``), confirms the last update to Telegram and closes the
HTTP session. Draining the conversation log is the caller's job (`Services.aclose`).

Start-up: only ``getMe`` must succeed (a refused token or an unreachable API ends the transport with a one-line
`TransportStartError`); the command menu is set beside polling and ``deleteWebhook`` may fail -- both are cosmetic
here and only log a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, User

from bot.answering import texts
from bot.app.runner import TransportStartError
from bot.app.services import Services
from bot.app.settings import Settings
from bot.telegram.admin import admin_router
from bot.telegram.conversations import ConversationStore
from bot.telegram.curation import curation_router
from bot.telegram.handlers import callbacks_router, errors_router, group_router, private_router
from bot.telegram.middlewares import (
    AnswerLockMiddleware,
    ConversationMiddleware,
    InFlightMiddleware,
    KeepResponseTypes,
    RetryRequestMiddleware,
    ThrottlingMiddleware,
)
from bot.telegram.middlewares.delivery import BOT_API_ERRORS
from bot.telegram.notify import deliver_follow_ups, notify_router
from bot.telegram.options import TelegramOptions
from bot.telegram.session import BotSession

log = logging.getLogger("faqbot.telegram")


def create_bot(
    settings: Settings, options: TelegramOptions | None = None, *, session: BaseSession | None = None
) -> Bot:
    """A Bot for ``settings.telegram_bot_token`` talking to ``TELEGRAM_API_URL`` (default: Telegram's servers).

    Every request goes through `KeepResponseTypes` and `RetryRequestMiddleware`. ``session`` replaces the
    default `BotSession` (tests); it should be a `BotSession` too, else an unreadable answer is never retried.
    """
    options = options or TelegramOptions()
    if not settings.telegram_configured:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    if session is None:
        if settings.telegram_api_url:
            session = BotSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")))
        else:
            session = BotSession()
    session.middleware(KeepResponseTypes())
    session.middleware(
        RetryRequestMiddleware(
            attempts=options.retry_attempts, retry_after_cap=options.retry_after_cap, backoff=options.retry_backoff
        )
    )
    return Bot(
        settings.telegram_bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(link_preview_is_disabled=True),
    )


def build_dispatcher(services: Services, settings: Settings, options: TelegramOptions | None = None) -> Dispatcher:
    """A Dispatcher with fresh routers and middlewares; handlers receive ``services``, ``settings``, ``options``.

    The middleware instances are in ``dp["tg"]`` (a dict: inflight, throttle, answer_lock, conversations).
    """
    options = options or TelegramOptions()
    conversations = ConversationStore(options.max_conversations)
    inflight = InFlightMiddleware()
    throttle = ThrottlingMiddleware(
        rate=options.throttle_rate, period=options.throttle_period, silence=options.throttle_silence
    )
    answer_lock = AnswerLockMiddleware()
    dp = Dispatcher(name="faqbot", disable_fsm=True, services=services, settings=settings, options=options)
    dp["tg"] = {"inflight": inflight, "throttle": throttle, "answer_lock": answer_lock, "conversations": conversations}

    dp.update.outer_middleware(inflight)
    # Inner middlewares (after filters): only events some handler takes are throttled, locked and get a `conv`.
    for observer in (dp.message, dp.edited_message, dp.callback_query):
        observer.middleware(throttle)
        observer.middleware(answer_lock)
        observer.middleware(ConversationMiddleware(conversations))

    routers = [private_router(), group_router(settings), notify_router(), callbacks_router(), errors_router()]
    if settings.admin_ids:  # without admins the router would only add a failing check to every message
        routers[0:0] = [admin_router(settings), curation_router(settings)]
    dp.include_routers(*routers)
    return dp


def bot_commands(*, admin: bool = False) -> list[BotCommand]:
    commands = dict(texts.TG_COMMANDS)
    if admin:
        commands.update(texts.TG_ADMIN_COMMANDS)
    return [BotCommand(command=c, description=d) for c, d in commands.items()]


async def set_commands(bot: Bot, settings: Settings) -> None:
    """The command menu (Chinese): public commands for everyone, plus the admin commands in each admin's chat.

    Cosmetic: a failure (after the request middleware's retries) is a warning and the bot goes on answering.
    """
    try:
        await bot.set_my_commands(bot_commands(), scope=BotCommandScopeDefault())
    except BOT_API_ERRORS as exc:
        log.warning("setMyCommands failed (%s); the command menu may be out of date", type(exc).__name__)
    for admin_id in settings.admin_ids:
        try:
            await bot.set_my_commands(bot_commands(admin=True), scope=BotCommandScopeChat(chat_id=int(admin_id)))
        except BOT_API_ERRORS as exc:  # e.g. the admin never opened a chat with the bot
            log.info("admin command menu not set for one admin: %s", type(exc).__name__)


async def _wait_stop(stop: asyncio.Event, task: asyncio.Task[Any]) -> bool:
    """Wait for ``stop`` or for ``task`` to end; True if stop was requested."""
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    return stopper in done


async def run_polling(bot: Bot, dp: Dispatcher, options: TelegramOptions, stop: asyncio.Event) -> None:
    """Long polling until ``stop`` is set (or polling fails)."""
    try:
        await bot.delete_webhook(drop_pending_updates=False)  # polling gets 409 while a webhook is set
    except BOT_API_ERRORS as exc:
        # Usually no webhook is set and nothing is lost; if one is, polling reports the conflict and retries.
        log.warning("deleteWebhook failed (%s); polling anyway", type(exc).__name__)
    task = asyncio.create_task(
        dp.start_polling(
            bot,
            polling_timeout=options.polling_timeout,
            handle_signals=False,
            close_bot_session=False,
            allowed_updates=dp.resolve_used_update_types(),
        ),
        name="telegram-polling",
    )
    if not await _wait_stop(stop, task):
        task.result()  # polling ended by itself: re-raise its error
        return
    try:
        await dp.stop_polling()
    except RuntimeError:  # not started yet
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_webhook(bot: Bot, dp: Dispatcher, settings: Settings, stop: asyncio.Event) -> None:
    """Serve the webhook (aiohttp) on TELEGRAM_WEBHOOK_HOST:PORT until ``stop``.

    The path is the path of TELEGRAM_WEBHOOK_URL; Telegram's requests must carry TELEGRAM_WEBHOOK_SECRET in the
    ``X-Telegram-Bot-Api-Secret-Token`` header. The webhook is left set on shutdown: with several instances
    behind a balancer the others keep serving, and a restarted instance sets it again.
    """
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler
    from aiohttp import web

    url = settings.telegram_webhook_url or ""
    path = urlsplit(url).path or "/"
    secret = settings.telegram_webhook_secret.get_secret_value() if settings.telegram_webhook_secret else None
    if not secret:
        log.warning("TELEGRAM_WEBHOOK_SECRET is not set: anyone who finds the webhook URL can send fake updates")
    handler = SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret, handle_in_background=True)
    app = web.Application()
    app.router.add_route("POST", path, handler.handle)  # not handler.register(): that would close the bot early
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.telegram_webhook_host, settings.telegram_webhook_port)
    await site.start()
    try:
        await bot.set_webhook(url=url, secret_token=secret, allowed_updates=dp.resolve_used_update_types())
        log.info(
            "webhook mode: listening on %s:%s%s", settings.telegram_webhook_host, settings.telegram_webhook_port, path
        )
        await stop.wait()
    finally:
        await runner.cleanup()  # stop taking requests; updates already accepted keep running as tasks


async def confirm_updates(bot: Bot, last_update_id: int | None) -> None:
    """Tell Telegram the updates up to ``last_update_id`` are handled, so a restart does not get them again."""
    if last_update_id is None:
        return
    try:
        await bot.get_updates(offset=last_update_id + 1, timeout=0, limit=1)
    except TelegramAPIError as exc:
        log.info("could not confirm the last update: %s", type(exc).__name__)


async def identify(bot: Bot) -> User:
    """``getMe``: the one start-up call that must succeed. A failure ends the transport with a one-line reason."""
    try:
        return await bot.get_me()
    except TelegramUnauthorizedError:
        raise TransportStartError(
            "Telegram refused the bot token (getMe: 401 Unauthorized); check TELEGRAM_BOT_TOKEN"
        ) from None
    except BOT_API_ERRORS as exc:
        status = getattr(exc, "status_code", None)
        why = f"{type(exc).__name__}" + (f", HTTP {status}" if status else "")
        raise TransportStartError(
            f"cannot reach the Telegram Bot API (getMe failed: {why}); check TELEGRAM_API_URL and the network"
        ) from None


async def _follow_ups_at_start(bot: Bot, services: Services) -> None:
    try:
        await deliver_follow_ups(bot, services)
    except Exception:
        log.exception("follow-up answers at start failed")


async def run_telegram(
    services: Services,
    settings: Settings,
    stop: asyncio.Event,
    *,
    options: TelegramOptions | None = None,
    session: BaseSession | None = None,
) -> None:
    """Run the bot until ``stop`` is set: polling by default, a webhook when TELEGRAM_WEBHOOK_URL is set."""
    options = options or TelegramOptions()
    bot = create_bot(settings, options, session=session)
    dp = build_dispatcher(services, settings, options)
    inflight: InFlightMiddleware = dp["tg"]["inflight"]
    commands: asyncio.Task[None] | None = None
    follow_ups: asyncio.Task[None] | None = None
    try:
        me = await identify(bot)
        webhook = bool(settings.telegram_webhook_url)
        log.info("Telegram: @%s (id %s), %s", me.username, me.id, "webhook" if webhook else "long polling")
        # Cosmetic, and retried with backoff when it fails: done beside answering, never before it.
        commands = asyncio.create_task(set_commands(bot, settings), name="telegram-commands")
        services.followers["telegram"] = lambda: deliver_follow_ups(bot, services)  # after any reload
        # A restart is a reload too: answers that now exist go to those who asked to be told (beside answering).
        follow_ups = asyncio.create_task(_follow_ups_at_start(bot, services), name="telegram-follow-ups")
        if webhook:
            await run_webhook(bot, dp, settings, stop)
        else:
            await run_polling(bot, dp, options, stop)
        await inflight.wait_idle(options.drain_timeout)  # the update tasks still running, tracked by our middleware
        if not webhook:
            await confirm_updates(bot, inflight.last_update_id)
        log.info("Telegram stopped (%d updates handled)", inflight.handled)
    finally:
        services.followers.pop("telegram", None)
        if follow_ups is not None and not follow_ups.done():
            follow_ups.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow_ups
        if commands is not None and not commands.done():
            commands.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await commands
        await bot.session.close()
