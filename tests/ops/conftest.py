"""Real files for the operations tests: key pairs, a migrated SQLite database, settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit import AuditStore, generate_key_pair
from audit.database import make_engine, normalize_url, upgrade_schema
from executor.migrations import MIGRATIONS as EXECUTOR_MIGRATIONS
from bot.settings import BotSettings
from executor.settings import ExecutorSettings

TOKEN = "123456789:AAbbCCdd_ee-FF"


async def migrate(url: str) -> None:
    """The schema the executor makes at start: the audit chain's and its own."""
    store = await AuditStore.open(url)
    await store.close()
    engine = make_engine(normalize_url(url), writer=True)
    try:
        await upgrade_schema(engine, EXECUTOR_MIGRATIONS)
    finally:
        await engine.dispose()


@dataclass
class Site:
    """One host's worth of Wingman files under a temporary directory."""

    home: Path
    socket_dir: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    def executor(self, **overrides: Any) -> ExecutorSettings:
        values: dict[str, Any] = {
            "data_dir": self.data,
            "socket": self.socket_dir / "executor.sock",
            "trusted_keys": [self.keys / "bot.pub"],
            "admins": [1],
        }
        return ExecutorSettings(_env_file=None, **{**values, **overrides})

    def bot(self, **overrides: Any) -> BotSettings:
        values: dict[str, Any] = {
            "data_dir": self.data,
            "socket": self.socket_dir / "executor.sock",
            "bot_key": self.keys / "bot.key",
            "telegram_bot_token": TOKEN,
        }
        return BotSettings(_env_file=None, **{**values, **overrides})


@pytest.fixture
async def site(tmp_path: Path, socket_dir: Path) -> Site:
    made = Site(tmp_path / "site", socket_dir)
    generate_key_pair(made.keys, "bot")
    await migrate(f"sqlite+aiosqlite:///{made.data / 'wingman.db'}")
    return made
