"""The driver against a real engine: status, logs, restart/start/stop, locks, an absent engine."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.docker_driver import DockerDriver, EngineUnavailable, aside_name
from executor.errors import ActionFailed, Busy, Refused
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages

ACTOR = "tg:1001"


async def wait_for(predicate, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.1)


# -- status -----------------------------------------------------------------------------------


async def test_status_lists_only_visible_containers_with_their_details(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    web = resources.container(images.ref("v1"), "web")
    resources.container(images.ref("exit"), "job")
    resources.container(images.ref("v1"), "hidden", start=False)
    # A container a deploy set aside is never a service of its own, whatever the allowlist says.
    resources.container(images.ref("v1"), f"web{aside_name('', 'abcdef012345')}", start=False)
    api = resources.api
    await wait_for(lambda: api.inspect_container(resources.name("job"))["State"]["Status"] == "exited")
    await wait_for(lambda: api.inspect_container(web["Id"])["State"]["Health"]["Status"] == "healthy")

    def visible(name: str, labels: object = None) -> bool:
        return name.startswith(resources.prefix) and not name.endswith("-hidden")

    statuses = await driver.status(visible)
    assert [s.name for s in statuses] == [resources.name("job"), resources.name("web")]
    job, running = statuses
    assert (running.state, running.health, running.image) == ("running", "healthy", images.ref("v1"))
    assert running.image_id == images.id("v1")[7:19] and running.restart_count == 0
    assert running.uptime_seconds is not None and 0 <= running.uptime_seconds < 120
    assert running.exit_code is None and running.started_at is not None
    assert (job.state, job.health, job.exit_code, job.uptime_seconds) == ("exited", None, 3, None)
    assert "running (healthy)" in running.summary() and "exit code 3" in job.summary()

    [one] = await driver.status(visible, resources.name("web"))
    assert one.name == resources.name("web")


async def test_a_hidden_container_is_answered_exactly_like_a_missing_one(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    resources.container(images.ref("v1"), "hidden", start=False)
    hidden, missing = resources.name("hidden"), resources.name("absent")
    with pytest.raises(Refused) as for_hidden:
        await driver.status(lambda name, labels: name != hidden, hidden)
    with pytest.raises(Refused) as for_missing:
        await driver.status(lambda name, labels: True, missing)
    assert str(for_hidden.value).replace(hidden, "X") == str(for_missing.value).replace(missing, "X")
    assert all(s.name != hidden for s in await driver.status(lambda name, labels: name != hidden))


# -- logs -----------------------------------------------------------------------------------------


async def test_logs_are_cleaned_masked_and_capped(driver: DockerDriver, resources: Resources, images: BuiltImages) -> None:
    api = resources.api
    script = (
        "printf '\\033[1;32mready\\033[0m on :8080\\n';"
        " echo 'API_TOKEN=abc123 user=bob'; echo 'Authorization: Bearer eyJhbGci.x.y';"
        " echo 'db=postgres://app:hunter2@db/app'; echo '{\"password\": \"p4ss\", \"ok\": 1}';"
        " for i in $(seq 1 600); do echo line $i; done"
    )
    container = resources.container(images.ref("nohc"), "logs", command=["sh", "-c", script])
    await wait_for(lambda: api.inspect_container(container["Id"])["State"]["Status"] == "exited")
    name = resources.name("logs")

    default = await driver.logs(name)
    assert len(default.lines) == 50 and default.lines[-1] == "line 600" and not default.capped

    capped = await driver.logs(name, 10_000)
    assert capped.capped and capped.requested == 500 and len(capped.lines) == 500

    two = await driver.logs(name, 2)
    assert two.lines == ["line 599", "line 600"]

    head = (await driver.logs(name, 500)).lines  # 605 lines written: the first five are gone
    assert head[0] == "line 101"

    api.remove_container(container["Id"])
    container = resources.container(images.ref("nohc"), "logs", command=["sh", "-c", script.split(" for ")[0]])
    await wait_for(lambda: api.inspect_container(container["Id"])["State"]["Status"] == "exited")
    lines = (await driver.logs(name)).lines
    assert lines == [
        "ready on :8080",
        "API_TOKEN=**** user=bob",
        "Authorization: ****",
        "db=postgres://app:****@db/app",
        '{"password": "****", "ok": 1}',
    ]


@pytest.mark.parametrize("lines", [0, -1, True, "50", 2.5])
async def test_bad_line_counts_are_refused(driver: DockerDriver, lines: object) -> None:
    with pytest.raises(Refused):
        await driver.logs("web", lines)  # type: ignore[arg-type]


# -- restart, start, stop ---------------------------------------------------------------------------


async def test_stop_start_restart_confirm_the_resulting_state(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    container = resources.container(images.ref("v1"), stop_timeout=5)
    name = resources.name()
    stages: list[str] = []

    async def progress(stage: str, details: dict[str, object]) -> None:
        stages.append(stage)

    stopped = await driver.stop(name, actor=ACTOR, progress=progress)
    assert stopped.changed and stopped.status.state == "exited" and stages == ["stopping", "done"]
    again = await driver.stop(name, actor=ACTOR)
    assert not again.changed and "was not running" in again.summary

    started = await driver.start(name, actor=ACTOR)
    assert started.changed and started.status.state == "running"
    assert not (await driver.start(name, actor=ACTOR)).changed

    before = resources.api.inspect_container(container["Id"])["State"]["StartedAt"]
    restarted = await driver.restart(name, actor=ACTOR)
    assert restarted.status.state == "running" and "restarted" in restarted.summary
    assert resources.api.inspect_container(container["Id"])["State"]["StartedAt"] != before
    assert driver.locks.holder(name) is None


async def test_stop_honours_the_containers_stop_signal(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    # TERM is ignored, USR1 ends it: with the default signal this stop would take 30 s.
    script = "trap 'exit 0' USR1; trap '' TERM; while :; do sleep 0.1; done"
    resources.container(images.ref("nohc"), command=["sh", "-c", script], stop_signal="SIGUSR1", stop_timeout=30)
    await asyncio.sleep(0.3)  # let the shell set its traps
    began = time.monotonic()
    outcome = await driver.stop(resources.name(), actor=ACTOR)
    assert time.monotonic() - began < 5
    assert outcome.status.state == "exited" and outcome.status.exit_code == 0


async def test_stop_honours_the_containers_stop_timeout(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    script = "trap '' TERM; while :; do sleep 0.1; done"  # only SIGKILL ends it
    resources.container(images.ref("nohc"), command=["sh", "-c", script], stop_timeout=1)
    await asyncio.sleep(0.3)
    began = time.monotonic()
    outcome = await driver.stop(resources.name(), actor=ACTOR)
    took = time.monotonic() - began
    assert 0.9 <= took < 6, took  # its own 1 s, not the engine's default 10 s
    assert outcome.status.exit_code == 137


async def test_a_container_that_exits_at_once_fails_to_start_with_its_logs(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    resources.container(images.ref("exit"), start=False)
    with pytest.raises(ActionFailed) as caught:
        await driver.start(resources.name(), actor=ACTOR)
    assert "did not stay running" in str(caught.value) and "exit code 3" in str(caught.value)
    assert "DB_PASSWORD=****" in caught.value.last_logs


async def test_a_busy_container_is_refused_naming_the_holder(
    driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    resources.container(images.ref("v1"), start=False)
    name = resources.name()
    with driver.locks.hold(name, "tg:1001 (deploy)"):
        for action in (driver.restart, driver.start, driver.stop):
            with pytest.raises(Busy) as caught:
                await action(name, actor="tg:1002")
            assert caught.value.holder == "tg:1001 (deploy)" and "tg:1001 (deploy)" in str(caught.value)
    assert (await driver.start(name, actor="tg:1002")).changed


@pytest.mark.parametrize("name", ["web;reboot", "../etc/passwd", "web/x", "x" * 129, "", "$(id)", "web-wingman-old-0123abcd4567"])
async def test_bad_names_are_refused_before_the_engine_is_asked(name: str, tmp_path: Path) -> None:
    driver = DockerDriver(f"unix://{tmp_path}/nothing.sock")  # would fail differently if reached
    try:
        for call in (driver.restart, driver.start, driver.stop):
            with pytest.raises(Refused):
                await call(name, actor=ACTOR)
        with pytest.raises(Refused):
            await driver.logs(name)
        with pytest.raises(Refused):
            await driver.status(lambda n, labels: True, name)
    finally:
        await driver.close()


async def test_an_id_prefix_is_not_a_name(driver: DockerDriver, resources: Resources, images: BuiltImages) -> None:
    container = resources.container(images.ref("v1"), start=False)
    with pytest.raises(Refused, match="no container named"):
        await driver.start(container["Id"][:12], actor=ACTOR)
    with pytest.raises(Refused, match="no container named"):
        await driver.logs(container["Id"][:12])


# -- an engine that is not there ------------------------------------------------------------------


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that accepts connections and never answers."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


async def ticking_while(call) -> tuple[BaseException | None, int]:  # type: ignore[no-untyped-def]
    """Run ``call`` while a ticker counts 20 ms ticks; the loop must not be held up."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    error: BaseException | None = None
    try:
        await call()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        error = exc
    done.set()
    await task
    return error, ticks


