"""An approval that lapses is announced as expired, always: on a late tap, and by the sweep."""

from __future__ import annotations

import time
from typing import Any

from tests.executor.test_approvals import harness, request  # noqa: F401 - the fixture, with its policy
from tests.harness import ADMIN, APPROVER, Harness


async def expiry_notices(harness: Harness, approval_id: str) -> list[dict[str, Any]]:
    """The approval.expired events waiting in the outbox, acknowledged as the bot would."""
    client = harness.client()
    events = await client.poll(wait=0)
    await client.ack([e["id"] for e in events])
    return [e["payload"]["approval"] for e in events if e["kind"] == "approval.expired" and e["ref"] == approval_id]


async def test_a_late_tap_announces_the_approval_as_expired(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    await expiry_notices(harness, approval_id)
    harness.executor.clock = lambda: time.time() + harness.settings.approval_ttl_seconds + 1
    reply = await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})
    assert reply.reason == "this request has expired"
    [notice] = await expiry_notices(harness, approval_id)
    assert notice["state"] == "expired"


async def test_the_sweep_makes_good_a_notice_lost_after_a_late_tap(harness: Harness) -> None:
    """Whatever happened to the tap's notice, the sweep announces and moves it, once."""
    approval_id = await request(harness, ADMIN, "verify")
    harness.executor.clock = lambda: time.time() + harness.settings.approval_ttl_seconds + 1
    await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})
    await expiry_notices(harness, approval_id)  # delivered, or lost: the sweep does not care

    assert [a.id for a in await harness.executor.expire_due()] == [approval_id]
    [notice] = await expiry_notices(harness, approval_id)
    assert notice["state"] == "expired"
    assert (await harness.executor.approvals.get(approval_id)).state == "expired"
    assert await harness.executor.expire_due() == []
    assert await expiry_notices(harness, approval_id) == []
    audited = [e for e in await harness.executor.audit.tail(10) if e.action == "approval.expire"]
    assert [e.decision for e in audited] == ["expired"]


async def test_an_untapped_approval_is_announced_expired_by_the_sweep(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    await expiry_notices(harness, approval_id)
    harness.executor.clock = lambda: time.time() + harness.settings.approval_ttl_seconds + 1
    assert [a.id for a in await harness.executor.expire_due()] == [approval_id]
    [notice] = await expiry_notices(harness, approval_id)
    assert notice["state"] == "expired"
