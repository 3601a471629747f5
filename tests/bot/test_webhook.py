"""Webhook mode: Telegram posts updates to the bot, which refuses any without the secret.

The double stands for Telegram and posts the queued updates when told (``deliver_webhook``),
to the bot's local address, as the TLS proxy in front of the bot would forward them.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bot.app import BotApp, check_webhook
from tests.bot.conftest import TEAM, World
from tests.harness import VIEWER
from bot.settings import BotSettings
from process.settings import SettingsError

PUBLIC = "https://bot.example.test/wingman/telegram"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def hooked(make_world: Callable[..., Awaitable[World]]) -> tuple[World, str]:
    port = free_port()
    world = await make_world(bot={"telegram_webhook_url": PUBLIC, "telegram_webhook_listen": f"127.0.0.1:{port}"})
    return world, f"http://127.0.0.1:{port}/wingman/telegram"


async def answers(world: World, user: int) -> list[Any]:
    return await world.double.wait_for(
        lambda: [m for m in world.double.chat(TEAM) if m.from_bot and f"tg:{user}" in m.text] or None,
        timeout=30,
        what="the bot's answer",
    )


async def test_updates_telegram_posts_are_answered(hooked: tuple[World, str]) -> None:
    world, local = hooked
    assert world.double.webhook_url == PUBLIC and world.double.webhook_secret
    world.say(VIEWER, "/whoami")
    assert await world.double.deliver_webhook(local) == [200]
    (answer,) = await answers(world, VIEWER)
    assert "viewer" in answer.text
    assert world.double.pending_updates == []


@pytest.mark.parametrize("secret", ["", "not-the-secret"])
async def test_an_update_without_the_secret_is_refused_unread_and_comes_again(hooked: tuple[World, str], secret: str) -> None:
    world, local = hooked
    world.say(VIEWER, "/whoami")
    assert await world.double.deliver_webhook(local, secret=secret) == [401]
    entries = await world.harness.executor.audit.tail(50)
    assert not [e for e in entries if e.actor == f"tg:{VIEWER}"]  # never reached the executor
    assert len(world.double.pending_updates) == 1  # Telegram keeps it and posts it again
    assert await world.double.deliver_webhook(local) == [200]
    assert len(await answers(world, VIEWER)) == 1


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"update_id": "x"}', b"[" * 100_000 + b"]" * 100_000])
async def test_a_body_that_is_not_an_update_gets_one_line(hooked: tuple[World, str], body: bytes) -> None:
    world, local = hooked
    headers = {"X-Telegram-Bot-Api-Secret-Token": world.double.webhook_secret or "", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(local, data=body, headers=headers) as response:
        assert (response.status, await response.text()) == (400, "the body is not a Telegram update\n")


async def test_back_to_polling_removes_the_webhook(hooked: tuple[World, str]) -> None:
    world, _ = hooked
    await world.app.stop()
    world.settings = world.settings.model_copy(update={"telegram_webhook_url": None})
    world.app = BotApp(world.settings)
    await world.app.start()
    assert world.double.webhook_url == ""
    (answer,) = await world.reply_to(VIEWER, "/whoami")
    assert "viewer" in answer.text


async def test_a_port_in_use_stops_the_start_with_one_line(make_world: Callable[..., Awaitable[World]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=rf"^TELEGRAM_WEBHOOK_LISTEN: cannot listen on 127.0.0.1:{port}: "):
            await make_world(bot={"telegram_webhook_url": PUBLIC, "telegram_webhook_listen": f"127.0.0.1:{port}"})


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"telegram_webhook_url": "http://bot.example.test/hook"}, "TELEGRAM_WEBHOOK_URL: Telegram only posts to an https:// URL"),
        ({"telegram_webhook_url": "https:///hook"}, "TELEGRAM_WEBHOOK_URL: Telegram only posts to an https:// URL"),
        ({"telegram_webhook_url": PUBLIC, "telegram_webhook_listen": "8080"}, "TELEGRAM_WEBHOOK_LISTEN: expected host:port"),
        ({"telegram_webhook_url": PUBLIC, "telegram_webhook_listen": "127.0.0.1:99999"}, "TELEGRAM_WEBHOOK_LISTEN: expected host:port"),
        ({"telegram_webhook_url": PUBLIC, "telegram_webhook_secret": "has spaces"}, "TELEGRAM_WEBHOOK_SECRET: use 1 to 256 characters"),
        ({"telegram_webhook_url": PUBLIC, "telegram_webhook_secret": "x" * 257}, "TELEGRAM_WEBHOOK_SECRET: use 1 to 256 characters"),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused_with_what_to_fix(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        check_webhook(BotSettings(_env_file=None, **settings))
    assert str(refused.value).startswith(problem)


def test_without_a_secret_each_start_makes_its_own() -> None:
    settings = BotSettings(_env_file=None, telegram_webhook_url=PUBLIC)
    first, second = check_webhook(settings), check_webhook(settings)
    assert first is not None and second is not None and first.secret != second.secret
    assert (first.path, first.host, first.port) == ("/wingman/telegram", "127.0.0.1", 8080)
    assert check_webhook(BotSettings(_env_file=None)) is None
