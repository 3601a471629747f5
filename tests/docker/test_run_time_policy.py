"""Policy decided again when anything acts, and every approved request ending in a final state.

An approval outlives the policy it was asked under (it waits for minutes and survives a
restart): when it is finally approved, the executor decides it again under the policy it
holds then, and a narrower one refuses it at run time without touching the container. A
fault nobody planned for ends the request ``failed``, audited, with the message edited.
"""

from __future__ import annotations

from typing import Any

import pytest
from docker.api.client import APIClient
from sqlalchemy import text

from audit import verify_chain
from executor import actions
from executor.errors import Refused
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.test_executor_actions import finished
from tests.harness import APPROVER, OPERATOR, Harness


@pytest.fixture
async def harness(make_harness: Any, resources: Resources) -> Harness:
    return await make_harness(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)


async def request(harness: Harness, action: str, args: dict[str, Any]) -> str:
    reply = await harness.client().call(OPERATOR, action, args)
    assert reply.status == "pending", reply
    return str(reply.result["approval"]["id"])


async def restart_with(harness: Harness, **changes: Any) -> None:
    """Restart the executor with changed settings, as an operator does after editing them."""
    await harness.stop()
    harness.settings = harness.settings.model_copy(update=changes)
    await harness.start()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"container_allowlist": ["elsewhere-*"]}, "is not on the container allowlist"),
        ({"operators": []}, "the requester tg:4 no longer has a role"),
        ({"read_only": True}, "read-only mode: only reads are allowed"),
    ],
    ids=["allowlist", "role", "read-only"],
)
async def test_a_restart_with_a_narrower_policy_refuses_the_approved_request_at_run_time(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, changes: dict[str, Any], reason: str
) -> None:
    web = resources.container(images.ref("v1"), "web")
    approval_id = await request(harness, "stop", {"target": resources.name("web")})
    await restart_with(harness, **changes)

    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == "refused"
    assert outcome["outcome"]["reason"].startswith("refused at run time: ") and reason in outcome["outcome"]["reason"]
    assert engine.inspect_container(web["Id"])["State"]["Running"], "the container was stopped anyway"
    stored = await harness.executor.approvals.get(approval_id)
    assert stored.state == "refused" and stored.result == outcome["outcome"]["reason"]
    audited = [e for e in await harness.executor.audit.tail(10) if e.action == "stop" and e.decision == "refused"]
    assert [e.outcome for e in audited] == [outcome["outcome"]["reason"]]
    assert (await verify_chain(harness.executor.audit, None, {})).ok


async def test_an_unchanged_policy_after_a_restart_still_runs_it(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    web = resources.container(images.ref("v1"), "web")
    approval_id = await request(harness, "stop", {"target": resources.name("web")})
    await restart_with(harness)
    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == "done", outcome
    assert not engine.inspect_container(web["Id"])["State"]["Running"]


async def test_a_database_fault_in_the_middle_of_an_approved_request_still_ends_it(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    """A real fault on a real path: the deploy reads the deploy history, whose table is gone."""
    web = resources.container(images.ref("v1"), "web")
    approval_id = await request(harness, "deploy", {"target": resources.name("web"), "image": images.ref("v2")})
    async with harness.executor.approvals.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE deployments RENAME TO deployments_gone"))

    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == "failed"
    assert outcome["outcome"]["status"] == "failed"
    assert "the executor's database failed while it ran" in outcome["outcome"]["reason"]
    assert engine.inspect_container(web["Id"])["State"]["Running"]
    assert (await harness.executor.approvals.get(approval_id)).state == "failed"
    assert engine.inspect_container(web["Id"])["Image"] == images.id("v1")
    audited = [(e.decision, e.outcome) for e in await harness.executor.audit.tail(10) if e.action == "deploy"]
    assert ("failed", outcome["outcome"]["reason"]) in audited
    assert (await verify_chain(harness.executor.audit, None, {})).ok


async def test_every_driver_call_is_decided_again_right_before_it(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    """Whoever calls a handler, a container outside the allowlist is never touched."""
    outside = engine.create_container(images.ref("v1"), name=f"zz-{resources.prefix}-outside")
    try:
        engine.start(outside["Id"])
        before = engine.inspect_container(outside["Id"])["State"]["StartedAt"]
        for action in ("restart", "stop", "logs", "deploy", "rollback"):
            call = actions.Call(user_id=OPERATOR, args={"target": f"zz-{resources.prefix}-outside", "image": images.ref("v2")})
            with pytest.raises(Refused, match="not on the container allowlist"):
                await actions.HANDLERS[action](harness.executor.action_context(), call)
        state = engine.inspect_container(outside["Id"])["State"]
        assert state["Running"] and state["StartedAt"] == before
    finally:
        engine.remove_container(outside["Id"], force=True)


def test_every_catalogue_action_has_a_handler() -> None:
    from policy import CATALOGUE

    assert set(CATALOGUE) == set(actions.HANDLERS)


async def test_a_container_removed_under_an_approved_request_ends_it_failed(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    """A real Docker fault: the engine no longer has the container when the approved stop runs."""
    web = resources.container(images.ref("v1"), "web")
    approval_id = await request(harness, "stop", {"target": resources.name("web")})
    engine.remove_container(web["Id"], force=True)
    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == "failed" and outcome["outcome"]["status"] != "done", outcome
    assert resources.name("web") in outcome["outcome"]["reason"]
    audited = [(e.decision, e.outcome) for e in await harness.executor.audit.tail(10) if e.action == "stop"]
    assert audited[-1][1] == outcome["outcome"]["reason"] and audited[-1][0] in ("failed", "refused")
