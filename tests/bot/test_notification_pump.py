"""The notification pump against the real executor and the Bot API double: it backs off
when polls go wrong, logs one line per change of trouble, and outlives any exception.

The pump's back-off pauses go through its ``sleep`` seam: here a sleeper that only adds
the pause to a virtual clock, so ten minutes of back-off take no time and the pauses are
asserted exactly. Everything else is real: signed polls over the executor's socket, its
audit log, the bot's aiogram session against the double.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from audit import generate_key_pair, load_signing_key
from bot.app import make_bot
from bot.notifications import MAX_BACKOFF, NotificationPump
from executor.client import ExecutorClient
from tests.doubles.telegram import DEFAULT_TOKEN, TelegramDouble
from tests.harness import Harness

TEAM = -1001234
TEN_MINUTES = 600.0
# README, "Notifications": polls at 0, 1, 3, 7, 15, 31 and 63 s, then one a minute.
BOUND_TEN_MINUTES = 15


class VirtualSleeper:
    """Counts back-off pauses on a virtual clock; stops the pump once ``until`` has passed."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.delays: list[float] = []
        self.pump: NotificationPump | None = None

    @property
    def elapsed(self) -> float:
        return sum(self.delays)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.elapsed >= self.until and self.pump is not None:
            self.pump.stop()
        await asyncio.sleep(0)


@pytest.fixture
async def double() -> AsyncIterator[TelegramDouble]:
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM, chat_type="supergroup", title="ops")
    yield double
    await double.close()


@pytest.fixture
async def make_pump(double: TelegramDouble) -> AsyncIterator[Callable[[ExecutorClient, VirtualSleeper], Awaitable[NotificationPump]]]:
    bots = []

    async def make(client: ExecutorClient, sleeper: VirtualSleeper) -> NotificationPump:
        bot = make_bot(double.token, double.base_url)
        bots.append(bot)
        pump = NotificationPump(bot, client, TEAM, sleep=sleeper)
        sleeper.pump = pump
        return pump

    yield make
    for bot in bots:
        await bot.session.close()


def pump_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wingman.bot" and "notifications" in r.getMessage()]


async def test_a_wrong_bot_key_costs_a_bounded_number_of_audit_entries(
    harness: Harness, make_pump: Callable[..., Awaitable[NotificationPump]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = load_signing_key(generate_key_pair(tmp_path / "wrong", "bot")[0])  # the right kid, another key
    client = harness.client(wrong)
    sleeper = VirtualSleeper(until=TEN_MINUTES)
    pump = await make_pump(client, sleeper)
    before = await harness.executor.audit.count()
    caplog.set_level(logging.INFO, logger="wingman.bot")

    await asyncio.wait_for(pump.run(), timeout=60)

    assert sleeper.delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0] + [MAX_BACKOFF] * 9
    polls = len(sleeper.delays)  # each pause follows one refused poll
    entries = (await harness.executor.audit.tail(polls + 1))
    gained = await harness.executor.audit.count() - before
    assert gained == polls == BOUND_TEN_MINUTES
    assert [(e.actor, e.decision, e.outcome) for e in entries[-polls:]] == [("unverified", "refused", "the signature does not verify")] * polls
    [line] = pump_lines(caplog)
    assert line == (
        "notifications paused: the executor answers refused: the signature does not verify (is WINGMAN_BOT_KEY's public"
        " half among the executor's WINGMAN_TRUSTED_KEYS, and are both clocks right?); retrying with back-off up to 60 s"
    )
    assert pump.trouble is not None and "signature does not verify" in pump.trouble


async def test_an_unexpected_error_is_logged_once_and_the_pump_carries_on(
    harness: Harness, make_pump: Callable[..., Awaitable[NotificationPump]], double: TelegramDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram answering 401 (a revoked bot token) is no error the pump expects: it used to
    end the pump for good. Now the event waits, unacknowledged, and is shown on the next try."""
    await harness.executor.outbox.add("report", {"text": "nightly report"}, now=0.0)
    double.fail_next("sendMessage", count=3, status=401)
    sleeper = VirtualSleeper(until=TEN_MINUTES)
    pump = await make_pump(harness.client(), sleeper)
    caplog.set_level(logging.INFO, logger="wingman.bot")
    running = asyncio.create_task(pump.run())

    shown = await double.wait_for(lambda: [m for m in double.chat(TEAM) if m.from_bot] or None, timeout=30, what="the report")
    await double.wait_for(lambda: pump.trouble is None and sleeper.delays, timeout=30, what="the pump to recover")
    running.cancel()  # parked in a long poll, as BotApp.stop finds it
    with contextlib.suppress(asyncio.CancelledError):
        await running

    assert [m.text for m in shown] == ["nightly report"]
    assert sleeper.delays == [1.0, 2.0, 4.0]
    assert pump_lines(caplog) == [
        "notifications paused: unexpected TelegramUnauthorizedError: Telegram server says - Unauthorized;"
        " retrying with back-off up to 60 s",
        "notifications flow again (after 3 failed tries)",
    ]
    assert await harness.client().poll(wait=0) == []  # acknowledged once shown


async def test_a_restarting_executor_then_a_refusal_are_two_lines(
    harness: Harness, make_pump: Callable[..., Awaitable[NotificationPump]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One line per change of trouble: the executor gone (any number of tries), then back
    but refusing the key."""
    wrong = load_signing_key(generate_key_pair(tmp_path / "wrong", "bot")[0])
    client = ExecutorClient(harness.settings.socket_path, wrong, timeout=30)
    await harness.stop()
    restarted = False

    class Restarting(VirtualSleeper):
        async def __call__(self, delay: float) -> None:
            nonlocal restarted
            if len(self.delays) == 4 and not restarted:  # the executor is back after 4 failed tries
                await harness.start()
                restarted = True
            await super().__call__(delay)

    sleeper = Restarting(until=120.0)
    pump = await make_pump(client, sleeper)
    caplog.set_level(logging.INFO, logger="wingman.bot")
    try:
        await asyncio.wait_for(pump.run(), timeout=60)
    finally:
        await client.close()

    assert sleeper.delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]  # one back-off across both troubles
    lines = pump_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("notifications paused: the executor at ") and "is not answering" in lines[0]
    assert lines[1].startswith("notifications paused: the executor answers refused: the signature does not verify")
