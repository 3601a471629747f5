"""Updates in the chat: the real bot against the Bot API double, a real executor, the real
engine and a real registry (Debian's docker-registry on localhost).

The scheduled check's one message, its Deploy button (an ordinary deploy by whoever
tapped, through approval, for exactly the announced digest), and ``/updates`` on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker.api.client import APIClient

from tests.bot.conftest import TEAM, World
from tests.bot.test_fleet import silent_socket  # noqa: F401 - a fixture: an executor socket nobody answers on
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.registry import Registry
from tests.doubles.telegram import StoredMessage
from tests.harness import APPROVER, APPROVER2, VIEWER


@pytest.fixture
async def update_world(make_world: Any, resources: Resources) -> World:
    return await make_world(container_allowlist=[f"{resources.prefix}-*"], update_check_at="off", deploy_timeout_seconds=20)


def start(resources: Resources, image: str, suffix: str, labels: dict[str, str] | None = None) -> str:
    """A container with no network (an update check and a deploy need none)."""
    resources.container(image, suffix, labels=labels or {}, host_config=resources.api.create_host_config(network_mode="none"))
    return resources.name(suffix)


def updates_messages(world: World) -> list[StoredMessage]:
    return [m for m in world.double.chat(TEAM) if m.from_bot and ("available" in m.text or "No updates" in m.text)]


async def tap(world: World, user: int, message: StoredMessage, data: str) -> str:
    before = len(world.double.callback_answers)
    world.double.press(user, message, data)
    answers = await world.double.wait_for(
        lambda: world.double.callback_answers[before:] or None, timeout=30, what=f"the answer to {user}'s tap"
    )
    return str(answers[0].text)


async def test_a_scheduled_check_posts_one_message_and_deploy_goes_through_approval_to_the_pushed_digest(
    update_world: World, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    world = update_world
    repository = registry.repository()
    running = registry.push(engine, resources, images.id("v1"), repository, "stable")
    web = start(resources, f"{repository}:stable", "web")
    pushed = registry.push(engine, resources, images.id("v2"), repository, "stable")  # same tag, new image
    resources.tags.append(f"{repository}@{pushed}")

    assert await world.harness.daemon.scheduler.run_job("updates") is not None
    [message] = await world.double.wait_for(lambda: updates_messages(world) or None, timeout=30, what="the updates message")
    lines = message.text.splitlines()
    assert lines[0] == "📦 1 update available (1 containers checked)"
    short = lambda d: f"sha256:{d[7:11]}…{d[-4:]}"  # noqa: E731
    assert lines[1].startswith(f"1. {web} · stable (new image) · {short(running)} → {short(pushed)} · built ")
    [button] = message.buttons
    assert button["text"] == f"🚀 Deploy {web} stable"
    assert len(button["callback_data"].encode()) <= 64

    # A viewer's tap is refused by the executor, as a /deploy of theirs would be.
    answer = await tap(world, VIEWER, message, button["callback_data"])
    assert answer.startswith("deploy needs the operator role or higher; you are a viewer"), answer
    # An approver taps Deploy: an ordinary deploy request of theirs, bound to the pushed digest.
    answer = await tap(world, APPROVER, message, button["callback_data"])
    assert answer.startswith("Deploy requested: request ") and answer.endswith(" waits for approval."), answer
    approval_id = answer.removeprefix("Deploy requested: request ").split()[0]
    request = await world.approval_message(approval_id)
    assert f"Requested by user{APPROVER}" in request.text and f"{repository}:stable@{pushed}" in request.text
    # Bound to that digest: the image pushed is still here (a push keeps it), so by its id.
    assert (await world.harness.executor.approvals.get(approval_id)).args["pinned"]["id"] in (pushed, images.id("v2"))
    # Their own Approve does not count; another approver's does.
    assert await tap(world, APPROVER, request, request.button("✅ Approve")["callback_data"]) == "you cannot approve your own request"
    assert await tap(world, APPROVER2, request, request.button("✅ Approve")["callback_data"]) == "Approved: running now."
    await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if f"Request {approval_id}" in m.text and "✅ done" in m.text), None),
        timeout=60, what="the deploy to finish",
    )  # fmt: skip
    container = engine.inspect_container(web)
    assert container["Image"] == images.id("v2")
    assert f"{repository}@{pushed}" in engine.inspect_image(container["Image"])["RepoDigests"]

    # The next check announces nothing (no announcement in the chain, so no outbox event and
    # no message); the button of the deployed update says it is no longer pending.
    announced = lambda entries: [e for e in entries if e.action == "updates.announce"]  # noqa: E731
    before = len(announced(await world.harness.executor.audit.tail(100)))
    assert await world.harness.daemon.scheduler.run_job("updates") is not None
    assert len(announced(await world.harness.executor.audit.tail(100))) == before == 1
    assert "no longer pending" in await tap(world, APPROVER, message, button["callback_data"])
    assert updates_messages(world) == [message]


async def test_updates_on_demand_answer_in_one_message(
    update_world: World, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    world = update_world
    repository = registry.repository()
    for variant, tag in (("v1", "1.2.3"), ("v2", "1.2.4"), ("v3", "1.3.0"), ("nohc", "2.0.0")):
        registry.push(engine, resources, images.id(variant), repository, tag)
    web = start(resources, f"{repository}:1.2.3", "web", {"wingman.update": "minor"})
    db = start(resources, f"{repository}:2.0.0", "db", {"wingman.update": "minor"})
    [reply] = await world.reply_to(VIEWER, "/updates")
    lines = reply.text.splitlines()
    assert lines[0] == "📦 1 update available (2 containers checked)", reply.text
    assert lines[1].endswith("built just now") or " · built " in lines[1]
    assert lines[1].startswith(f"1. {web} · 1.2.3 → 1.3.0 · ")  # the default policy: minor
    assert db not in reply.text
    assert [b["text"] for b in reply.buttons] == [f"🚀 Deploy {web} 1.3.0"]
    [usage] = await world.reply_to(VIEWER, "/updates now")
    assert usage.text.startswith("Usage: /updates")


async def test_the_weekly_report_recalls_updates_left_pending_with_their_buttons(
    update_world: World, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    world = update_world
    repository = registry.repository()
    registry.push(engine, resources, images.id("v1"), repository, "stable")
    web = start(resources, f"{repository}:stable", "web")
    registry.push(engine, resources, images.id("v2"), repository, "stable")
    assert await world.harness.daemon.scheduler.run_job("updates") is not None
    [announced] = await world.double.wait_for(lambda: updates_messages(world) or None, timeout=30, what="the updates message")

    result = await world.harness.daemon.scheduler.run_job("weekly-report")
    assert result is not None and result.params["pending_updates"] == 1
    assert f"Updates announced and not deployed yet: 1\n  {web}: stable (new image), announced " in str(result.text)
    recall = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and "announced and not deployed yet" in m.text), None),
        timeout=30, what="the weekly recall",
    )  # fmt: skip
    assert recall.text.splitlines()[0] == "⏳ 1 update announced and not deployed yet"
    assert recall.text.splitlines()[1].startswith(f"1. {web} · stable (new image) · ")
    assert recall.buttons == announced.buttons  # the same Deploy button: the same update
    answer = await tap(world, APPROVER, recall, recall.buttons[0]["callback_data"])
    assert answer.startswith("Deploy requested: request "), answer


async def test_with_several_hosts_one_message_names_each_host_and_a_tap_goes_to_that_host(
    make_fleet: Any, silent_socket: Path, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    world = await make_fleet(
        {
            "home": {"container_allowlist": [f"{resources.prefix}-web"], "update_check_at": "off", "deploy_timeout_seconds": 20},
            "nas": {"container_allowlist": [f"{resources.prefix}-db"], "update_check_at": "off", "deploy_timeout_seconds": 20},
        },
        extra={"attic": silent_socket},
    )  # fmt: skip
    repository = registry.repository()
    registry.push(engine, resources, images.id("v1"), repository, "stable")
    web = start(resources, f"{repository}:stable", "web")
    db = start(resources, f"{repository}:stable", "db")
    pushed = registry.push(engine, resources, images.id("v2"), repository, "stable")
    resources.tags.append(f"{repository}@{pushed}")

    [reply] = await world.reply_to(VIEWER, "/updates")
    lines = reply.text.splitlines()
    assert lines[0] == "📦 2 updates available (2 containers checked)", reply.text
    assert lines[1].startswith(f"1. {web}@home · stable (new image) · ") and lines[2].startswith(f"2. {db}@nas · stable (new image) · ")
    assert lines[3].startswith("⚠️ attic: not answering (since ")
    assert [b["text"] for b in reply.buttons] == [f"🚀 Deploy {web}@home stable", f"🚀 Deploy {db}@nas stable"]
    # Deploy on nas: the request is made there, by whoever tapped, and nothing is asked of home.
    before = await world.hosts["home"].executor.audit.count()
    answer = await tap(world, APPROVER, reply, reply.buttons[1]["callback_data"])
    assert answer.startswith("Deploy requested: request "), answer
    approval_id = answer.removeprefix("Deploy requested: request ").split()[0]
    assert (await world.hosts["nas"].executor.approvals.get(approval_id)).args["target"] == db
    assert await world.hosts["home"].executor.audit.count() == before
