"""One bot, two executors, the second reached through real OpenSSH (``ssh -N -L``).

Executor a runs beside the bot on the default Docker engine; executor b has its own engine
(a second dockerd, tests/docker/engines.py) and its socket reaches the bot only through a
forward by a real sshd (tests/ssh.py), as a NAS's would. The bot drives b through the
forward; when the forward dies, /status still answers, with b not answering; when it is
back, so is b, without restarting the bot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from docker.api.client import APIClient

from tests.bot.conftest import TEAM, World
from tests.docker.engine import Resources
from tests.docker.engines import SecondEngine
from tests.docker.images import BuiltImages
from tests.harness import ADMIN, OPERATOR, Harness
from tests.ssh import Sshd


async def test_the_bot_drives_b_through_ssh_and_survives_the_forward_dying(
    make_world: Callable[..., Awaitable[World]],
    make_harness: Callable[..., Awaitable[Harness]],
    sshd: Sshd,
    engine: APIClient,
    second_engine: SecondEngine,
    resources: Resources,
    second_resources: Resources,
    images: BuiltImages,
    socket_dir: Path,
    tmp_path: Path,
) -> None:
    on_a = resources.container(images.ref("v1"), "web")
    on_b = second_resources.container(images.ref("v1"), "web")
    b = await make_harness(
        executor_name="b", data_dir=tmp_path / "b", socket=socket_dir / "b.sock",
        docker_host=second_engine.host, container_allowlist=[f"{second_resources.prefix}-*"],
    )  # fmt: skip
    forwarded = socket_dir.parent / "b-forwarded.sock"
    forward = sshd.forward(forwarded, b.settings.socket_path)
    world = await make_world(
        bot={"executors": {"a": socket_dir / "executor.sock", "b": forwarded}},
        executor_name="a",
        container_allowlist=[f"{resources.prefix}-*"],
    )

    async def status() -> str:
        [answer] = await world.reply_to(ADMIN, "/status")
        return answer.text

    both = await status()
    assert resources.name("web") in both.split("\nb")[0] and second_resources.name("web") in both

    # The bot acts on b, through the forward, on b's engine only.
    started_b = second_engine.api.inspect_container(on_b["Id"])["State"]["StartedAt"]
    started_a = engine.inspect_container(on_a["Id"])["State"]["StartedAt"]
    await world.reply_to(OPERATOR, f"/restart {second_resources.name('web')}@b")
    await world.double.wait_for(
        lambda: second_engine.api.inspect_container(on_b["Id"])["State"]["StartedAt"] != started_b or None,
        timeout=30, what="the container on engine b restarted",
    )  # fmt: skip
    assert engine.inspect_container(on_a["Id"])["State"]["StartedAt"] == started_a
    restarts = [e for e in await b.executor.audit.tail(10) if e.action == "restart"]
    assert restarts and restarts[-1].decision == "executed"

    # The forward dies: /status still answers, a in full, b not answering.
    forward.kill()
    one = await status()
    assert resources.name("web") in one
    assert "b: not answering (since " in one and second_resources.name("web") not in one
    assert world.double.chat(TEAM)  # the bot is the same process throughout

    # Back: b answers again, the bot was never restarted.
    forward.start()
    again = await status()
    assert second_resources.name("web") in again and "not answering" not in again


async def test_a_host_listed_under_another_name_is_refused_by_it(
    make_world: Callable[..., Awaitable[World]], make_harness: Callable[..., Awaitable[Harness]], socket_dir: Path, tmp_path: Path
) -> None:
    """The bot lists b's socket as "c": its tokens say c, and b refuses them (audited)."""
    b = await make_harness(executor_name="b", data_dir=tmp_path / "b", socket=socket_dir / "b.sock", docker_host="unix:///nonexistent/docker.sock")
    world = await make_world(bot={"executors": {"a": socket_dir / "executor.sock", "c": b.settings.socket_path}}, executor_name="a")
    [answer] = await world.reply_to(ADMIN, "/whoami")
    refusals: list[Any] = [e for e in await b.executor.audit.tail(10) if e.decision == "refused"]
    assert refusals and "meant for executor 'c', not for this one ('b')" in (refusals[-1].outcome or "")
    assert "c" in answer.text
