"""Rotating the bot's signing key on a running executor: no request is refused on the way.

A stand-in bot keeps sending signed ``whoami`` requests with whatever key it currently
holds; like the real bot it retries while the executor restarts (the socket is gone then).
Every answer it gets must be ``done``. Afterwards the old key is refused.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from audit import SigningKey, generate_key_pair, load_signing_key
from executor.client import ExecutorClient, ExecutorUnreachable
from tests.harness import VIEWER, Harness
from wingman.keys import next_kid, rotate, rotate_main, rotation_steps


class StandInBot:
    def __init__(self, harness: Harness, key: SigningKey) -> None:
        self.harness, self.key = harness, key
        self.done = 0
        self.refused: list[str] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            client = ExecutorClient(self.harness.settings.socket_path, self.key, timeout=10)
            try:
                reply = await client.call(VIEWER, "whoami")
                if reply.status == "done":
                    self.done += 1
                else:
                    self.refused.append(f"{self.key.kid}: {reply.status} {reply.reason}")
            except ExecutorUnreachable:
                await asyncio.sleep(0.02)  # the executor is restarting
            finally:
                await client.close()

    async def answered(self, more: int = 3) -> None:
        target = self.done + more
        async with asyncio.timeout(30):
            while self.done < target:
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        await self._task


async def whoami(harness: Harness, key: SigningKey) -> Any:
    async with ExecutorClient(harness.settings.socket_path, key, timeout=10) as client:
        return await client.call(VIEWER, "whoami")


async def restart_trusting(harness: Harness, keys: list[Path]) -> None:
    harness.settings = harness.settings.model_copy(update={"trusted_keys": keys})
    await harness.restart()


async def test_rotation_end_to_end_without_a_refused_request(make_harness: Any, bot_key: SigningKey, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    old_pub = keys / "bot.pub"
    harness = await make_harness(trusted_keys=[old_pub])
    bot = StandInBot(harness, bot_key)
    await bot.answered()

    new = rotate(keys, date(2026, 5, 10))
    assert (new.kid, new.key_path, new.pub_path) == ("bot-20260510", keys / "bot-20260510.key", keys / "bot-20260510.pub")
    new_key = load_signing_key(new.key_path)

    # 1. The executor trusts both; the bot still signs with the old key.
    await restart_trusting(harness, [old_pub, new.pub_path])
    await bot.answered()
    # 2. The bot switches to the new key; the old one still works meanwhile.
    bot.key = new_key
    await bot.answered()
    assert (await whoami(harness, bot_key)).status == "done"
    # 3. The old key is retired.
    await restart_trusting(harness, [new.pub_path])
    await bot.answered()
    await bot.stop()
    assert bot.refused == []

    refused = await whoami(harness, bot_key)
    assert refused.status != "done" and "unknown key id 'bot'" in refused.reason
    assert (await whoami(harness, new_key)).status == "done"


def test_next_kid_never_reuses_a_day(tmp_path: Path) -> None:
    day = date(2026, 5, 10)
    assert next_kid(tmp_path, day) == "bot-20260510"
    generate_key_pair(tmp_path, "bot-20260510")
    assert next_kid(tmp_path, day) == "bot-20260510-2"
    assert rotate(tmp_path, day).kid == "bot-20260510-2"
    assert rotate(tmp_path, day, "bot-custom").kid == "bot-custom"


def test_the_printed_steps_name_this_hosts_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    generate_key_pair(keys, "bot")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WINGMAN_BOT_KEY", str(keys / "bot.key"))
    monkeypatch.setenv("WINGMAN_TRUSTED_KEYS", str(keys / "bot.pub"))
    assert rotate_main(None, None, date(2026, 5, 10)) == 0
    out = capsys.readouterr().out
    assert f"private key: {keys / 'bot-20260510.key'}" in out
    assert f"WINGMAN_TRUSTED_KEYS={keys / 'bot.pub'},{keys / 'bot-20260510.pub'}" in out
    assert f"WINGMAN_BOT_KEY={keys / 'bot-20260510.key'}" in out
    assert out.rstrip().splitlines()[-2].strip() == f"WINGMAN_TRUSTED_KEYS={keys / 'bot-20260510.pub'}"
    assert f"rm {keys / 'bot.key'}" in out
    steps = rotation_steps(rotate(keys, date(2026, 5, 11)), None, [])
    assert "WINGMAN_TRUSTED_KEYS=" + str(keys / "bot-20260511.pub") in steps[0]
