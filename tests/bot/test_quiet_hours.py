"""Quiet hours: informational messages wait and arrive as one message when the window ends;
approval requests and alerts never wait; nothing is lost or doubled across a bot restart.

The window is a table first (parsing, midnight, what is informational), then the real bot
against the Bot API double and a real executor. Their clocks are one ``SettableClock``
that the test moves: it stands at 02:00 to be quiet and is moved past 07:00 to end the
window. The executor's long-poll is then released (``Outbox.wake``) so the bot looks at
the clock at once instead of after its poll's 25 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.app import BotApp, check
from bot.quiet import INFORMATIONAL, QuietHours, QuietHoursError, informational
from bot.settings import BotSettings
from process.settings import SettingsError
from tests.doubles.telegram import DEFAULT_TOKEN, StoredMessage, TelegramDouble
from tests.harness import OPERATOR, Harness

TEAM = -1001234
T = TypeVar("T")


def at(hhmm: str, day: int = 7) -> float:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(2026, 12, day, hour, minute, tzinfo=timezone.utc).timestamp()


# -- the window, as a table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "moment", "quiet"),
    [
        ("23:00-07:00", "23:00", True),
        ("23:00-07:00", "02:00", True),
        ("23:00-07:00", "06:59", True),
        ("23:00-07:00", "07:00", False),
        ("23:00-07:00", "12:00", False),
        ("23:00-07:00", "22:59", False),
        ("01:30-05:00", "01:30", True),
        ("01:30-05:00", "04:59", True),
        ("01:30-05:00", "05:00", False),
        ("01:30-05:00", "23:00", False),
    ],
)
def test_the_window_covers_its_start_not_its_end_and_may_cross_midnight(window: str, moment: str, quiet: bool) -> None:
    assert QuietHours.parse(window, "UTC").covers(at(moment)) is quiet


def test_the_window_is_in_the_configured_zone() -> None:
    berlin = QuietHours.parse("23:00-07:00", "Europe/Berlin")  # UTC+1 in December
    assert berlin.covers(at("22:30"))  # 23:30 in Berlin
    assert not berlin.covers(at("06:30"))  # 07:30 in Berlin
    assert berlin.start == time(23, 0)


def test_seconds_left_reach_the_end_across_midnight() -> None:
    hours = QuietHours.parse("23:00-07:00", "UTC")
    assert hours.seconds_left(at("23:00")) == 8 * 3600
    assert hours.seconds_left(at("06:59")) == 60
    assert hours.seconds_left(at("12:00")) == 0


@pytest.mark.parametrize(
    ("window", "zone", "error"),
    [
        ("23-7", None, 'WINGMAN_QUIET_HOURS: "23-7" is not a window HH:MM-HH:MM (e.g. 23:00-07:00)'),
        ("23:00-24:00", None, 'WINGMAN_QUIET_HOURS: "23:00-24:00" has a time that is not HH:MM between 00:00 and 23:59'),
        ("07:00-07:00", None, 'WINGMAN_QUIET_HOURS: "07:00-07:00" starts and ends at the same time; unset it for no quiet hours'),
        ("23:00-07:00", "Mars/Olympus", 'WINGMAN_TIMEZONE: "Mars/Olympus" is not a time zone (e.g. Europe/Berlin, UTC)'),
    ],
)
def test_a_bad_window_or_zone_is_one_line_naming_the_setting(window: str, zone: str | None, error: str, tmp_path: Path) -> None:
    with pytest.raises(QuietHoursError) as raised:
        QuietHours.parse(window, zone)
    assert str(raised.value) == error
    # The bot says the same at start, before anything runs (as `wingman bot` does).
    settings = BotSettings(
        _env_file=None, telegram_bot_token="123:abc", bot_key=tmp_path / "none.key", quiet_hours=window, timezone=zone
    )
    with pytest.raises(SettingsError) as stopped:
        check(settings)
    assert str(stopped.value) == error


@pytest.mark.parametrize(
    ("kind", "payload", "waits"),
    [
        ("scheduler.daily-report", {"text": "📊 …", "status": "ok"}, True),
        ("scheduler.weekly-report", {"text": "📊 …", "status": "ok"}, True),
        ("scheduler.checkpoint", {"text": "🔏 …", "status": "ok", "witness": "w"}, True),
        ("scheduler.verify", {"text": "✅ Audit chain intact", "status": "ok"}, True),
        ("scheduler.retention", {"text": "🧹 …", "status": "ok"}, True),
        ("updates", {"text": "2 updates"}, True),
        # The same kinds carrying an alert or a failure go at once; so does one that says nothing.
        ("scheduler.verify", {"text": "🚨 AUDIT CHAIN BROKEN", "status": "alert"}, False),
        ("scheduler.daily-report", {"text": "❌ Scheduled job failed", "status": "error"}, False),
        ("scheduler.verify", {"text": "🚨 from an older executor"}, False),
        ("scheduler.verify-watchdog", {"text": "⚠️ not verified", "status": "alert"}, False),
        ("approval.requested", {"approval": {"id": "a1"}}, False),
        ("progress", {"approval": {"id": "a1"}}, False),
        ("alert", {"text": "web died"}, False),
        ("recovery", {"text": "Recovered after a restart"}, False),
        ("something-new", {"text": "?", "status": "ok"}, False),
    ],
)
def test_only_the_classified_good_news_may_wait(kind: str, payload: dict[str, Any], waits: bool) -> None:
    assert informational({"id": 1, "kind": kind, "payload": payload}) is waits


def test_every_informational_kind_is_a_known_scheduler_job_or_the_update_check() -> None:
    from scheduler.jobs import JOBS
    from scheduler.runs import action_of

    jobs = {action_of(spec.id) for spec in JOBS}
    assert set(INFORMATIONAL) - jobs == {"updates"}


# -- the real bot, the double, a real executor ------------------------------------------------


class SettableClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Night:
    harness: Harness
    double: TelegramDouble
    settings: BotSettings
    clock: SettableClock
    app: BotApp | None = None

    async def start_bot(self) -> None:
        self.app = BotApp(self.settings, clock=self.clock)
        await self.app.start()

    async def stop_bot(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def report(self, job: str = "daily-report") -> None:
        """A scheduled job's run, as the scheduler runs it, posted to the outbox."""
        assert self.harness.daemon is not None and self.harness.daemon.scheduler is not None
        assert await self.harness.daemon.scheduler.run_job(job) is not None

    def shown(self, marker: str) -> list[StoredMessage]:
        return [m for m in self.double.chat(TEAM) if m.from_bot and marker in m.text]

    async def until(self, predicate: Callable[[], T | None], what: str, timeout: float = 30) -> T:
        """Wait for ``predicate``, releasing the executor's long-poll meanwhile so the bot
        looks at the (moved) clock without waiting out its poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.harness.executor.outbox.wake()
            value = predicate()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the chat: {[m.text[:60] for m in self.double.chat(TEAM)]}")
            await asyncio.sleep(0.05)

    async def request_stop(self) -> None:
        """An operator's /stop: an approval request, which is never held."""
        self.double.send_text(OPERATOR, "/stop web", chat_id=TEAM)
        await self.until(lambda: self.shown("waiting for approval"), "the approval request")

    async def all_acknowledged(self) -> None:
        client = self.harness.client()
        for _ in range(400):
            if await client.poll(wait=0) == []:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"still unacknowledged: {await client.poll(wait=0)}")


