"""One bot, many executors: the real bot against the Bot API double and real executors, each
on its own socket with its own database, policy and audit chain (``make_fleet``).
``test_fleet_engines.py`` gives each executor its own Docker engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.bot.conftest import TEAM, FleetWorld, World
from tests.doubles.telegram import StoredMessage
from tests.harness import ADMIN, OPERATOR, STRANGER, VIEWER

@pytest.fixture
async def silent_socket() -> AsyncIterator[Path]:
    """A socket where a host is "up" but never answers: it accepts, reads and says nothing."""
    directory = Path(tempfile.mkdtemp(prefix="wm-silent-", dir="/tmp"))
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_unix_server(accept, path=str(directory / "silent.sock"))
    yield directory / "silent.sock"
    server.close()
    for writer in held:
        writer.close()
    shutil.rmtree(directory, ignore_errors=True)


async def test_status_answers_in_one_message_by_host_and_a_silent_host_delays_nothing(
    make_fleet: Callable[..., Awaitable[FleetWorld]], silent_socket: Path
) -> None:
    world = await make_fleet({"a": {}, "b": {}}, extra={"c": silent_socket})
    [reply] = await world.reply_to(VIEWER, "/status")
    sections = reply.text.split("\n\n")
    assert [s.splitlines()[0].split(":")[0] for s in sections] == ["a", "b", "c"]
    assert sections[0].startswith("a\n") and sections[1].startswith("b\n")
    assert sections[2].startswith("c: not answering (since ") and sections[2].endswith(" UTC)")
    # One host's status; the bot asks only that host.
    before = await world.hosts["b"].executor.audit.count()
    [one] = await world.reply_to(VIEWER, "/status a")
    assert one.text.startswith("🖥 a\n")
    assert await world.hosts["b"].executor.audit.count() == before


async def test_whoami_and_help_say_what_the_user_may_do_on_each_host(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    world = await make_fleet({"a": {}, "b": {"operators": [], "viewers": [VIEWER, OPERATOR]}})
    [who] = await world.reply_to(OPERATOR, "/whoami")
    assert who.text == f"You are tg:{OPERATOR}:\na: operator\nb: viewer"
    [helped] = await world.reply_to(OPERATOR, "/help")
    on_a, on_b = helped.text.split("\n\na\n")[1].split("\n\nb\n")
    assert "/restart <name|project>" in on_a and "/restart <name|project>" not in on_b
    assert "/status [name|project]" in on_b
    [stranger] = await world.reply_to(STRANGER, "/whoami", team=False)
    assert stranger.text == "❌ you are not authorised to use this bot"  # one short refusal, no list of hosts


async def test_verify_checks_every_host_in_one_message(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    world = await make_fleet({"a": {}, "b": {}})
    [reply] = await world.reply_to(ADMIN, "/verify")
    a, b = reply.text.split("\n\n")
    assert a.startswith("a\n✅ ok:") and b.startswith("b\n✅ ok:")
    for harness in world.hosts.values():
        assert any(e.action == "verify" for e in await harness.executor.audit.tail(5))


async def test_one_weekly_picture_for_all_hosts(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    """Each host's weekly job sends its figures; the chat ends with one picture of both."""
    world = await make_fleet({"a": {}, "b": {}})
    # b's week alone names b in its deploys line; both weeks, both hosts in the headline.
    for name, shows in (("b", "Deploys: b 0, 0 rolled back"), ("a", " · a, b\n")):
        harness = world.hosts[name]
        await harness.executor.audit.append(actor=f"tg:{OPERATOR}", action="restart", decision="executed", target="web")
        assert harness.daemon is not None and harness.daemon.scheduler is not None
        assert await harness.daemon.scheduler.run_job("weekly-report") is not None

        def one(needle: str = shows) -> StoredMessage | None:
            found = _bot_messages(world, "Weekly report")  # deleted ones are not shown
            return found[0] if len(found) == 1 and needle in found[0].text else None

        weekly = await world.double.wait_for(one, timeout=60, what=f"one weekly picture showing {shows!r}")
    assert weekly.kind == "photo"
    assert len(world.double.chat(TEAM, include_deleted=True)) == 1  # b's own picture, edited to show both hosts'
    assert "Deploys: a 0, 0 rolled back · b 0, 0 rolled back" in weekly.text


async def test_hosts_lists_each_executor_and_whether_it_answers(
    make_fleet: Callable[..., Awaitable[FleetWorld]], silent_socket: Path
) -> None:
    world = await make_fleet({"a": {}, "b": {}}, extra={"c": silent_socket})
    await world.hosts["b"].stop()
    [listed] = await world.reply_to(VIEWER, "/hosts")
    lines = listed.text.splitlines()
    assert lines[0] == "Executors"
    assert lines[1].startswith("a · version ") and lines[1].endswith(" · answering")
    assert lines[2].startswith("b: not answering (since ")
    assert lines[3].startswith("c: not answering (since ")
    [refused] = await world.reply_to(STRANGER, "/hosts", team=False)
    assert refused.text == "❌ you are not authorised to use this bot"


