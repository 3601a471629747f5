"""A real executor daemon on a real Unix socket, and clients signing with real keys.

The fixtures are registered for the whole suite by tests/conftest.py.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest

from audit import SigningKey, generate_key_pair, load_signing_key
from executor import codes
from executor.client import ExecutorClient
from executor.protocol import audience_for
from executor.server import Daemon
from executor.settings import ExecutorSettings

ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER, STRANGER = 1, 2, 3, 4, 5, 666
# The test executor's name (WINGMAN_EXECUTOR_NAME) and the audience of tokens meant for it.
NAME = "local"
AUDIENCE = audience_for(NAME)


class Harness:
    """Starts, stops and restarts one executor; hands out clients for it."""

    def __init__(self, home: Path, socket_dir: Path, bot_key: SigningKey, overrides: dict[str, Any]) -> None:
        self.home = home
        self.bot_key = bot_key
        values: dict[str, Any] = {
            "executor_name": NAME,
            "data_dir": home / "data",
            "socket": socket_dir / "executor.sock",
            "trusted_keys": [home / "keys" / f"{bot_key.kid}.pub"],
            "admins": [ADMIN],
            "approvers": [APPROVER, APPROVER2],
            "operators": [OPERATOR],
            "viewers": [VIEWER],
        }
        # No .env from the developer's checkout leaks into a test daemon.
        self.settings = ExecutorSettings(_env_file=None, **{**values, **overrides})
        self.daemon: Daemon | None = None
        self._clients: list[ExecutorClient] = []

    async def start(self) -> Daemon:
        self.daemon = Daemon(self.settings)
        await self.daemon.start()
        return self.daemon

    async def stop(self) -> None:
        for client in self._clients:
            await client.close()
        self._clients.clear()
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    async def restart(self) -> Daemon:
        await self.stop()
        return await self.start()

    @property
    def name(self) -> str:
        """The executor's name (``WINGMAN_EXECUTOR_NAME``)."""
        return self.settings.name

    @property
    def audience(self) -> str:
        """The audience of tokens meant for this executor (for ``make_token``)."""
        return audience_for(self.settings.name)

    @property
    def executor(self) -> Any:
        assert self.daemon is not None and self.daemon.executor is not None
        return self.daemon.executor

    def enroll(self, user: int) -> str:
        """Give ``user`` a one-time code secret, as `wingman approvers enroll` does; returns it."""
        return codes.enroll(self.settings.data_dir / codes.DIRECTORY, user, replace=True)[0]

    def code(self, user: int, steps: int = 0) -> str:
        """``user``'s one-time code now (or ``steps`` 30 s steps away; one either side is
        accepted), enrolling them first if needed."""
        path = codes.secret_path(self.settings.data_dir / codes.DIRECTORY, user)
        secret = path.read_text().strip() if path.exists() else self.enroll(user)
        return pyotp.TOTP(secret).at(time.time() + 30 * steps)

    def client(self, key: SigningKey | None = None, *, executor_name: str | None = None) -> ExecutorClient:
        """A client for this executor; ``executor_name`` (default: the executor's own) is the
        executor its tokens are signed for."""
        client = ExecutorClient(
            self.settings.socket_path, key or self.bot_key, executor_name=executor_name or self.name, timeout=30
        )
        self._clients.append(client)
        return client


@pytest.fixture
def socket_dir() -> Any:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="wm-", dir="/tmp"))
    yield path / "run"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bot_key(tmp_path: Path) -> SigningKey:
    return load_signing_key(generate_key_pair(tmp_path / "keys", "bot")[0])


@pytest.fixture
async def make_harness(
    tmp_path: Path, socket_dir: Path, bot_key: SigningKey
) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    made: list[Harness] = []

    async def make(**overrides: Any) -> Harness:
        harness = Harness(tmp_path, socket_dir, bot_key, overrides)
        await harness.start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop()


@pytest.fixture
async def harness(make_harness: Callable[..., Awaitable[Harness]]) -> Harness:
    return await make_harness()


@pytest.fixture
async def make_host(tmp_path: Path, bot_key: SigningKey) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """Executors for one bot serving many hosts: ``await make_host("b", **settings)`` starts
    executor ``b`` (``WINGMAN_EXECUTOR_NAME=b``) with its own home, database and socket,
    trusting the same bot key as ``make_harness``'s."""
    made: list[tuple[Harness, Path]] = []

    async def make(name: str, **overrides: Any) -> Harness:
        home = tmp_path / "hosts" / name
        (home / "keys").mkdir(parents=True)
        shutil.copy(tmp_path / "keys" / f"{bot_key.kid}.pub", home / "keys")
        sockets = Path(tempfile.mkdtemp(prefix=f"wm-{name}-", dir="/tmp"))  # 108-byte socket paths
        harness = Harness(home, sockets / "run", bot_key, {"executor_name": name, **overrides})
        made.append((harness, sockets))
        await harness.start()
        return harness

    yield make
    for harness, sockets in made:
        await harness.stop()
        shutil.rmtree(sockets, ignore_errors=True)


class Recorder:
    """A progress callback that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, stage: str, details: dict[str, Any]) -> None:
        self.events.append((stage, dict(details)))

    @property
    def stages(self) -> list[str]:
        out: list[str] = []
        for stage, _ in self.events:
            if not out or out[-1] != stage:
                out.append(stage)
        return out