@pytest.fixture
async def night(make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path) -> AsyncIterator[Night]:
    harness = await make_harness(container_allowlist=["web"])
    clock = SettableClock(at("02:00"))
    harness.executor.clock = clock  # the outbox's created_at
    assert harness.daemon is not None and harness.daemon.scheduler is not None
    harness.daemon.scheduler.context.clock = clock  # the reports' posting time
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM, chat_type="supergroup", title="ops")
    double.add_user(OPERATOR, first_name="operator")
    settings = BotSettings(
        _env_file=None,
        telegram_bot_token=double.token,
        telegram_api_base=double.base_url,
        chat_id=TEAM,
        bot_key=harness.home / "keys" / "bot.key",
        socket=harness.settings.socket_path,
        data_dir=tmp_path / "bot-data",
        quiet_hours="23:00-07:00",
        timezone="UTC",
    )
    world = Night(harness, double, settings, clock)
    await world.start_bot()
    yield world
    await world.stop_bot()
    await double.close()


async def test_at_night_reports_wait_and_arrive_once_as_one_message_in_order_after_the_window(night: Night) -> None:
    await night.report("daily-report")
    await night.report("checkpoint")
    night.harness.executor.outbox.wake()
    await night.request_stop()  # after the two reports: shown at once, so they were passed by
    await night.harness.executor.outbox.add("alert", {"text": "🚨 web died (OOM)"}, now=night.clock())
    await night.until(lambda: night.shown("web died"), "the container alert")
    assert night.shown("audit report") == [] and night.shown("checkpoint") == []

    night.clock.now = at("07:00") + 30
    [digest] = await night.until(lambda: night.shown("Held during quiet hours"), "the digest")
    assert digest.text.startswith("🌙 Held during quiet hours (23:00–07:00): 2 messages")
    assert digest.text.index("daily audit report") < digest.text.index("Audit checkpoint: seq")
    assert "<code>" in digest.raw_text  # the witness line, to copy, as it is shown alone
    await night.all_acknowledged()
    # A later report goes at once, and the digest was not posted again.
    await night.report("daily-report")
    await night.until(lambda: len(night.shown("daily audit report")) == 2 or None, "the morning's report")
    assert len(night.shown("Held during quiet hours")) == 1
    last_two = [m.text.split("\n")[0] for m in night.double.chat(TEAM) if m.from_bot][-2:]
    assert last_two[0].startswith("🌙 Held") and "daily audit report" in last_two[1]


