"""One bot, two executors, each with its own Docker engine: executor a on the default
engine, executor b on a second ``dockerd`` (tests/docker/engines.py). A container with the
same name runs on both; what changed is what each engine says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from docker.api.client import APIClient

from bot.handlers import ApprovalButton, HostChoice
from tests.bot.conftest import TEAM, FleetWorld, World
from tests.docker.engine import Resources
from tests.docker.engines import SecondEngine
from tests.docker.images import BuiltImages
from tests.doubles.telegram import StoredMessage
from tests.harness import APPROVER, OPERATOR, VIEWER


def _bot_messages(world: World, needle: str) -> list[StoredMessage]:
    return [m for m in world.double.chat(TEAM) if m.from_bot and needle in m.text]


async def request_approval(world: World, user: int, text: str) -> str:
    [reply] = await world.reply_to(user, text)
    assert "needs approval" in reply.text, reply.text
    return reply.text.split("(request ")[1].split(")")[0]


async def tap(world: World, user: int, message: StoredMessage, data: str) -> str:
    before = len(world.double.callback_answers)
    world.double.press(user, message, data)
    answers = await world.double.wait_for(lambda: world.double.callback_answers[before:] or None, timeout=30, what="the tap's answer")
    return str(answers[0].text)


async def approve_and_wait(world: World, reference: str) -> StoredMessage:
    approval_id, host = reference.split("@")
    message = await world.approval_message(reference)
    assert await tap(world, APPROVER, message, ApprovalButton(op="approve", id=approval_id, host=host).pack()) == "Approved: running now."
    return await world.double.wait_for(
        lambda: next((m for m in _bot_messages(world, f"Request {reference}") if "✅ done" in m.text), None),
        timeout=60,
        what=f"{reference} done",
    )


@pytest.fixture
async def two_engines(
    make_fleet: Callable[..., Awaitable[FleetWorld]], resources: Resources, images: BuiltImages, engine: APIClient, second_engine: SecondEngine
) -> AsyncIterator[tuple[FleetWorld, Resources, Resources]]:
    """Executors ``a`` (the default engine) and ``b`` (the second engine). A container
    named ``web`` (the test's unique name) runs on both, ``solo`` only on a."""
    on_b = Resources(second_engine.api, prefix=resources.prefix)
    none = {"host_config": engine.create_host_config(network_mode="none")}
    resources.container(images.ref("v1"), "web", **none)
    resources.container(images.ref("v1"), "solo", **none)
    on_b.container(images.ref("v1"), "web", host_config=second_engine.api.create_host_config(network_mode="none"))
    allow = {"container_allowlist": [f"{resources.prefix}-*"], "deploy_timeout_seconds": 20}
    world = await make_fleet({"a": allow, "b": {**allow, "docker_host": second_engine.host}})
    try:
        yield world, resources, on_b
    finally:
        on_b.cleanup()


async def test_status_groups_the_containers_of_both_engines(two_engines: tuple[FleetWorld, Resources, Resources]) -> None:
    world, on_a, _ = two_engines
    [reply] = await world.reply_to(VIEWER, "/status")
    a, b = reply.text.split("\n\n")
    assert a.startswith("a\n") and on_a.name("web") in a and on_a.name("solo") in a
    assert b.startswith("b\n") and on_a.name("web") in b and on_a.name("solo") not in b


async def test_deploy_web_at_b_changes_only_engine_b(
    two_engines: tuple[FleetWorld, Resources, Resources], images: BuiltImages, engine: APIClient, second_engine: SecondEngine
) -> None:
    world, on_a, _ = two_engines
    web = on_a.name("web")
    reference = await request_approval(world, OPERATOR, f"/deploy {web}@b {images.ref('v2')}")
    assert reference.endswith("@b")
    message = await world.approval_message(reference)
    assert f"deploy {web}@b → {images.ref('v2')}" in message.text
    done = await approve_and_wait(world, reference)
    assert done.buttons == []
    assert second_engine.api.inspect_container(web)["Image"] == images.id("v2")
    assert engine.inspect_container(web)["Image"] == images.id("v1")
    entries = await world.hosts["b"].executor.audit.tail(30)
    assert any(e.action == "deploy" and e.decision == "executed" for e in entries)
    assert not any(e.action == "deploy" for e in await world.hosts["a"].executor.audit.tail(30))


async def test_a_name_on_one_host_needs_no_suffix_and_deploys_there(
    two_engines: tuple[FleetWorld, Resources, Resources], images: BuiltImages, engine: APIClient
) -> None:
    world, on_a, _ = two_engines
    reference = await request_approval(world, OPERATOR, f"/deploy {on_a.name('solo')} {images.ref('v2')}")
    assert reference.endswith("@a")
    await approve_and_wait(world, reference)
    assert engine.inspect_container(on_a.name("solo"))["Image"] == images.id("v2")


async def test_a_name_on_both_hosts_asks_which_and_only_the_asker_chooses(
    two_engines: tuple[FleetWorld, Resources, Resources], engine: APIClient, second_engine: SecondEngine
) -> None:
    world, on_a, _ = two_engines
    web = on_a.name("web")
    started_a = engine.inspect_container(web)["State"]["StartedAt"]
    started_b = second_engine.api.inspect_container(web)["State"]["StartedAt"]
    [question] = await world.reply_to(OPERATOR, f"/restart {web}")
    assert question.text == f"{web} is on a and b: which one?"
    assert [b["text"] for b in question.buttons] == ["a", "b"]
    assert await tap(world, VIEWER, question, HostChoice(host="b").pack()) == "Only the person who sent the command can choose."
    assert await tap(world, OPERATOR, question, HostChoice(host="b").pack()) == "On b."
    answer = await world.double.wait_for(
        lambda: next((m for m in _bot_messages(world, "🖥 b\n") if "restart" in m.text.lower() or "✅" in m.text), None),
        timeout=30,
        what="the restart's answer",
    )
    assert answer.text.startswith("🖥 b\n✅")
    assert second_engine.api.inspect_container(web)["State"]["StartedAt"] != started_b
    assert engine.inspect_container(web)["State"]["StartedAt"] == started_a
    edited = world.double.chat(TEAM)[[m.message_id for m in world.double.chat(TEAM)].index(question.message_id)]
    assert edited.text.endswith("which one? → b") and edited.buttons == []


async def test_an_approval_on_a_is_voted_there_whatever_b_holds(
    two_engines: tuple[FleetWorld, Resources, Resources], images: BuiltImages, engine: APIClient, second_engine: SecondEngine
) -> None:
    """Both hosts hold a request for the same name: each button votes on its own host."""
    world, on_a, _ = two_engines
    web = on_a.name("web")
    on_b = await request_approval(world, OPERATOR, f"/deploy {web}@b {images.ref('v2')}")
    on_a_ref = await request_approval(world, OPERATOR, f"/deploy {web}@a {images.ref('v2')}")
    await approve_and_wait(world, on_a_ref)
    assert engine.inspect_container(web)["Image"] == images.id("v2")
    assert second_engine.api.inspect_container(web)["Image"] == images.id("v1")  # b's still waits
    [pending] = await world.reply_to(VIEWER, "/pending")
    assert on_b in pending.text and on_a_ref not in pending.text
