"""Alerts in the chat from a real engine's events: one message per incident, the fix one tap away.

The real executor follows the real engine; the real bot posts and edits through the Bot
API double. Waiting is on conditions (the message, its edit, the engine's state).
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

from docker.api.client import APIClient

from bot.alerts import AlertButton
from executor.alerts import Timing
from tests.bot.conftest import TEAM, World
from tests.bot.test_approvals import answer_to_tap, request_approval
from tests.docker.engine import Resources
from tests.docker.engines import OwnEngine
from tests.docker.images import BuiltImages, build_images
from tests.doubles.telegram import StoredMessage
from tests.harness import OPERATOR, VIEWER

# Short paces: a message gathers for half a second; running 1.5 s on end is recovered.
FAST = Timing(group=0.5, recovery=1.5, sweep=0.2)
# Exits with code 3 the first time (printing a secret two ways), runs for good once restarted.
CRASH_ONCE = [
    "sh", "-c",
    "if [ -e /ran ]; then trap 'exit 0' TERM; sleep 3600 & wait; exit 0; fi; touch /ran; "
    "echo starting; echo connecting with $API_TOKEN; echo DB_PASSWORD=hunter2; echo 'fatal: <no config>'; exit 3",
]  # fmt: skip


async def alert_world(make_world: Any, resources: Resources, **settings: Any) -> World:
    world = await make_world(container_allowlist=[f"{resources.prefix}-*"], **settings)
    alerts = world.harness.daemon.alerts
    alerts.timing = FAST
    await world.double.wait_for(lambda: alerts.connections >= 1 or None, timeout=30, what="the alert watcher following the engine")
    return world


def offline(engine: APIClient, **options: Any) -> dict[str, Any]:
    """No network: these containers need none, and the engine's default bridge is shared."""
    return dict(engine.create_host_config(network_mode="none", **options))


def alert_messages(world: World, name: str) -> list[StoredMessage]:
    return [
        m for m in world.double.chat(TEAM)
        if m.from_bot and m.text.startswith(("🚨", "✅", "🗑")) and re.search(rf"(^|\s){re.escape(name)} ", m.text)
    ]  # fmt: skip


async def alert_saying(world: World, name: str, words: str, timeout: float = 30) -> StoredMessage:
    return await world.double.wait_for(
        lambda: next((m for m in alert_messages(world, name) if words in m.text), None),
        timeout=timeout, what=f"an alert about {name} saying {words!r}",
    )  # fmt: skip


def press(world: World, user: int, message: StoredMessage, op: str, target: str) -> None:
    world.double.press(user, message, AlertButton(op=op, target=target).pack())


async def tap_answer(world: World, user: int, message: StoredMessage, op: str, target: str) -> str:
    before = len(world.double.callback_answers)
    press(world, user, message, op, target)
    answers = await world.double.wait_for(lambda: world.double.callback_answers[before:] or None, timeout=30, what=f"the answer to {op}")
    return str(answers[0].text)


async def audit_actions(world: World, target: str) -> list[str]:
    entries = await world.harness.executor.audit.tail(500)
    return [e.action for e in entries if e.target == target and e.action.startswith("alert.")]


async def test_an_exit_is_one_message_with_its_code_and_logs_and_restart_fixes_it(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources)
    name = resources.name("web")
    created = resources.container(
        images.ref("nohc"), "web", command=CRASH_ONCE, environment={"API_TOKEN": "tok-4f9a2c"}, host_config=offline(engine)
    )

    alert = await alert_saying(world, name, f"{name} exited (3)")
    assert "starting" in alert.text and "fatal: <no config>" in alert.text  # the log tail, escaped
    assert "hunter2" not in alert.text and "tok-4f9a2c" not in alert.text  # secrets, by pattern and from its env
    assert [b["text"] for b in alert.buttons] == ["📜 Logs", "🔄 Restart"]  # no deployment recorded: no Roll back

    refused = await tap_answer(world, VIEWER, alert, "restart", name)
    assert refused == "restart needs the operator role or higher; you are a viewer", refused
    assert engine.inspect_container(created["Id"])["State"]["Status"] == "exited"

    tapped = time.time()
    assert await tap_answer(world, OPERATOR, alert, "restart", name) == "Done."
    recovered = await alert_saying(world, name, "recovered after")
    assert recovered.message_id == alert.message_id and recovered.buttons == []  # edited in place
    started = list(engine.events(since=int(tapped) - 1, until=int(time.time()) + 1, decode=True, filters={"container": created["Id"], "event": "start"}))
    assert started, "the engine saw no start after the tap"
    assert len(alert_messages(world, name)) == 1
    assert await audit_actions(world, name) == ["alert.open", "alert.close"]


