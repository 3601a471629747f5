"""Docker actions through the whole executor: signed request → policy → approval → driver → audit."""

from __future__ import annotations

from typing import Any

import pytest
from docker.api.client import APIClient

from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.harness import ADMIN, APPROVER, OPERATOR, VIEWER, Harness


@pytest.fixture
async def harness(make_harness: Any, resources: Resources) -> Harness:
    return await make_harness(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)


async def finished(harness: Harness, approval_id: str) -> dict[str, Any]:
    """The approval's final event, read from the outbox as the bot reads it; stages seen on the way."""
    client = harness.client()
    stages: list[str] = []
    for _ in range(40):
        events = await client.poll(wait=10)
        for event in events:
            if event["ref"] != approval_id:
                continue
            if event["kind"] == "progress":
                stages.append(event["payload"]["progress"]["stage"])
            if event["kind"] == "approval.finished":
                return {**event["payload"], "stages": stages}
        await client.ack([e["id"] for e in events])
    raise AssertionError(f"approval {approval_id} never finished")


async def approved_run(harness: Harness, action: str, args: dict[str, Any]) -> dict[str, Any]:
    client = harness.client()
    reply = await client.call(OPERATOR, action, args)
    assert reply.status == "pending", reply
    approval_id = reply.result["approval"]["id"]
    assert (await client.call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    return await finished(harness, approval_id)


async def test_status_lists_only_allowlisted_containers(harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    resources.container(images.ref("v1"), "web")
    hidden = engine.create_container(images.ref("v1"), name=f"zz-{resources.prefix}-hidden")
    try:
        reply = await harness.client().call(VIEWER, "status")
        assert reply.status == "done"
        names = [c["name"] for c in reply.result["containers"]]
        assert names == [resources.name("web")]
        assert all("hidden" not in c["summary"] for c in reply.result["containers"])
        denied = await harness.client().call(VIEWER, "status", {"target": f"zz-{resources.prefix}-hidden"})
        assert denied.status == "denied"
    finally:
        engine.remove_container(hidden["Id"], force=True)


async def test_logs_and_restart_run_at_once_for_an_operator(harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    web = resources.container(images.ref("v1"), "web")
    client = harness.client()
    logs = await client.call(OPERATOR, "logs", {"target": resources.name("web"), "lines": 5})
    assert logs.status == "done" and logs.result["name"] == resources.name("web")
    restarted = await client.call(OPERATOR, "restart", {"target": resources.name("web")})
    assert restarted.status == "done", restarted
    assert engine.inspect_container(web["Id"])["State"]["StartedAt"] != web["State"]["StartedAt"]
    decisions = [(e.action, e.decision) for e in await harness.executor.audit.tail(3)]
    assert decisions[-2:] == [("restart", "allowed"), ("restart", "executed")]
    viewer = await client.call(VIEWER, "restart", {"target": resources.name("web")})
    assert viewer.status == "denied"


async def test_deploy_after_approval_changes_the_image_and_shows_progress(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    resources.container(images.ref("v1"), "web")
    outcome = await approved_run(harness, "deploy", {"target": resources.name("web"), "image": images.ref("v2")})
    assert outcome["approval"]["state"] == "done", outcome
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v2")
    assert {"resolving", "starting", "done"} <= set(outcome["stages"])
    executed = [e for e in await harness.executor.audit.tail(10) if e.action == "deploy" and e.decision == "executed"]
    assert len(executed) == 1 and executed[0].params["approved_by"] == f"tg:{APPROVER}"


async def test_a_failed_deploy_says_it_failed_and_what_it_rolled_back_to(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    resources.container(images.ref("v1"), "web")
    outcome = await approved_run(harness, "deploy", {"target": resources.name("web"), "image": images.ref("unhealthy")})
    assert outcome["approval"]["state"] == "failed"
    assert outcome["outcome"]["status"] == "failed"
    assert "failed" in outcome["outcome"]["reason"] and "rolled back to" in outcome["outcome"]["reason"]
    assert outcome["outcome"]["result"]["rolled_back_to"]["id"] == images.id("v1")
    state = engine.inspect_container(resources.name("web"))
    assert state["Image"] == images.id("v1") and state["State"]["Running"]


async def test_rollback_returns_to_the_previous_image(harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    resources.container(images.ref("v1"), "web")
    await approved_run(harness, "deploy", {"target": resources.name("web"), "image": images.ref("v2")})
    outcome = await approved_run(harness, "rollback", {"target": resources.name("web")})
    assert outcome["approval"]["state"] == "done", outcome
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v1")


@pytest.mark.parametrize("name", ["web;rm -rf /", "../web", "x" * 300, "$(id)"])
async def test_names_with_shell_or_path_characters_are_refused_and_audited(harness: Harness, name: str) -> None:
    reply = await harness.client().call(OPERATOR, "restart", {"target": name})
    assert reply.status == "denied"
    entry = (await harness.executor.audit.tail(1))[0]
    assert (entry.action, entry.decision) == ("restart", "denied")


async def test_an_unreachable_engine_is_a_clear_answer_and_the_executor_keeps_serving(
    make_harness: Any, resources: Resources, socket_dir: Any
) -> None:
    harness = await make_harness(container_allowlist=[f"{resources.prefix}-*"], docker_host=f"unix://{socket_dir}/no-docker.sock")
    client = harness.client()
    reply = await client.call(VIEWER, "status")
    assert (reply.http_status, reply.status) == (503, "unavailable") and "Docker" in reply.reason
    assert (await client.call(ADMIN, "whoami")).status == "done"
