"""Running the bot: check its settings, connect to Telegram and the executor, poll, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

from audit.signing import KeyFileError, SigningKey, load_signing_key
from bot import alerts
from bot.fleet import Fleet, Host
from bot.handlers import ChatGate, build_router
from bot.notifications import NotificationPump
from bot.pictures import PictureBoard
from bot.quiet import Clock, Held, QuietHours, QuietHoursError, parse_timezone
from bot.ratelimit import RateLimit
from bot.reports import ReportBoard
from bot.retry import RetryMiddleware
from bot.settings import BotSettings
from bot.updates import build_updates_router
from process.lifecycle import run_until_signalled
from process.settings import SettingsError

log = logging.getLogger("wingman.bot")
TOKEN_PATTERN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
NO_TOKEN = (
    "TELEGRAM_BOT_TOKEN: not set. In Telegram, talk to @BotFather (https://t.me/BotFather), "
    "send /newbot, and put the token it gives you in .env as TELEGRAM_BOT_TOKEN=<token> (see .env.example)"
)
SHUTDOWN_GRACE = 20.0

MENU = [
    BotCommand(command="help", description="what you may do here"),
    BotCommand(command="status", description="containers and their health"),
    BotCommand(command="logs", description="a container's recent logs"),
    BotCommand(command="restart", description="restart a container"),
    BotCommand(command="deploy", description="deploy a new image (needs approval)"),
    BotCommand(command="rollback", description="back to the previous image (needs approval)"),
    BotCommand(command="pending", description="requests waiting for approval"),
    BotCommand(command="updates", description="image updates ready to deploy"),
    BotCommand(command="update", description="apply a stack's updates as one (needs approval)"),
    BotCommand(command="vm", description="Proxmox VMs: status, start, shutdown, snapshot"),
    BotCommand(command="audit", description="the latest audit entries"),
    BotCommand(command="whoami", description="your id and role"),
    BotCommand(command="hosts", description="the executors, their versions, whether they answer"),
]


def bot_key_path(settings: BotSettings) -> Path:
    return settings.bot_key or settings.data_dir / "keys" / "bot.key"


def check_token(settings: BotSettings) -> str:
    """The bot token, or a SettingsError saying how to get one."""
    token = settings.telegram_bot_token.get_secret_value().strip() if settings.telegram_bot_token else ""
    if settings.telegram_bot_token_file is not None:
        if token:
            raise SettingsError("TELEGRAM_BOT_TOKEN_FILE: set it or TELEGRAM_BOT_TOKEN, not both")
        try:
            token = settings.telegram_bot_token_file.read_text().strip()
        except OSError as exc:
            raise SettingsError(f"TELEGRAM_BOT_TOKEN_FILE: cannot read {settings.telegram_bot_token_file}: {exc.strerror}") from None
    if not token:
        raise SettingsError(NO_TOKEN)
    if not TOKEN_PATTERN.fullmatch(token):
        raise SettingsError("TELEGRAM_BOT_TOKEN: does not look like a bot token (<digits>:<letters>); copy it again from @BotFather")
    return token


def check(settings: BotSettings) -> tuple[str, SigningKey]:
    """The token and signing key, or a SettingsError saying what to fix."""
    token = check_token(settings)
    check_quiet_hours(settings)
    try:
        key = load_signing_key(bot_key_path(settings))
    except KeyFileError as exc:
        raise SettingsError(f"WINGMAN_BOT_KEY: {exc} (make one with: wingman keys generate --out {bot_key_path(settings).parent} --kid bot)") from None
    return token, key


@dataclass(frozen=True)
class Webhook:
    url: str
    path: str
    host: str
    port: int
    secret: str


def check_quiet_hours(settings: BotSettings) -> QuietHours | None:
    """``WINGMAN_QUIET_HOURS`` in ``WINGMAN_TIMEZONE`` (None: no quiet hours), or a
    SettingsError saying what to fix."""
    try:
        if not settings.quiet_hours or not settings.quiet_hours.strip():
            parse_timezone(settings.timezone)  # the bot reads it too: a wrong one is said at start
            return None
        return QuietHours.parse(settings.quiet_hours, settings.timezone)
    except QuietHoursError as exc:
        raise SettingsError(str(exc)) from None


def check_webhook(settings: BotSettings) -> Webhook | None:
    """Webhook mode's settings (None: long polling), or a SettingsError saying what to fix."""
    if not settings.telegram_webhook_url:
        return None
    url = settings.telegram_webhook_url.strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(
            "TELEGRAM_WEBHOOK_URL: Telegram only posts to an https:// URL; give the public address of "
            "the TLS proxy that forwards to TELEGRAM_WEBHOOK_LISTEN (or unset it to poll)"
        )
    host, _, port = settings.telegram_webhook_listen.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError("TELEGRAM_WEBHOOK_LISTEN: expected host:port, e.g. 127.0.0.1:8080")
    if settings.telegram_webhook_secret is None:
        secret = secrets.token_urlsafe(32)
    else:
        secret = settings.telegram_webhook_secret.get_secret_value()
        if not WEBHOOK_SECRET_PATTERN.fullmatch(secret):
            raise SettingsError("TELEGRAM_WEBHOOK_SECRET: use 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
    return Webhook(url, parts.path or "/", host.strip("[]"), int(port), secret)


def make_bot(token: str, api_base: str | None) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else AiohttpSession()
    session.middleware(RetryMiddleware())
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True))


