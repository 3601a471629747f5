"""The real bot against the Bot API double, the real executor on a real socket, a real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from tests.doubles.telegram import DEFAULT_TOKEN, StoredMessage, TelegramDouble
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, STRANGER, VIEWER, Harness
from bot.settings import BotSettings

TEAM = -1001234
USERS = {ADMIN: "admin", APPROVER: "approver", APPROVER2: "approver", OPERATOR: "operator", VIEWER: "viewer", STRANGER: None}


@dataclass
class World:
    harness: Harness
    double: TelegramDouble
    app: BotApp
    settings: BotSettings

    async def restart_bot(self) -> None:
        await self.app.stop()
        self.app = BotApp(self.settings)
        await self.app.start()

    def say(self, user: int, text: str, *, team: bool = True) -> None:
        self.double.send_text(user, text, chat_id=TEAM if team else None)

    async def reply_to(self, user: int, text: str, *, team: bool = True) -> list[StoredMessage]:
        """Send ``text`` and wait for the bot's answer: the message that replies to it."""
        chat = TEAM if team else user
        self.say(user, text, team=team)
        asked = self.double.chat(chat)[-1].message_id

        def answers() -> list[StoredMessage] | None:
            found = [
                m for m in self.double.chat(chat)
                if m.from_bot and (m.reply_to_message or {}).get("message_id") == asked
            ]  # fmt: skip
            return found or None

        return await self.double.wait_for(answers, timeout=30, what=f"the bot's answer to {text!r}")

    async def approval_message(self, approval_id: str, chat: int = TEAM) -> StoredMessage:
        return await self.double.wait_for(
            lambda: next((m for m in self.double.chat(chat) if m.from_bot and f"Request {approval_id}" in m.text), None),
            timeout=30,
            what=f"the approval message of {approval_id}",
        )


async def team_double() -> TelegramDouble:
    """The Bot API double with the team chat and every test user in it."""
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM, chat_type="supergroup", title="ops")
    for user in USERS:
        double.add_user(user, first_name=f"user{user}")
    return double


@pytest.fixture
async def make_world(make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[World]]]:
    made: list[World] = []

    async def make(bot: dict[str, Any] | None = None, **executor_settings: Any) -> World:
        harness = await make_harness(**{"container_allowlist": ["web", "app-*"], **executor_settings})
        double = await team_double()
        settings = BotSettings(
            _env_file=None,
            telegram_bot_token=double.token,
            telegram_api_base=double.base_url,
            chat_id=TEAM,
            bot_key=harness.home / "keys" / "bot.key",
            socket=harness.settings.socket_path,
            data_dir=tmp_path / "bot-data",
            **(bot or {}),
        )
        app = BotApp(settings)
        try:
            await app.start()
        except BaseException:
            await app.stop()  # as `wingman bot` does after a failed start
            await double.close()
            raise
        world = World(harness, double, app, settings)
        made.append(world)
        return world

    yield make
    for world in made:
        await world.app.stop()
        await world.double.close()


@pytest.fixture
async def world(make_world: Callable[..., Awaitable[World]]) -> World:
    return await make_world()


class FleetWorld(World):
    """A World whose bot serves several executors (``hosts``, by name; ``harness`` is the first)."""

    hosts: dict[str, Harness]


@pytest.fixture
async def make_fleet(make_host: Callable[..., Awaitable[Harness]], tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[FleetWorld]]]:
    made: list[FleetWorld] = []

    async def make(hosts: dict[str, dict[str, Any]], *, extra: dict[str, Path] | None = None) -> FleetWorld:
        """A bot serving executors ``hosts`` (name: settings), and ``extra`` sockets by name."""
        harnesses = {name: await make_host(name, **{"container_allowlist": ["web", "app-*"], **settings}) for name, settings in hosts.items()}
        double = await team_double()
        settings = BotSettings(
            _env_file=None,
            telegram_bot_token=double.token,
            telegram_api_base=double.base_url,
            chat_id=TEAM,
            bot_key=tmp_path / "keys" / "bot.key",
            executors={**{name: h.settings.socket_path for name, h in harnesses.items()}, **(extra or {})},
            data_dir=tmp_path / "bot-data",
        )
        app = BotApp(settings)
        try:
            await app.start()
        except BaseException:
            await app.stop()
            await double.close()
            raise
        world = FleetWorld(next(iter(harnesses.values())), double, app, settings)
        world.hosts = harnesses
        made.append(world)
        return world

    yield make
    for world in made:
        await world.app.stop()
        await world.double.close()
