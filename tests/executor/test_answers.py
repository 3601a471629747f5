"""Every request is answered and audited, even on a bug; arguments the audit log cannot
record are refused at the edge; a metrics scrape does not search the audit log."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from executor import actions
from executor.actions import Call, Result
from tests.audit.helpers import execute
from tests.harness import ADMIN, OPERATOR, Harness
from tests.scheduler.conftest import audit_entries


async def entries_of(harness: Harness, request_id: str | None) -> list[Any]:
    return [e for e in await audit_entries(harness, "") if e.request_id == request_id]


async def test_a_bug_in_an_action_is_answered_internal_error_and_audited(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def buggy(context: Any, call: Call) -> Result:
        return Result(str(1 // 0))  # stands in for any bug an action may have

    # The catalogue's handler table is where actions plug in; this one has a bug.
    monkeypatch.setitem(actions.HANDLERS, "whoami", buggy)
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (500, "internal_error")
    assert reply.request_id and reply.request_id in reply.reason
    assert "ZeroDivisionError" in reply.reason
    [entry] = await entries_of(harness, reply.request_id)
    assert (entry.actor, entry.action, entry.decision) == (f"tg:{ADMIN}", "whoami", "internal_error")
    assert entry.outcome == reply.reason
    monkeypatch.undo()
    assert (await harness.client().call(ADMIN, "whoami")).status == "done"  # and it goes on answering


async def test_a_bug_outside_the_decision_path_is_still_a_json_answer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def buggy(token: str) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(harness.executor, "handle", buggy)
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (500, "internal_error")
    assert reply.request_id and reply.request_id in reply.reason
    [entry] = await entries_of(harness, reply.request_id)
    assert (entry.actor, entry.decision) == ("unverified", "internal_error")


async def test_a_poll_wait_too_big_for_a_float_is_clamped_not_a_bug(harness: Harness) -> None:
    # It was an OverflowError in float(); the protocol bounds the wait at 30 s.
    await harness.executor.outbox.add("alert", {"text": "waiting"}, now=0.0)  # so no poll waits
    for wait in (10**400, -(10**400)):
        reply = await harness.client().call(None, "outbox.poll", {"wait": wait})
        assert (reply.http_status, reply.status) == (200, "done"), reply


@pytest.mark.parametrize(
    ("args", "chat", "named", "says"),
    [
        ({"target": "web", "timeout": 1.5}, {}, "args.timeout", "floating-point number (1.5)"),
        ({"target": "web", "timeout": float("nan")}, {}, "args.timeout", "floating-point number (nan)"),
        ({"target": "web\ud800"}, {}, "args.target", "lone surrogate"),
        ({"target": "web", "options": {"deep": [1, 2.0]}}, {}, "args.options", "floating-point number (2.0)"),
        ({"target": "web"}, {"chat_id": -100.5}, "chat.chat_id", "floating-point number"),
    ],
)
async def test_arguments_the_audit_cannot_record_are_refused_at_the_edge(
    make_harness: Any, args: dict[str, Any], chat: dict[str, Any], named: str, says: str
) -> None:
    harness: Harness = await make_harness(container_allowlist=["web"], docker_host="unix:///nonexistent/docker.sock")
    reply = await harness.client().call(OPERATOR, "stop", args, chat)  # tier 2: would have asked approvers
    assert (reply.http_status, reply.status) == (400, "bad_request"), reply
    assert reply.reason.startswith(f"{named} holds a ") and says in reply.reason, reply.reason
    [entry] = await entries_of(harness, reply.request_id)
    assert (entry.actor, entry.action, entry.decision, entry.outcome) == (f"tg:{OPERATOR}", "stop", "bad_request", reply.reason)
    assert await harness.executor.approvals.pending(harness.executor.clock()) == []  # no approver was asked


async def scrape(harness: Harness) -> str:
    connector = aiohttp.UnixConnector(path=str(harness.settings.socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get("http://executor/v1/metrics") as response:
            assert response.status == 200
            return await response.text()


def gauge(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


async def test_metrics_keep_the_last_verification_without_searching_the_log(make_harness: Any, sqlite_url: str) -> None:
    harness: Harness = await make_harness(db_url=sqlite_url)
    assert gauge(await scrape(harness), "wingman_last_verification_timestamp_seconds") == 0
    assert harness.daemon is not None and harness.daemon.scheduler is not None
    result = await harness.daemon.scheduler.run_job("verify")
    assert result is not None and result.status == "ok"
    [_, finished] = await audit_entries(harness, "scheduler.verify")
    shown = gauge(await scrape(harness), "wingman_last_verification_timestamp_seconds")
    assert shown > 0
    # The scrape does not read it back from the log: with the run's entries gone from the
    # table (as after a retention export), the scrape still knows it, and the chain length
    # still comes from the head row.
    await execute(sqlite_url, "DELETE FROM audit_log WHERE action = 'scheduler.verify'")
    text = await scrape(harness)
    assert gauge(text, "wingman_last_verification_timestamp_seconds") == shown
    assert gauge(text, "wingman_audit_chain_length") == (await harness.executor.audit.head()).seq
    assert finished.decision == "ok"
