"""The whole path once: a signed request to a decision, an answer and an audit entry."""

from __future__ import annotations

from audit import verify_chain
from tests.harness import ADMIN, STRANGER, Harness


async def test_whoami_travels_the_whole_path(harness: Harness) -> None:
    client = harness.client()
    reply = await client.call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    assert reply.result == {"user_id": ADMIN, "role": "admin"}
    tail = await harness.executor.audit.tail(1)
    assert (tail[0].actor, tail[0].action, tail[0].decision, tail[0].request_id) == ("tg:1", "whoami", "executed", reply.request_id)
    stranger = await client.call(STRANGER, "whoami")
    assert (stranger.http_status, stranger.status) == (403, "denied")
    assert (await verify_chain(harness.executor.audit, None, {})).ok