async def test_a_host_named_that_is_not_served_gets_one_line(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    world = await make_fleet({"a": {}, "b": {}})
    [reply] = await world.reply_to(OPERATOR, "/restart web@nas")
    assert reply.text == "There is no host nas here (hosts: a, b); /hosts lists them."
    [reply] = await world.reply_to(OPERATOR, "/restart web@")
    assert reply.text == "'web@': write name@host, e.g. web@nas (/hosts lists the hosts)"


async def test_reports_of_all_hosts_are_one_message_with_a_section_each(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    world = await make_fleet({"a": {}, "b": {}})
    a, b = world.hosts["a"], world.hosts["b"]
    await b.executor.outbox.add("scheduler.daily-report", {"text": "Daily report\nb: 3 entries"}, now=b.executor.clock())
    first = await world.double.wait_for(lambda: _bot_messages(world, "Daily report") or None, timeout=30, what="b's report")
    assert first[0].text.startswith("📊 Daily report · 1 of 2 hosts")
    await a.executor.outbox.add("scheduler.daily-report", {"text": "Daily report\na: 5 entries"}, now=a.executor.clock())
    await a.executor.outbox.add("scheduler.weekly-report", {"text": "Weekly report\na: 9 entries"}, now=a.executor.clock())

    def merged() -> StoredMessage | None:
        found = _bot_messages(world, "Daily report")
        return found[0] if len(found) == 1 and "2 of 2 hosts" in found[0].text else None

    message = await world.double.wait_for(merged, timeout=30, what="a's section added to the daily report")
    assert message.message_id == first[0].message_id  # edited in place
    assert message.text.index("🖥 a\n") < message.text.index("🖥 b\n")  # in the fleet's order
    assert "a: 5 entries" in message.text and "b: 3 entries" in message.text
    weekly = await world.double.wait_for(lambda: _bot_messages(world, "Weekly report") or None, timeout=30, what="the weekly")
    assert len(weekly) == 1 and weekly[0].text.startswith("📊 Weekly report · 1 of 2 hosts")


async def test_after_a_bot_restart_a_later_host_starts_a_new_report_message(make_fleet: Callable[..., Awaitable[FleetWorld]]) -> None:
    """The open report messages live in the bot's memory only (bot.reports): nothing is lost,
    the period just shows as two messages."""
    world = await make_fleet({"a": {}, "b": {}})
    a, b = world.hosts["a"], world.hosts["b"]
    await a.executor.outbox.add("scheduler.daily-report", {"text": "a: 5 entries"}, now=a.executor.clock())
    await world.double.wait_for(lambda: _bot_messages(world, "a: 5 entries") or None, timeout=30, what="a's report")
    await world.restart_bot()
    await b.executor.outbox.add("scheduler.daily-report", {"text": "b: 3 entries"}, now=b.executor.clock())
    [later] = await world.double.wait_for(lambda: _bot_messages(world, "b: 3 entries") or None, timeout=30, what="b's report")
    [earlier] = _bot_messages(world, "a: 5 entries")
    assert earlier.message_id != later.message_id
    assert later.text.startswith("📊 Daily report · 1 of 2 hosts") and "a: 5 entries" not in later.text


async def test_a_stopped_host_answers_later_and_its_notifications_arrive_none_lost(
    make_fleet: Callable[..., Awaitable[FleetWorld]],
) -> None:
    world = await make_fleet({"a": {}, "b": {}})
    a, b = world.hosts["a"], world.hosts["b"]
    for n in range(3):
        await b.executor.outbox.add("alert", {"text": f"b notice {n}"}, now=b.executor.clock())
    await world.double.wait_for(lambda: len(_bot_messages(world, "b notice ")) == 3 or None, timeout=30, what="b's first notices")
    await b.stop()
    [status] = await world.reply_to(VIEWER, "/status")
    assert "\n\nb: not answering (since " in status.text and status.text.startswith("a\n")
    await a.executor.outbox.add("alert", {"text": "a notice while b is down"}, now=a.executor.clock())
    shown = await world.double.wait_for(lambda: _bot_messages(world, "a notice while b is down") or None, timeout=30, what="a's notice")
    assert shown[0].text.startswith("🖥 a\n")

    await b.start()
    await b.executor.outbox.add("alert", {"text": "b notice 3"}, now=b.executor.clock())
    await world.double.wait_for(
        lambda: len(_bot_messages(world, "b notice ")) >= 4 or None, timeout=90, what="b's notices after it returns"
    )
    texts = sorted(m.text for m in _bot_messages(world, "b notice "))
    assert texts == [f"🖥 b\nb notice {n}" for n in range(4)]  # each once, none lost
    [again] = await world.reply_to(VIEWER, "/status")
    assert "not answering" not in again.text


def _bot_messages(world: World, needle: str) -> list[StoredMessage]:
    return [m for m in world.double.chat(TEAM) if m.from_bot and needle in m.text]


