"""A deploy SIGKILLed mid-way (in a child process) is put right by recovery at the next start."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.deploy import DEPLOYMENT_LABEL, Deployer
from executor.deployments import DeploymentStore
from executor.docker_driver import ASIDE_MARKER, DockerDriver, aside_name
from executor.recovery import recover
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.stores import open_deployment_store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def everything(name: str, labels: object = None) -> bool:
    """The allowlist of these tests: each test's containers have names of their own."""
    return True


async def run_child_until(db_url: str, name: str, image: str, pause_at: str) -> list[str]:
    """Start the deploy in a child process and SIGKILL it once it has reached ``pause_at``."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.docker.deploy_child",
        "--db",
        db_url,
        "--name",
        name,
        "--image",
        image,
        "--pause-at",
        pause_at,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert child.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while True:
                line = (await child.stdout.readline()).decode().rstrip("\n")
                if not line and child.stdout.at_eof():
                    pytest.fail(f"the child ended before {pause_at!r}: {seen}")
                seen.append(line)
                if line == f"PAUSED {pause_at}":
                    break
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    return seen


@pytest.mark.parametrize(
    ("pause_at", "variant", "ends_on"),
    [
        ("stopping", "v2", "v1"),  # recorded, nothing touched yet
        ("creating", "v2", "v1"),  # old container stopped and set aside, no new one
        ("starting", "v2", "v1"),  # new container created, never started
        ("waiting for health", "v2", "v2"),  # new one started: recovery finds it healthy
        ("waiting for health", "unhealthy", "v1"),  # new one started, and failing
        ("rolling back", "unhealthy", "v1"),  # killed in the middle of the rollback
    ],
)
async def test_a_deploy_killed_mid_way_is_recovered(
    resources: Resources, images: BuiltImages, db_path: Path, pause_at: str, variant: str, ends_on: str
) -> None:
    db_url = f"sqlite+aiosqlite:///{db_path}"
    old = resources.container(images.ref("v1"))
    name = old["Name"].lstrip("/")
    # The database exists before the child starts, as the executor's would.
    await (await open_deployment_store(db_url)).engine.dispose()

    seen = await run_child_until(db_url, name, images.ref(variant), pause_at)
    assert seen[-1] == f"PAUSED {pause_at}"
    if pause_at != "stopping":
        assert any(ASIDE_MARKER in n for c in resources.ours() for n in c["Names"]), "no container was set aside"

    store = await open_deployment_store(db_url)
    driver = DockerDriver(os.environ.get("DOCKER_HOST") or None)
    try:
        deployer = Deployer(driver, store, health_timeout=10, running_window=2, poll_interval=0.1)
        [interrupted] = await store.unfinished()
        report = await recover(deployer, everything)
        lines = report.done
        assert report.alerts == []
        assert len(lines) == 1 and lines[0].startswith(f"{name}: ") and interrupted.id in lines[0], lines

        containers = resources.ours()
        assert [c["Names"] for c in containers] == [[f"/{name}"]], "a leftover or a missing service"
        info = resources.api.inspect_container(name)
        assert info["State"]["Running"] and info["Image"] == images.id(ends_on)
        if ends_on == "v1":
            assert info["Id"] == old["Id"], "the old container itself is back"
        assert await store.unfinished() == []
        record = await store.get(interrupted.id)
        assert record is not None and record.state == ("succeeded" if ends_on == variant else "recovered")
        again = await recover(deployer, everything)
        assert again.done == again.alerts == []  # nothing left to do the second time
    finally:
        await driver.close()
        await store.engine.dispose()


async def ended_record(
    deployments: DeploymentStore, service: str, deployment_id: str, images: BuiltImages, old_id: str
) -> None:
    """A deploy of ours that ended, but whose container set aside (``old_id``) is still there."""
    await deployments.record(
        service=service, action="deploy", requested_by="tg:1001", approved_by=None,
        requested_image=images.ref("v2"), prev_image_id=images.id("v1"), prev_image_tag=images.ref("v1"),
        new_image_id=images.id("v2"), new_image_tag=images.ref("v2"), prev_container={"Id": old_id, "State": {"Running": True}},
        deployment_id=deployment_id,
    )  # fmt: skip
    await deployments.finish(deployment_id, "rolled_back", "test: ended with its old container still aside")


async def test_recovery_puts_back_or_removes_containers_left_under_a_temporary_name(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    api = resources.api
    # A service whose only container is still aside: it gets its name back.
    lone = resources.container(images.ref("v1"), "lone", start=False)
    api.rename(lone["Id"], aside_name(resources.name("lone"), "0123456789ab"))
    await ended_record(deployments, resources.name("lone"), "0123456789ab", images, lone["Id"])
    # A service that is in place, with an old container left aside beside it: that one goes.
    resources.container(images.ref("v2"), "web")
    stale = resources.container(images.ref("v1"), f"web{ASIDE_MARKER}ba9876543210", start=False)
    await ended_record(deployments, resources.name("web"), "ba9876543210", images, stale["Id"])
    # Set aside by a deploy this executor has no record of (another Wingman, or a person):
    # not ours to touch.
    foreign = resources.container(images.ref("v1"), f"other{ASIDE_MARKER}feedfeedfeed", start=False)

    report = await recover(deployer, everything)

    assert report.alerts == []
    assert sorted(report.done) == sorted(
        [
            f"{resources.name('lone')}: put the container left aside by deploy 0123456789ab back under its name and started it",
            f"{resources.name('web')}: removed the old container left aside by deploy ba9876543210; {resources.name('web')} itself is in place",
        ]
    )
    names = sorted(n for c in resources.ours() for n in c["Names"])
    assert names == sorted([f"/{resources.name('lone')}", f"/{resources.name('web')}", foreign["Name"]])
    assert api.inspect_container(lone["Id"])["State"]["Running"]
    assert all(c["Id"] != stale["Id"] for c in resources.ours())


async def test_a_deploy_that_passed_its_gate_is_completed_not_undone(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    """The state a crash leaves between the gate passing and the old container's removal."""
    api = resources.api
    old = resources.container(images.ref("v1"))
    name = old["Name"].lstrip("/")
    record = await deployments.record(
        service=name,
        action="deploy",
        requested_by="tg:1001",
        approved_by=None,
        requested_image=images.ref("v2"),
        prev_image_id=images.id("v1"),
        prev_image_tag=images.ref("v1"),
        new_image_id=images.id("v2"),
        new_image_tag=images.ref("v2"),
        prev_container=old,
    )
    api.stop(old["Id"], timeout=5)
    api.rename(old["Id"], aside_name(name, record.id))
    new = resources.container(images.ref("v2"), labels={DEPLOYMENT_LABEL: record.id})
    await deployments.set_state(record.id, "healthy", new_container_id=new["Id"])

    [line] = (await recover(deployer, everything)).done

    assert "completed" in line and images.ref("v2") in line
    assert [c["Id"] for c in resources.ours()] == [new["Id"]]
    done = await deployments.get(record.id)
    assert done is not None and done.state == "succeeded"
    api.inspect_image(images.id("v1"))  # kept for a rollback