async def test_no_socket_at_all_is_engine_unavailable(tmp_path: Path) -> None:
    driver = DockerDriver(f"unix://{tmp_path}/nothing.sock")
    try:
        for call in (
            lambda: driver.status(lambda n, labels: True),
            lambda: driver.logs("web"),
            lambda: driver.restart("web", actor=ACTOR),
        ):
            error, _ = await ticking_while(call)
            assert isinstance(error, EngineUnavailable), error
            assert "unreachable" in str(error) and "nothing.sock" in str(error) and "\n" not in str(error)
        assert driver.locks.holder("web") is None
    finally:
        await driver.close()


async def test_a_socket_with_nothing_listening_is_engine_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: connections are refused
    driver = DockerDriver(f"unix://{path}")
    try:
        error, _ = await ticking_while(lambda: driver.status(lambda n, labels: True))
        assert isinstance(error, EngineUnavailable) and "connection refused" in str(error)
    finally:
        await driver.close()
        dead.close()


async def test_an_engine_that_never_answers_fails_without_blocking_the_loop(silent_socket: str) -> None:
    driver = DockerDriver(silent_socket, timeout=1)
    try:
        began = time.monotonic()
        error, ticks = await ticking_while(lambda: driver.status(lambda n, labels: True))
        took = time.monotonic() - began
        assert isinstance(error, EngineUnavailable), error
        assert "did not answer within 1 s" in str(error)
        assert took >= 0.9 and ticks >= 0.5 * took / 0.02, (took, ticks)
    finally:
        await driver.close()