async def test_held_messages_survive_a_bot_restart_and_one_down_across_the_end(night: Night) -> None:
    await night.report("daily-report")
    await night.request_stop()
    await night.stop_bot()  # at 02:00, holding the report: nothing of it was acknowledged

    await night.start_bot()  # still night: held again, not shown
    await night.report("verify")
    await night.harness.executor.outbox.add("alert", {"text": "🚨 web unhealthy"}, now=night.clock())
    await night.until(lambda: night.shown("web unhealthy"), "an alert after the restart")
    assert night.shown("audit report") == [] and night.shown("Audit chain intact") == []

    await night.stop_bot()
    night.clock.now = at("08:15")  # the bot was down when the window ended
    await night.start_bot()
    [digest] = await night.until(lambda: night.shown("Held during quiet hours"), "the digest after the restart")
    assert digest.text.startswith("🌙 Held during quiet hours (23:00–07:00): 2 messages")
    assert digest.text.index("daily audit report") < digest.text.index("Audit chain intact")
    await night.all_acknowledged()
    assert len(night.shown("daily audit report")) == 1  # inside the digest, once


async def test_a_held_weekly_report_follows_the_one_message_as_itself(night: Night) -> None:
    await night.report("daily-report")
    await night.report("weekly-report")  # figures, drawn by the bot: no text for a digest
    await night.request_stop()
    assert night.shown("audit report") == [] and night.shown("Weekly report") == []
    night.clock.now = at("07:00") + 1
    [weekly] = await night.until(lambda: night.shown("Weekly report"), "the weekly report after the window")
    [digest] = night.shown("Held during quiet hours")
    assert digest.text.startswith("🌙 Held during quiet hours (23:00–07:00): 2 messages")
    assert digest.text.endswith("(1 more follows below)") and "daily audit report" in digest.text
    bot_messages = [m.message_id for m in night.double.chat(TEAM) if m.from_bot]
    assert bot_messages[-2:] == [digest.message_id, weekly.message_id]
    await night.all_acknowledged()


async def test_many_executors_held_reports_arrive_in_one_message(
    make_harness: Callable[..., Awaitable[Harness]], tmp_path: Path, socket_dir: Path
) -> None:
    no_docker = "unix:///nonexistent/docker.sock"
    home = await make_harness(executor_name="home", docker_host=no_docker)
    nas = await make_harness(executor_name="nas", data_dir=tmp_path / "nas-data", socket=socket_dir / "nas.sock", docker_host=no_docker)
    clock = SettableClock(at("02:00"))
    for harness in (home, nas):
        harness.executor.clock = clock
        harness.daemon.scheduler.context.clock = clock
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM, chat_type="supergroup", title="ops")
    settings = BotSettings(
        _env_file=None, telegram_bot_token=double.token, telegram_api_base=double.base_url, chat_id=TEAM,
        bot_key=home.home / "keys" / "bot.key", executors=f"home={home.settings.socket_path},nas={nas.settings.socket_path}",
        quiet_hours="23:00-07:00", timezone="UTC",
    )  # fmt: skip
    night = Night(home, double, settings, clock)
    await night.start_bot()
    try:
        assert await home.daemon.scheduler.run_job("daily-report") is not None
        assert await nas.daemon.scheduler.run_job("daily-report") is not None
        await nas.executor.outbox.add("alert", {"text": "🚨 db died"}, now=clock())
        await night.until(lambda: night.shown("db died"), "nas's alert, at once")
        assert night.shown("audit report") == []

        clock.now = at("07:00") + 5
        # home's pump is woken; it posts what both executors held, and acknowledges nas's through nas.
        [digest] = await night.until(lambda: night.shown("Held during quiet hours"), "the one message")
        assert digest.text.startswith("🌙 Held during quiet hours (23:00–07:00): 2 messages")
        assert "🖥 home\n📊 Wingman daily audit report" in digest.text
        assert "🖥 nas\n📊 Wingman daily audit report" in digest.text
        for harness in (home, nas):
            client = harness.client()
            for _ in range(400):
                if await client.poll(wait=0) == []:
                    break
                await asyncio.sleep(0.05)
            assert await client.poll(wait=0) == []
        assert len(night.shown("Held during quiet hours")) == 1
    finally:
        await night.stop_bot()
        await double.close()