PLANTED = {
    # service outside the allowlist, its "new" container is ours-looking by id: the old code
    # would have kept it and removed the "old" one.
    "service outside the allowlist": ("zz-db", "healthy", "victim"),
    # allowlisted service, but the "old" container is some other container: the old code
    # would have removed it (healthy) or renamed it into the service's place (rolling back).
    "foreign old container, healthy": ("web", "healthy", "victim"),
    "foreign old container, rolling back": ("web", "rolling_back", "victim"),
    "old container outside the allowlist": ("web", "healthy", "zz-victim"),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
async def test_a_planted_deployment_row_changes_nothing_at_restart_and_is_an_alert(
    make_harness: Any, resources: Resources, images: BuiltImages, case: str
) -> None:
    service_suffix, state, victim_suffix = PLANTED[case]
    harness = await make_harness(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=10)
    api = resources.api

    def make(suffix: str) -> dict[str, Any]:
        if suffix.startswith("zz-"):  # outside the allowlist, still cleaned up by the test's prefix
            name = f"zz-{resources.prefix}-{suffix[3:]}"
            created = api.create_container(images.ref("v1"), name=name)
            api.start(created["Id"])
            return dict(api.inspect_container(created["Id"]))
        return resources.container(images.ref("v1"), suffix)

    service = make(service_suffix)
    victim = make(victim_suffix)
    try:
        store = DeploymentStore(harness.daemon._engine)
        planted = await store.record(
            service=service["Name"].lstrip("/"), action="deploy", requested_by="tg:4", approved_by=None,
            requested_image=images.ref("v2"), prev_image_id=images.id("v1"), prev_image_tag=images.ref("v1"),
            new_image_id=images.id("v1"), new_image_tag=images.ref("v2"), prev_container=victim,
        )  # fmt: skip
        await store.set_state(planted.id, state, new_container_id=service["Id"])
        def ours() -> list[tuple[str, tuple[str, ...], str]]:
            # Only this test's containers: other tests may share the engine.
            found = [c for c in api.containers(all=True) if any(resources.prefix in n for n in c["Names"])]
            return sorted((c["Id"], tuple(c["Names"]), c["State"]) for c in found)

        before = ours()
        assert len(before) == 2

        await harness.restart()

        assert ours() == before, "a container was removed, renamed, started or stopped"
        alerts = [e for e in await harness.executor.audit.tail(20) if e.action == "deploy.recover"]
        assert [e.decision for e in alerts] == ["refused"] and planted.id in str(alerts[0].outcome)
        assert "nothing was touched" in str(alerts[0].outcome)
        shown = [e for e in await harness.client().poll(wait=0) if e["kind"] == "alert"]
        assert len(shown) == 1 and planted.id in shown[0]["payload"]["text"]
    finally:
        for info in (service, victim):
            if info["Name"].startswith("/zz-"):
                api.remove_container(info["Id"], force=True)
