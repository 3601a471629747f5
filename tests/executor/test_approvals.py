"""Approvals through the real daemon: who may approve, exactly once, bound, expiring, durable."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from audit import AuditEntry
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER, Harness

# verify re-tiered to 2 (requested by the admin), audit to 3 (requested by an approver):
# real actions that run when approved, without Docker.
POLICY = "actions:\n  verify: {tier: 2}\n  audit: {tier: 3}\n"


@pytest.fixture
async def harness(make_harness: Any, tmp_path: Path) -> Harness:
    (tmp_path / "policy.yaml").write_text(POLICY)
    return await make_harness(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True)


async def request(harness: Harness, user: int, action: str, **args: Any) -> str:
    reply = await harness.client().call(user, action, args, {"chat_id": -100, "private": False})
    assert (reply.http_status, reply.status) == (202, "pending"), reply
    return str(reply.result["approval"]["id"])


async def finished(harness: Harness, approval_id: str) -> dict[str, Any]:
    """Wait (by long-polling the outbox, as the bot does) for the approval's final event."""
    client = harness.client()
    for _ in range(20):
        events = await client.poll(wait=5)
        for event in events:
            if event["kind"] == "approval.finished" and event["ref"] == approval_id:
                return dict(event["payload"])
        await client.ack([e["id"] for e in events])  # read: the next poll waits for news
    raise AssertionError(f"approval {approval_id} never finished")


async def executions(harness: Harness, action: str) -> list[AuditEntry]:
    return [e for e in await harness.executor.audit.tail(200) if e.action == action and e.decision == "executed"]


async def test_self_approval_is_refused_and_audited(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    reply = await harness.client().call(ADMIN, "approval.approve", {"id": approval_id})
    assert (reply.http_status, reply.status) == (403, "denied")
    assert reply.reason == "you cannot approve your own request"
    entry = (await harness.executor.audit.tail(1))[0]
    assert (entry.actor, entry.action, entry.decision, entry.outcome) == (
        "tg:1", "approval.approve", "refused", "you cannot approve your own request",
    )


@pytest.mark.parametrize(("user", "reason"), [(OPERATOR, "only approvers can approve"), (VIEWER, "only approvers can approve"), (666, "not authorised")])
async def test_only_approvers_count(harness: Harness, user: int, reason: str) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    reply = await harness.client().call(user, "approval.approve", {"id": approval_id})
    assert reply.status == "denied" and reason in reply.reason


async def test_an_approval_runs_once_and_its_outcome_is_recorded(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    reply = await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})
    assert reply.status == "done" and reply.result["approval"]["state"] == "approved"
    payload = await finished(harness, approval_id)
    assert payload["approval"]["state"] == "done"
    assert payload["outcome"]["status"] == "done" and payload["outcome"]["result"]["ok"] is True
    assert len(await executions(harness, "verify")) == 1
    again = await harness.client().call(APPROVER2, "approval.approve", {"id": approval_id})
    assert (again.http_status, again.status) == (409, "conflict") and "already decided" in again.reason


async def test_twenty_simultaneous_approvals_run_the_action_once(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    client = harness.client()
    replies = await asyncio.gather(
        *(client.call(APPROVER if n % 2 else APPROVER2, "approval.approve", {"id": approval_id}) for n in range(20))
    )
    winners = [r for r in replies if r.status == "done"]
    assert len(winners) == 1
    assert all(r.status in ("conflict", "denied") for r in replies if r is not winners[0])
    await finished(harness, approval_id)
    assert len(await executions(harness, "verify")) == 1


async def test_tier_three_needs_two_distinct_approvers_and_counts_each_once(harness: Harness) -> None:
    approval_id = await request(harness, APPROVER, "audit", n=3)
    client = harness.client()
    first = await client.call(ADMIN, "approval.approve", {"id": approval_id, "code": harness.code(ADMIN)})
    assert first.status == "pending" and first.reason == "approval 1 of 2 counted"
    twice = await client.call(ADMIN, "approval.approve", {"id": approval_id, "code": harness.code(ADMIN, 1)})
    assert twice.status == "denied" and twice.reason == "you already approved this"
    own = await client.call(APPROVER, "approval.approve", {"id": approval_id, "code": harness.code(APPROVER)})
    assert own.reason == "you cannot approve your own request"
    assert await executions(harness, "audit") == []
    second = await client.call(APPROVER2, "approval.approve", {"id": approval_id, "code": harness.code(APPROVER2)})
    assert second.status == "done"
    payload = await finished(harness, approval_id)
    assert sorted(payload["approval"]["approved_by"]) == ["tg:1", "tg:3"]
    assert len(await executions(harness, "audit")) == 1


async def test_an_expired_approval_is_refused_and_announced(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    harness.executor.clock = lambda: time.time() + harness.settings.approval_ttl_seconds + 1
    reply = await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})
    assert (reply.http_status, reply.status) == (409, "conflict") and reply.reason == "this request has expired"
    kinds = [(e["kind"], e["ref"]) for e in await harness.client().poll(wait=0)]
    assert ("approval.expired", approval_id) in kinds
    assert await executions(harness, "verify") == []