async def test_an_oom_kill_says_so(make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = await alert_world(make_world, resources)
    name = resources.name("hog")
    hog = ["sh", "-c", "echo allocating; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"]
    resources.container(images.ref("nohc"), "hog", command=hog, host_config=offline(engine, mem_limit="16m", memswap_limit="16m"))
    alert = await alert_saying(world, name, f"{name} exited (137, OOM killed)")
    assert "allocating" in alert.text and "restarted" not in alert.text


async def test_an_incident_left_open_by_an_executor_restart_still_ends_recovered(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources)
    name = resources.name("web")
    created = resources.container(images.ref("nohc"), "web", command=CRASH_ONCE, host_config=offline(engine))
    alert = await alert_saying(world, name, f"{name} exited (3)")

    await world.harness.restart()  # the incident is in the database, not in the old process
    alerts = world.harness.daemon.alerts
    alerts.timing = FAST
    engine.start(created["Id"])  # fixed by hand, outside Wingman

    recovered = await alert_saying(world, name, "recovered after")
    assert recovered.message_id == alert.message_id
    assert await audit_actions(world, name) == ["alert.open", "alert.close"]


async def test_a_failing_health_check_alerts_and_its_fix_recovers(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources)
    name = resources.name("hc")
    check = {"test": ["CMD-SHELL", "test -e /ok"], "interval": 300_000_000, "timeout": 1_000_000_000, "retries": 1}
    created = resources.container(images.ref("nohc"), "hc", healthcheck=check, host_config=offline(engine))

    alert = await alert_saying(world, name, f"{name} is unhealthy")
    engine.exec_start(engine.exec_create(created["Id"], ["touch", "/ok"])["Id"])
    recovered = await alert_saying(world, name, "recovered after")
    assert recovered.message_id == alert.message_id


async def test_a_restart_loop_is_one_incident_with_a_count(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources)
    name = resources.name("flap")
    resources.container(images.ref("loop"), "flap", host_config=offline(engine, restart_policy={"Name": "always"}))

    def restarts() -> int | None:
        for message in alert_messages(world, name):
            found = re.search(r"restarted (\d+) times", message.text)
            if found and int(found.group(1)) >= 4:
                return int(found.group(1))
        return None

    await world.double.wait_for(restarts, timeout=60, what=f"the alert about {name} counting 4 restarts")
    assert len(alert_messages(world, name)) == 1
    assert await audit_actions(world, name) == ["alert.open"]


async def test_a_deploy_that_fails_its_health_gate_raises_no_alert(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources, deploy_timeout_seconds=20)
    name = resources.name("web")
    resources.container(images.ref("v1"), "web")
    approval_id = await request_approval(world, OPERATOR, f"/deploy {name} {images.ref('unhealthy')}")
    await answer_to_tap(world, 2, approval_id, "approve")
    await world.double.wait_for(
        lambda: (m := world.double.last_bot_message(TEAM)) and "rolled back to" in m.text or None, timeout=60, what="the failed deploy"
    )
    # A container that dies after the deploy: its alert comes after every event of the deploy.
    sentinel = resources.name("sentinel")
    resources.container(images.ref("exit"), "sentinel")
    await alert_saying(world, sentinel, f"{sentinel} exited (3)")
    assert alert_messages(world, name) == []
    assert await audit_actions(world, name) == []


async def test_after_a_deploy_the_alert_offers_roll_back_which_asks_the_approvers(
    make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient
) -> None:
    world = await alert_world(make_world, resources, deploy_timeout_seconds=20)
    world.harness.daemon.alerts.timing = Timing(group=0.5, recovery=1.5, sweep=0.2, slack=0.1)
    name = resources.name("web")
    resources.container(images.ref("v1"), "web", host_config=offline(engine))
    approval_id = await request_approval(world, OPERATOR, f"/deploy {name} {images.ref('v2')}")
    await answer_to_tap(world, 2, approval_id, "approve")
    await world.double.wait_for(
        lambda: any(f"Request {approval_id}" in m.text and "✅ done" in m.text for m in world.double.chat(TEAM)) or None,
        timeout=60, what="the deploy done",
    )  # fmt: skip
    engine.kill(name)  # not Wingman's doing: an alert

    alert = await alert_saying(world, name, f"{name} exited (137)")
    assert [b["text"] for b in alert.buttons] == ["📜 Logs", "🔄 Restart", "⏪ Roll back"]
    assert await tap_answer(world, OPERATOR, alert, "rollback", name) == "Asked the approvers."
    asked = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.text.startswith("🔐") and "rollback" in m.text and name in m.text), None),
        timeout=30, what="the rollback's approval message",
    )  # fmt: skip
    assert "waiting for approval" in asked.text


