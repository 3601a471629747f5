"""/update <project>: a stack's updates as ONE approval, applied in dependency order, all put back on a failure.

Real parts: a stack made by the real Compose CLI whose services run images from a real
registry (Debian's docker-registry), the update check asking that registry, the whole
executor on its socket, and the chat text the bot renders from the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker.api.client import APIClient

from bot.formatting import approval_text
from executor.deploy import Deployer
from executor.pinning import ImagePin
from executor.stack_update import plan_update, recover_update, steps_of
from tests.docker.compose import Stack, make_stack
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.registry import Registry
from tests.docker.test_executor_actions import finished
from tests.harness import APPROVER, OPERATOR, VIEWER, Harness


@pytest.fixture
def registry_stack(images: BuiltImages, engine: APIClient, resources: Resources, registry: Registry, tmp_path: Path) -> Any:
    """A stack whose db and app run images from the registry (db ← app ← worker), removed afterwards."""
    repos = {"db": registry.repository(), "app": registry.repository()}
    for repository in repos.values():
        registry.push(engine, resources, images.id("v1"), repository, "stable")
    made = make_stack(images, tmp_path / "stack", db=f"{repos['db']}:stable", app=f"{repos['app']}:stable")
    try:
        made.run("up", "-d")
        yield made, repos
    finally:
        made.run("down", "-v", "--remove-orphans", check=False)


async def test_the_second_service_failing_puts_both_back_and_the_message_names_both(
    make_harness: Any, engine: APIClient, resources: Resources, images: BuiltImages, registry: Registry,
    registry_stack: tuple[Stack, dict[str, str]],
) -> None:  # fmt: skip
    stack, repos = registry_stack
    registry.push(engine, resources, images.id("v2"), repos["db"], "stable")  # a good update
    registry.push(engine, resources, images.id("unhealthy"), repos["app"], "stable")  # a bad one
    harness: Harness = await make_harness(
        container_allowlist=[f"stack:{stack.project}"], update_check_at="off", deploy_timeout_seconds=20
    )
    client = harness.client()
    # /updates sees the containers the stack: entry allows (by their labels), not only names.
    listed = await client.call(VIEWER, "updates")
    assert listed.status == "done", listed
    names = {engine.inspect_container(stack.container(s))["Name"].lstrip("/") for s in ("db", "app")}
    assert {u["target"] for u in listed.result["updates"]} == names
    # Announced by the scheduled check and not deployed: the weekly recall keeps them too,
    # though no entry names them (only their stack's labels allow them).
    assert await harness.daemon.scheduler.run_job("updates") is not None
    assert {u["target"] for u in await harness.daemon.scheduler.context.pending_updates()} == names

    asked = await client.call(OPERATOR, "update", {"target": stack.project})
    assert asked.status == "pending", asked
    approval = asked.result["approval"]
    assert approval["target"] == f"stack:{stack.project}"
    plan = approval["args"]["plan"]
    assert [(s["service"], s["current"]) for s in plan] == [("db", f"{repos['db']}:stable"), ("app", f"{repos['app']}:stable")]
    shown = approval_text(approval)
    assert "1. <b>db</b>" in shown and "2. <b>app</b>" in shown and "sha256:" in shown

    assert (await client.call(APPROVER, "approval.approve", {"id": approval["id"]})).status == "done"
    outcome = await finished(harness, approval["id"])
    assert outcome["approval"]["state"] == "failed", outcome
    reason = outcome["outcome"]["reason"]
    assert reason.startswith(f"update of stack {stack.project} failed; every service is back on its previous image"), reason
    assert "db: was updated, rolled back to" in reason and "app: failed, deploy of" in reason, reason
    # Both on their previous image, and still members of the project (Compose lists them).
    assert engine.inspect_container(stack.container("db"))["Image"] == images.id("v1")
    assert engine.inspect_container(stack.container("app"))["Image"] == images.id("v1")
    text = approval_text(outcome["approval"], outcome=outcome["outcome"])
    assert "db: was updated, rolled back to" in text and "app: failed" in text
    # Nothing to update is refused at once, with no approval asked.
    other = await client.call(OPERATOR, "update", {"target": "stack:nosuchproject"})
    assert other.status == "denied"


async def test_an_interrupted_update_is_put_back_at_start_up(
    deployer: Deployer, engine: APIClient, resources: Resources, images: BuiltImages, registry: Registry,
    registry_stack: tuple[Stack, dict[str, str]], make_harness: Any,
) -> None:  # fmt: skip
    stack, repos = registry_stack
    registry.push(engine, resources, images.id("v2"), repos["db"], "stable")
    registry.push(engine, resources, images.id("v3"), repos["app"], "stable")
    harness: Harness = await make_harness(container_allowlist=[f"stack:{stack.project}"], update_check_at="off")
    assert harness.executor.updates is not None
    steps = await plan_update(deployer, harness.executor.updates, stack.project, 0.0)
    args = {"target": f"stack:{stack.project}", "plan": [s.as_json() for s in steps]}
    # The update had deployed db when the executor stopped; app was never reached.
    first = steps_of(args)[0]
    await deployer.deploy(first.container, first.image, requested_by="tg:4", pin=ImagePin.from_json(first.pinned))
    assert engine.inspect_container(first.container)["Image"] == images.id("v2")

    finished_, line = await recover_update(deployer, args, requester="tg:4", since=0.0, refusal=None)
    assert not finished_
    assert line.startswith("interrupted by an executor restart; the stack is back on its previous images"), line
    assert "db: was updated, rolled back to" in line and "app: on" in line
    assert engine.inspect_container(stack.container("db"))["Image"] == images.id("v1")
    assert engine.inspect_container(stack.container("app"))["Image"] == images.id("v1")

    # Had every service been updated, the update is kept: it finished.
    for step in steps_of(args):
        await deployer.deploy(step.container, step.image, requested_by="tg:4", pin=ImagePin.from_json(step.pinned))
    kept, line = await recover_update(deployer, args, requester="tg:4", since=0.0, refusal=None)
    assert kept and line.startswith("completed across an executor restart"), line
    # Policy refusing the update now: nothing is touched.
    await deployer.rollback(steps[1].container, requested_by="tg:9", pin=ImagePin(steps[1].current, "local", steps[1].current_id))
    refused, line = await recover_update(deployer, args, requester="tg:4", since=0.0, refusal="stack:x is not on the container allowlist")
    assert not refused and "not put back, as policy now refuses the update" in line
    assert engine.inspect_container(stack.container("db"))["Image"] == images.id("v2")