async def test_the_expiry_sweep_marks_and_announces(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    harness.executor.clock = lambda: time.time() + harness.settings.approval_ttl_seconds + 1
    expired = await harness.executor.expire_due()
    assert [a.id for a in expired] == [approval_id]
    assert await harness.executor.expire_due() == []
    assert (await harness.executor.approvals.get(approval_id)).state == "expired"


EDITS = {
    "args": ("args", '{"n":50}'),
    "approvals needed": ("approvals_needed", 1),
    "requester": ("requester", "tg:4"),
    "expiry": ("expires_at", 4102444800.0),
    # An unsigned SHA-256 binding, as rows had before signing: anyone could recompute it.
    "binding": ("binding", hashlib.sha256(b'{"action":"audit","args":{"n":50},"requester":"tg:2"}').hexdigest()),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
async def test_a_request_edited_in_the_database_does_not_run(
    make_harness: Any, tmp_path: Path, db_url: str, edit: str
) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    harness = await make_harness(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True, db_url=db_url)
    approval_id = await request(harness, APPROVER, "audit", n=3)
    column, value = EDITS[edit]
    engine = harness.daemon._engine  # the executor's own database, changed behind its back
    async with engine.begin() as conn:
        await conn.execute(text(f"UPDATE approvals SET {column} = :v WHERE id = :i"), {"v": value, "i": approval_id})
    reply = await harness.client().call(ADMIN, "approval.approve", {"id": approval_id})
    assert reply.status == "denied" and "does not match its signature" in reply.reason
    ended = await finished(harness, approval_id)
    assert ended["approval"]["state"] == "refused" and ended["outcome"]["status"] == "denied"
    # Not even a second approver, nor a restart, gets it to run.
    await harness.restart()
    again = await harness.client().call(APPROVER2, "approval.approve", {"id": approval_id})
    assert again.status == "conflict"
    assert await executions(harness, "audit") == []
    refused = [e for e in await harness.executor.audit.tail(20) if e.action == "approval.approve" and e.decision == "refused"]
    assert refused and "does not match its signature" in str(refused[0].outcome)


async def test_an_approved_request_edited_while_the_executor_was_down_is_refused_at_run_time(
    make_harness: Any, tmp_path: Path, db_url: str
) -> None:
    """A stop between the vote and the run leaves it approved; the next start checks the signature before running it."""
    (tmp_path / "policy.yaml").write_text(POLICY)
    harness = await make_harness(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True, db_url=db_url)
    approval_id = await request(harness, ADMIN, "verify")
    await harness.stop()
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:  # the vote as it was committed, then the edit
            await conn.execute(text("UPDATE approvals SET state = 'approved', decided_by = 'tg:2' WHERE id = :i"), {"i": approval_id})
            await conn.execute(text("INSERT INTO approval_votes (approval_id, approver, at) VALUES (:i, 'tg:2', 0)"), {"i": approval_id})
            await conn.execute(text("UPDATE approvals SET args = :a WHERE id = :i"), {"a": '{"deep":true}', "i": approval_id})
    finally:
        await engine.dispose()
    await harness.start()
    ended = await finished(harness, approval_id)
    assert ended["approval"]["state"] == "refused"
    assert "does not match its signature" in ended["outcome"]["reason"]
    assert await executions(harness, "verify") == []


async def test_reject_and_cancel_end_a_request(harness: Harness) -> None:
    client = harness.client()
    first = await request(harness, ADMIN, "verify")
    assert (await client.call(OPERATOR, "approval.reject", {"id": first})).status == "denied"
    rejected = await client.call(APPROVER, "approval.reject", {"id": first})
    assert rejected.status == "done" and rejected.result["approval"]["state"] == "rejected"
    assert (await client.call(APPROVER2, "approval.approve", {"id": first})).status == "conflict"

    second = await request(harness, ADMIN, "verify")
    assert (await client.call(APPROVER, "approval.cancel", {"id": second})).reason == "only the requester can cancel a request"
    cancelled = await client.call(ADMIN, "approval.cancel", {"id": second})
    assert cancelled.result["approval"]["state"] == "cancelled"
    assert await executions(harness, "verify") == []


async def test_pending_approvals_survive_a_restart(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    await harness.restart()
    listed = await harness.client().call(VIEWER, "pending")
    assert [a["id"] for a in listed.result["approvals"]] == [approval_id]
    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    assert (await finished(harness, approval_id))["approval"]["state"] == "done"


async def test_unknown_approval_ids_are_refused(harness: Harness) -> None:
    reply = await harness.client().call(APPROVER, "approval.approve", {"id": "doesnotexist"})
    assert reply.status == "denied" and reply.reason == "there is no such request"
    bad = await harness.client().call(APPROVER, "approval.approve", {"id": "../../etc"})
    assert bad.status == "bad_request"


async def test_exactly_once_and_two_approvers_hold_on_postgresql(make_harness: Any, tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    harness = await make_harness(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True, db_url=pg_url)
    client = harness.client()
    approval_id = await request(harness, ADMIN, "verify")
    replies = await asyncio.gather(*(client.call(APPROVER if n % 2 else APPROVER2, "approval.approve", {"id": approval_id}) for n in range(20)))
    assert [r.status for r in replies].count("done") == 1
    await finished(harness, approval_id)
    assert len(await executions(harness, "verify")) == 1
    # Two different approvers at the same moment on a tier 3 request: both count, it runs once.
    tier3 = await request(harness, APPROVER, "audit", n=2)
    both = await asyncio.gather(
        *(client.call(user, "approval.approve", {"id": tier3, "code": harness.code(user)}) for user in (ADMIN, APPROVER2))
    )
    assert sorted(r.status for r in both) == ["done", "pending"]
    assert (await finished(harness, tier3))["approval"]["state"] == "done"