class UpdateHandler(SimpleRequestHandler):
    """aiogram's webhook handler for one bot: it compares ``X-Telegram-Bot-Api-Secret-Token``
    (constant time) before anything reads the body, answers at once and handles the update
    in the background, as polling does. Three things differ, each by overriding one method:

    - a request without the secret is told in one line what is missing (aiogram's says
      ``Unauthorized``), still unread;
    - a body that is not an update is answered 400 with one line (aiogram's would fail with a
      500 for bad JSON, or accept anything JSON and fail later in the background);
    - closing the web application leaves the bot's session open: ``BotApp.stop`` closes it
      once the updates in flight are done (aiogram's closes it first).
    """

    def __init__(self, dispatcher: Dispatcher, bot: Bot, secret: str, **data: Any) -> None:
        super().__init__(dispatcher, bot, handle_in_background=True, secret_token=secret, **data)

    @property
    def in_flight(self) -> set[asyncio.Task[Any]]:
        return set(self._background_feed_update_tasks)

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            return web.Response(status=401, text=f"wrong or missing {SECRET_HEADER}\n")
        return await super().handle(request)

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            update = Update.model_validate(await request.json(loads=bot.session.json_loads), context={"bot": bot})
        except (ValueError, RecursionError):  # not JSON, or not an update (ValidationError is a ValueError)
            return web.Response(status=400, text="the body is not a Telegram update\n")
        task = asyncio.create_task(self._feed(bot, update), name=f"update-{update.update_id}")
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        return web.json_response({}, dumps=bot.session.json_dumps)

    async def _feed(self, bot: Bot, update: Update) -> None:
        try:
            await self.dispatcher.feed_update(bot, update, **self.data)
        except Exception:  # one update's failure must not pass unnoticed, nor stop the others
            log.exception("update %s failed", update.update_id)

    async def close(self) -> None:
        """Nothing: the bot's session outlives the web application (see the class)."""


