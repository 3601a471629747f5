"""The notification outbox: at least once, in order, across a bot or executor restart."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.outbox import Notification, Outbox
from tests.harness import ADMIN, OPERATOR, Harness


async def produce(harness: Harness, count: int) -> list[int]:
    ids = []
    for n in range(count):
        ids.append(await harness.executor.outbox.add("report", {"n": n}, now=0.0, chat_id=-100 if n % 2 else None))
    return ids


async def test_an_unacknowledged_event_is_delivered_again_in_order(harness: Harness) -> None:
    ids = await produce(harness, 5)
    bot = harness.client()
    first = await bot.poll(wait=0)
    assert [e["id"] for e in first] == ids and [e["payload"]["n"] for e in first] == list(range(5))
    await bot.ack(ids[:2])  # the bot dies after posting two of them
    await bot.close()
    restarted = harness.client()
    again = await restarted.poll(wait=0)
    assert [e["id"] for e in again] == ids[2:]
    await restarted.ack(ids[2:])
    assert await restarted.poll(wait=0) == []


async def test_a_poll_after_an_id_skips_the_events_the_bot_holds_back(harness: Harness) -> None:
    """Quiet hours: the bot leaves some events unacknowledged and polls past them; they
    are still there for the next poll from the start (a restarted bot)."""
    ids = [await harness.executor.outbox.add("report", {"n": n}, now=1_000.0 + n) for n in range(4)]
    bot = harness.client()
    assert [e["id"] for e in await bot.poll(wait=0, after=ids[1])] == ids[2:]
    assert [e["created_at"] for e in await bot.poll(wait=0, after=ids[1])] == [1_002.0, 1_003.0]
    await bot.ack(ids[2:])
    assert await bot.poll(wait=0, after=ids[1]) == []
    assert [e["id"] for e in await bot.poll(wait=0)] == ids[:2]


async def test_undelivered_events_survive_an_executor_restart(harness: Harness) -> None:
    ids = await produce(harness, 3)
    await harness.restart()
    assert [e["id"] for e in await harness.client().poll(wait=0)] == ids


class WatchedOutbox(Outbox):
    """The executor's outbox, which also tells the test when a poll found nothing (and goes on to wait)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.found_nothing = asyncio.Event()

    async def _undelivered(self, limit: int, after: int = 0) -> list[Notification]:
        found = await super()._undelivered(limit, after)
        if not found:
            self.found_nothing.set()
        return found


async def test_a_long_poll_wakes_when_an_event_arrives(harness: Harness) -> None:
    outbox = harness.executor.outbox = WatchedOutbox(harness.daemon._engine)
    bot = harness.client()
    waiting = asyncio.create_task(bot.poll(wait=20))
    await asyncio.wait_for(outbox.found_nothing.wait(), 20)  # the poll is inside the executor, waiting
    [event_id] = await produce(harness, 1)
    events = await asyncio.wait_for(waiting, 20)
    assert [e["id"] for e in events] == [event_id]


async def test_only_the_bot_itself_reads_the_outbox(harness: Harness) -> None:
    reply = await harness.client().call(ADMIN, "outbox.poll", {"wait": 0})
    assert reply.status == "denied"
    reply = await harness.client().call(None, "whoami")
    assert reply.status == "bad_request"
    reply = await harness.client().call(None, "approval.approve", {"id": "abc"})
    assert reply.status == "bad_request"


async def test_bad_outbox_arguments_are_refused(harness: Harness) -> None:
    client = harness.client()
    for action, args in (
        ("outbox.poll", {"wait": "soon"}), ("outbox.poll", {"limit": True}), ("outbox.poll", {"after": "7"}), ("outbox.ack", {"ids": "1,2"}),
    ):  # fmt: skip
        reply = await client.call(None, action, args)
        assert reply.status == "bad_request", (action, args, reply)


async def test_help_lists_only_what_the_user_may_run(harness: Harness) -> None:
    operator = await harness.client().call(OPERATOR, "help")
    admin = await harness.client().call(ADMIN, "help")
    names = lambda r: {c["action"] for c in r.result["commands"]}  # noqa: E731
    assert "verify" in names(admin) and "verify" not in names(operator)
    assert "audit" not in names(operator)
    assert names(operator) <= names(admin)


async def test_messages_the_bot_posted_are_handed_back_for_later_events(harness: Harness) -> None:
    outbox = harness.executor.outbox
    first = await outbox.add("approval.requested", {}, now=0.0, ref="abc123")
    await outbox.add("approval.requested", {}, now=0.0, chat_id=77, ref="abc123")
    bot = harness.client()
    events = await bot.poll(wait=0)
    assert [e["messages"] for e in events] == [{}, {}]
    await bot.ack([e["id"] for e in events], [{"id": first, "chat_id": -100, "message_id": 5}, {"id": events[1]["id"], "chat_id": 77, "message_id": 9}])
    await outbox.add("approval.finished", {}, now=0.0, ref="abc123")
    [later] = await bot.poll(wait=0)
    assert later["messages"] == {"-100": 5, "77": 9}
    # A message that could not be edited and was posted anew replaces the old one.
    await bot.ack([later["id"]], [{"id": later["id"], "chat_id": -100, "message_id": 12}])
    await outbox.add("approval.finished", {}, now=0.0, ref="abc123")
    assert (await bot.poll(wait=0))[0]["messages"] == {"-100": 12, "77": 9}


async def test_metrics_are_served_on_the_socket(harness: Harness) -> None:
    client = harness.client()
    await client.call(ADMIN, "whoami")
    await client.call(666, "whoami")


    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(harness.settings.socket_path))) as session:
        async with session.get("http://executor/v1/metrics") as response:
            assert response.status == 200
            text = await response.text()
    assert 'wingman_requests_total{decision="executed"} 1' in text
    assert 'wingman_requests_total{decision="denied"} 1' in text
    assert "wingman_approvals_pending 0" in text
    head = await harness.executor.audit.head()
    assert f"wingman_audit_chain_length {head.seq}" in text
    assert "wingman_last_verification_timestamp_seconds 0" in text
