"""Compose stacks through the whole executor, on stacks made by the real Compose CLI.

/status groups by project; `stack:` allowlist entries; a deploy of one service keeps it a
member of its project (Compose still lists it, `down` removes it); /restart of a stack
restarts its services dependencies first, as the engine's own events show.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from docker.api.client import APIClient

from tests.docker.compose import Stack, stack  # noqa: F401 - the fixture
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.test_executor_actions import approved_run
from tests.harness import OPERATOR, VIEWER, Harness


@pytest.fixture
async def harness(make_harness: Any, resources: Resources, stack: Stack) -> Harness:  # noqa: F811
    return await make_harness(
        container_allowlist=[f"{resources.prefix}-*", f"stack:{stack.project}"], deploy_timeout_seconds=20
    )


def _name(engine: APIClient, container_id: str) -> str:
    return str(engine.inspect_container(container_id)["Name"]).lstrip("/")


async def test_status_groups_by_project_and_shows_one_stack(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, stack: Stack  # noqa: F811
) -> None:
    resources.container(images.ref("nohc"), "loose")
    client = harness.client()
    reply = await client.call(VIEWER, "status")
    assert reply.status == "done", reply
    by_name = {c["name"]: c for c in reply.result["containers"]}
    members = {_name(engine, stack.container(s)): s for s in ("db", "app", "worker")}
    assert set(by_name) == {*members, resources.name("loose")}
    for name, service in members.items():
        assert (by_name[name]["project"], by_name[name]["service"]) == (stack.project, service)
    assert by_name[resources.name("loose")]["project"] is None

    # The bare project name means the stack (no container has that name); stack:<project> too.
    for target in (stack.project, f"stack:{stack.project}"):
        one = await client.call(VIEWER, "status", {"target": target})
        assert one.status == "done", one
        assert one.result["project"] == stack.project
        assert {c["name"] for c in one.result["containers"]} == set(members)
    # A container's own name still means that container.
    db = next(n for n, s in members.items() if s == "db")
    single = await client.call(VIEWER, "status", {"target": db})
    assert [c["name"] for c in single.result["containers"]] == [db]


async def test_a_stack_entry_allows_its_containers_after_compose_recreates_them(
    make_harness: Any, engine: APIClient, stack: Stack  # noqa: F811
) -> None:
    harness = await make_harness(container_allowlist=[f"stack:{stack.project}"])
    client = harness.client()
    before = stack.container("worker")
    stack.run("up", "-d", "--force-recreate", "--no-deps", "worker")
    after = stack.container("worker")
    assert after != before
    reply = await client.call(OPERATOR, "logs", {"target": _name(engine, after)})
    assert reply.status == "done", reply
    # Another project is not allowed by this one's entry.
    other = await client.call(VIEWER, "status", {"target": "stack:someoneelse"})
    assert other.status == "denied" and "not on the container allowlist" in other.reason


async def test_deploying_one_service_keeps_it_in_its_project(
    harness: Harness, images: BuiltImages, engine: APIClient, stack: Stack  # noqa: F811
) -> None:
    old_id = stack.container("worker")
    old = engine.inspect_container(old_id)
    name = _name(engine, old_id)
    outcome = await approved_run(harness, "deploy", {"target": name, "image": images.ref("v2")})
    assert outcome["approval"]["state"] == "done", outcome
    reason = outcome["outcome"]["reason"]
    # The compose file was read, not changed: it still names nohc, and the outcome says so.
    assert f"still names {images.ref('nohc')} for worker" in reason, reason
    assert images.ref("nohc") in stack.file.read_text()

    [new_id] = stack.run("ps", "-q", "worker").split()
    new = engine.inspect_container(new_id)
    assert new_id != old_id and new["Image"] == images.id("v2") and _name(engine, new_id) == name
    compose_labels = {k: v for k, v in old["Config"]["Labels"].items() if k.startswith("com.docker.compose.")}
    assert compose_labels and all(new["Config"]["Labels"].get(k) == v for k, v in compose_labels.items())
    old_nets = {n: set(e["Aliases"] or []) - {old_id[:12]} for n, e in old["NetworkSettings"]["Networks"].items()}
    new_nets = {n: set(e["Aliases"] or []) - {new_id[:12]} for n, e in new["NetworkSettings"]["Networks"].items()}
    assert new_nets == old_nets and any("worker" in a for a in new_nets.values())

    stack.run("down")
    left = engine.containers(all=True, filters={"label": f"com.docker.compose.project={stack.project}"})
    assert left == []


async def test_restarting_a_stack_goes_dependencies_first(
    harness: Harness, engine: APIClient, stack: Stack  # noqa: F811
) -> None:
    ids = {service: stack.container(service) for service in ("db", "app", "worker")}
    since_ns = time.time_ns()
    reply = await harness.client().call(OPERATOR, "restart", {"target": stack.project})
    assert reply.status == "done", reply
    assert reply.result["order"] == ["db", "app", "worker"]
    # Debian's docker-compose 1.29 writes no depends_on label: the order came from the file.
    assert reply.result["order_from"] in ("the compose file", "the depends_on labels")
    states = {s["service"]: (s["ok"], s["state"]) for s in reply.result["services"]}
    assert states == {"db": (True, "running (healthy)"), "app": (True, "running (healthy)"), "worker": (True, "running")}

    started: list[str] = []
    events = engine.events(
        since=since_ns // 10**9 - 1, until=int(time.time()) + 1, decode=True,
        filters={"event": "start", "label": f"com.docker.compose.project={stack.project}"},
    )  # fmt: skip
    for event in events:
        if int(event["timeNano"]) >= since_ns:  # not the stack's own `up`
            started.append(event["id"])
    order = [next(s for s, i in ids.items() if i == container) for container in started if container in ids.values()]
    assert order == ["db", "app", "worker"], order
