"""Approve what you see: a deploy or rollback is bound to the image itself when it is requested.

Through the whole executor, against a real registry (Debian's docker-registry on localhost)
for the pull path: the approval carries the local image id or the registry's digest, that
exact image runs even when the tag moved after approval, and a reference that cannot be
resolved is refused before any approver is asked.
"""

from __future__ import annotations

from typing import Any

import pytest
from docker.api.client import APIClient

from tests.docker.engine import Resources, free_port
from tests.docker.images import BuiltImages
from tests.docker.registry import Registry
from tests.docker.test_executor_actions import finished
from tests.harness import APPROVER, OPERATOR, Harness


@pytest.fixture
async def harness(make_harness: Any, resources: Resources) -> Harness:
    return await make_harness(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)


async def request(harness: Harness, action: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = await harness.client().call(OPERATOR, action, args)
    assert reply.status == "pending", reply
    return dict(reply.result["approval"])


async def approve(harness: Harness, approval: dict[str, Any]) -> dict[str, Any]:
    assert (await harness.client().call(APPROVER, "approval.approve", {"id": approval["id"]})).status == "done"
    return await finished(harness, approval["id"])


async def audited_pin(harness: Harness, approval_id: str) -> dict[str, Any]:
    entries = await harness.executor.audit.tail(20)
    [asked] = [e for e in entries if e.decision == "needs_approval" and e.params.get("approval") == approval_id]
    return dict(asked.params["pinned"])


async def test_a_local_image_is_bound_by_id_and_runs_even_when_the_tag_moved(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    resources.container(images.ref("v1"), "web")
    moving = resources.tag(images.id("v2"), images.repository, f"{resources.prefix}-next")
    approval = await request(harness, "deploy", {"target": resources.name("web"), "image": moving})
    pinned = {"image": moving, "source": "local", "id": images.id("v2")}
    assert approval["args"]["pinned"] == pinned
    assert await audited_pin(harness, approval["id"]) == pinned
    # The tag moves to v3 after the request: the approved v2 runs anyway, and the outcome says so.
    resources.tag(images.id("v3"), images.repository, f"{resources.prefix}-next")
    outcome = await approve(harness, approval)
    assert outcome["approval"]["state"] == "done", outcome
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v2")
    assert "has moved since the request" in outcome["outcome"]["reason"]
    executed = [e for e in await harness.executor.audit.tail(10) if e.action == "deploy" and e.decision == "executed"]
    assert executed[0].params["pinned"] == pinned


async def test_a_registry_image_is_bound_by_digest_and_the_approved_digest_runs_after_the_tag_moved(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    repository = registry.repository()
    registry.push(engine, resources, images.id("v1"), repository, "v1")
    resources.container(f"{repository}:v1", "web")
    approved_digest = registry.push(engine, resources, images.id("v2"), repository, "app")
    registry.forget_locally(engine, f"{repository}:app")  # only the registry knows the tag now
    approval = await request(harness, "deploy", {"target": resources.name("web"), "image": f"{repository}:app"})
    pinned = {"image": f"{repository}:app", "source": "registry", "id": approved_digest}
    assert approval["args"]["pinned"] == pinned
    assert await audited_pin(harness, approval["id"]) == pinned
    # Someone pushes v3 under the same tag between the request and its approval.
    moved_digest = registry.push(engine, resources, images.id("v3"), repository, "app")
    registry.forget_locally(engine, f"{repository}:app")
    assert moved_digest != approved_digest
    resources.tags.append(f"{repository}@{approved_digest}")  # the pull's digest reference
    outcome = await approve(harness, approval)
    assert outcome["approval"]["state"] == "done", outcome
    web = engine.inspect_container(resources.name("web"))
    assert web["Image"] == images.id("v2") and web["Config"]["Image"] == f"{repository}:app@{approved_digest}"
    assert "has moved since the request" in outcome["outcome"]["reason"]


@pytest.mark.parametrize("where", ["unknown tag", "unreachable registry"])
async def test_an_unresolvable_image_is_refused_before_anyone_is_asked(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry, where: str
) -> None:
    resources.container(images.ref("v1"), "web")
    image = f"{registry.repository()}:nosuchtag" if where == "unknown tag" else f"127.0.0.1:{free_port()}/nobody/svc:1"
    client = harness.client()
    reply = await client.call(OPERATOR, "deploy", {"target": resources.name("web"), "image": image})
    assert reply.status == "denied" and reply.reason.startswith(f"image {image} is not on this host")
    assert "\n" not in reply.reason
    entry = (await harness.executor.audit.tail(1))[0]
    assert (entry.action, entry.decision, entry.outcome) == ("deploy", "refused", reply.reason)
    assert (await client.call(OPERATOR, "pending")).result["approvals"] == []
    assert [e for e in await client.poll(wait=0) if e["kind"] == "approval.requested"] == []


async def test_a_rollback_is_bound_to_the_previous_image_when_requested(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    resources.container(images.ref("v1"), "web")
    await approve(harness, await request(harness, "deploy", {"target": resources.name("web"), "image": images.ref("v2")}))
    approval = await request(harness, "rollback", {"target": resources.name("web")})
    assert approval["args"]["pinned"] == {"image": images.ref("v1"), "source": "local", "id": images.id("v1")}
    outcome = await approve(harness, approval)
    assert outcome["approval"]["state"] == "done", outcome
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v1")


async def test_a_client_cannot_supply_the_pin_itself(harness: Harness, resources: Resources, images: BuiltImages) -> None:
    resources.container(images.ref("v1"), "web")
    forged = {"image": images.ref("v2"), "source": "local", "id": images.id("v3")}
    args = {"target": resources.name("web"), "image": images.ref("v2"), "pinned": forged}
    reply = await harness.client().call(OPERATOR, "deploy", args)
    assert reply.status == "denied" and "args.pinned" in reply.reason