async def test_containers_breaking_together_share_one_message(make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = await alert_world(make_world, resources)
    world.harness.daemon.alerts.timing = Timing(group=3.0, recovery=1.5, sweep=0.2)  # as long as the default
    first, second = resources.name("one"), resources.name("two")
    resources.container(images.ref("exit"), "one", host_config=offline(engine))
    resources.container(images.ref("exit"), "two", host_config=offline(engine))
    both = await world.double.wait_for(
        lambda: next((m for m in alert_messages(world, first) if f"{second} exited (3)" in m.text), None),
        timeout=30, what="one alert naming both containers",
    )  # fmt: skip
    assert alert_messages(world, first) == alert_messages(world, second) == [both]
    assert sorted([b["text"] for b in row] for row in both.inline_keyboard) == [
        [f"📜 Logs {first}", f"🔄 Restart {first}"], [f"📜 Logs {second}", f"🔄 Restart {second}"],
    ]  # one row per container, named  # fmt: skip


async def test_a_silenced_container_raises_no_alert(make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = await alert_world(make_world, resources)
    quiet = resources.name("quiet")
    resources.container(images.ref("exit"), "quiet", labels={"wingman.alerts": "off"}, host_config=offline(engine))
    sentinel = resources.name("sentinel")
    resources.container(images.ref("exit"), "sentinel", host_config=offline(engine))
    await alert_saying(world, sentinel, f"{sentinel} exited (3)")
    assert alert_messages(world, quiet) == []


async def test_alerts_off_follows_nothing(make_world: Any) -> None:
    world = await make_world(alerts=False)
    assert world.harness.daemon.alerts is None


async def test_a_death_while_the_engine_was_down_is_reported_after_reconnection(make_world: Any, own_engine: OwnEngine) -> None:
    # The engine crashes (SIGKILL: its containers live on in their shims), the container
    # dies while it is down, the engine starts again: no event ever tells of that death,
    # only the comparison made when the stream is back.
    built = build_images(own_engine.api, ["nohc"])
    world = await make_world(container_allowlist=["victim"], docker_host=own_engine.host)
    alerts = world.harness.daemon.alerts
    alerts.timing = FAST
    await world.double.wait_for(lambda: alerts.connections >= 1 or None, timeout=30, what="the alert watcher following the engine")
    api = own_engine.api
    victim = api.create_container(
        built.ref("nohc"), name="victim", command=["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        host_config=offline(api),
    )["Id"]  # fmt: skip
    api.start(victim)
    pid = api.inspect_container(victim)["State"]["Pid"]
    await world.double.wait_for(lambda: (seen := alerts.last_known("victim")) and seen.running or None, timeout=30, what="the watcher knowing victim runs")

    own_engine.crash()
    os.kill(pid, signal.SIGKILL)
    own_engine.start()

    alert = await alert_saying(world, "victim", "victim exited (137)", timeout=60)
    assert alerts.connections >= 2
    assert "🔄 Restart" in [b["text"] for b in alert.buttons]


async def test_a_container_allowed_by_its_stack_alerts_too(make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    """`stack:<project>` allows a container by its Compose labels: the watcher reads them from the event."""
    project = resources.prefix.replace("-", "")
    world = await make_world(container_allowlist=[f"stack:{project}"])
    alerts = world.harness.daemon.alerts
    alerts.timing = FAST
    await world.double.wait_for(lambda: alerts.connections >= 1 or None, timeout=30, what="the alert watcher following the engine")
    name = resources.name("db")
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "db"}
    resources.container(images.ref("nohc"), "db", command=CRASH_ONCE, labels=labels, host_config=offline(engine))
    await alert_saying(world, name, f"{name} exited (3)")