class BotApp:
    """One running bot; ``start`` then ``stop`` (the tests drive it the same way)."""

    def __init__(self, settings: BotSettings, *, clock: Clock = time.time) -> None:
        """``clock`` (seconds since the epoch) places quiet hours; tests move it."""
        token, key = check(settings)
        quiet = check_quiet_hours(settings)
        self.webhook = check_webhook(settings)
        self.settings = settings
        self.bot = make_bot(token, settings.telegram_api_base)
        self.fleet = Fleet.connect(settings.executor_sockets(), key)
        self.dispatcher = Dispatcher()
        self.dispatcher.message.outer_middleware(ChatGate(settings.chat_id))
        self.dispatcher.callback_query.outer_middleware(ChatGate(settings.chat_id))
        self.rate_limit = RateLimit()
        self.dispatcher.message.middleware(self.rate_limit)
        self.dispatcher.include_router(build_updates_router(clock))  # before the commands: /updates asks every host
        self.dispatcher.include_router(build_router())
        self.dispatcher.include_router(alerts.build_router())
        # One pump per executor: a host that is down delays no other host's notifications.
        reports = ReportBoard(self.fleet.names) if self.fleet.many else None
        pictures = PictureBoard(self.fleet.names) if self.fleet.many else None
        held = Held(quiet, clock)  # one for every host: what waited arrives in one message
        self.pumps = [
            NotificationPump(
                self.bot, host.client, settings.chat_id, host=host.name, clock=clock,
                reports=reports, answered=self._watch(host), pictures=pictures, held=held,
            )  # fmt: skip
            for host in self.fleet.hosts
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._webhook_server: web.AppRunner | None = None
        self._updates: UpdateHandler | None = None

    def _watch(self, host: Host) -> Callable[[str | None], None]:
        """What a pump tells the fleet: whether its host answers (for /status and /hosts)."""

        def told(trouble: str | None) -> None:
            if trouble is None:
                self.fleet.answered(host)
            else:
                self.fleet.not_answering(host, trouble)

        return told

    async def start(self) -> None:
        try:
            await self.bot.set_my_commands(MENU)
        except TelegramAPIError as exc:  # the menu is a nicety; polling retries on its own
            log.warning("could not set the command menu: %s", exc)
        if self.webhook is not None:
            await self._start_webhook(self.webhook)
        else:
            try:  # a webhook left from webhook mode would make Telegram refuse getUpdates
                await self.bot.delete_webhook(drop_pending_updates=False)
            except TelegramAPIError as exc:
                log.warning("could not remove a webhook: %s", exc)
            self._tasks.append(
                asyncio.create_task(
                    self.dispatcher.start_polling(
                        self.bot, handle_signals=False, close_bot_session=False, fleet=self.fleet, polling_timeout=25
                    ),
                    name="telegram-polling",
                )
            )
        for pump in self.pumps:
            self._tasks.append(asyncio.create_task(pump.run(), name=f"notifications-{pump.host or 'executor'}"))
        log.info("bot started (%s)", "webhook at " + self.webhook.url if self.webhook else "long polling")

    async def _start_webhook(self, webhook: Webhook) -> None:
        """Listen first, then tell Telegram where to post: its first update finds us ready."""
        app = web.Application()
        self._updates = UpdateHandler(self.dispatcher, self.bot, webhook.secret, fleet=self.fleet)
        self._updates.register(app, path=webhook.path)
        setup_application(app, self.dispatcher, fleet=self.fleet)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, webhook.host, webhook.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise SettingsError(f"TELEGRAM_WEBHOOK_LISTEN: cannot listen on {webhook.host}:{webhook.port}: {exc.strerror}") from None
        self._webhook_server = runner
        try:
            await self.bot.set_webhook(
                webhook.url,
                secret_token=webhook.secret,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
                drop_pending_updates=False,
            )
        except TelegramAPIError as exc:
            raise SettingsError(f"TELEGRAM_WEBHOOK_URL: Telegram did not accept the webhook: {exc.message}") from None

    async def stop(self) -> None:
        """Stop polling, let in-flight executor calls finish (bounded), close the sessions."""
        for pump in self.pumps:
            pump.stop()
        if self._webhook_server is not None:
            # Stop taking updates (Telegram keeps them until the bot is back), finish those taken.
            await self._webhook_server.cleanup()
            if self._updates is not None and self._updates.in_flight:
                await asyncio.wait(self._updates.in_flight, timeout=SHUTDOWN_GRACE)
        with contextlib.suppress(RuntimeError):  # polling had not started (or webhook mode)
            await self.dispatcher.stop_polling()
        for pump, task in zip(self.pumps, [t for t in self._tasks if t.get_name().startswith("notifications-")]):
            if pump.idle:
                # Parked in a long poll: nothing is half-shown, and an unacknowledged event
                # comes again after a restart anyway.
                task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s ended with %r", task.get_name(), task.exception())
        await self.fleet.close()
        await self.bot.session.close()


async def serve(settings: BotSettings) -> None:
    """Run until SIGTERM or SIGINT."""
    await run_until_signalled(BotApp(settings))
