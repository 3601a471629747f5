"""Deploy and rollback against a real Docker engine: config kept, health gate, rollback."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from docker.api.client import APIClient
from docker.errors import APIError, NotFound
from docker.types import IPAMConfig, IPAMPool

from executor.deploy import DEPLOYMENT_LABEL, Deployer
from executor.deployments import DeploymentStore
from executor.docker_driver import ASIDE_MARKER, DeployFailed, DockerDriver, EngineUnavailable
from executor.errors import Busy, Refused
from tests.harness import Recorder
from tests.docker.engine import Resources, free_port
from tests.docker.images import BuiltImages

pytestmark = pytest.mark.slow

ACTOR = "tg:1001"


def leftovers(resources: Resources) -> list[str]:
    return [n for c in resources.ours() for n in c["Names"] if ASIDE_MARKER in n]


def only(resources: Resources) -> dict[str, Any]:
    """The one container the test has, inspected."""
    containers = resources.ours()
    assert len(containers) == 1, [c["Names"] for c in containers]
    return dict(resources.api.inspect_container(containers[0]["Id"]))


def exec_output(api: APIClient, container: str, command: str) -> str:
    exec_id = api.exec_create(container, ["sh", "-c", command])["Id"]
    return api.exec_start(exec_id).decode()


def network_with_subnet(resources: Resources, suffix: str) -> tuple[str, str]:
    """A user-defined network with a subnet of its own (static IPs need one)."""
    for _ in range(20):
        subnet = f"172.{random.randint(20, 30)}.{random.randint(0, 255)}.0/24"
        try:
            name = resources.network(suffix, ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))
        except APIError:  # overlaps a network that exists: try another
            continue
        return name, subnet.rsplit(".", 1)[0]
    pytest.fail("no free subnet for a test network")


def http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return str(response.read().decode())


async def http_get_eventually(port: int, seconds: float = 5) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await asyncio.to_thread(http_get, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# -- configuration kept ------------------------------------------------------------------------


async def test_deploy_keeps_every_setting_but_the_image_and_image_defaults(
    deployer: Deployer, resources: Resources, images: BuiltImages, tmp_path: Path
) -> None:
    api = resources.api
    net_a, prefix_a = network_with_subnet(resources, "net-a")
    net_b = resources.network("net-b")
    volume = resources.volume("data")
    port = free_port()
    (tmp_path / "bind").mkdir()
    (tmp_path / "bind" / "hello.txt").write_text("from the host\n")
    static_ip = f"{prefix_a}.10"
    mac = "02:42:ac:1f:00:99"
    container = resources.container(
        images.ref("v1"),
        environment={"FOO": "bar", "API_TOKEN": "s3cret"},
        labels={"com.example.team": "ops", "com.example.tier": "web"},
        ports=[8080],
        volumes=["/cache"],  # an anonymous volume: its data must survive the deploy
        stop_signal="SIGTERM",
        stop_timeout=5,
        mac_address=mac,
        host_config=api.create_host_config(
            port_bindings={8080: ("127.0.0.1", port)},
            binds={str(tmp_path / "bind"): {"bind": "/data", "mode": "ro"}, volume: {"bind": "/vol", "mode": "rw"}},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            mem_limit="64m",
            network_mode=net_a,
        ),
        networking_config=api.create_networking_config(
            {net_a: api.create_endpoint_config(aliases=["web-a"], ipv4_address=static_ip)}
        ),
        start=False,
    )
    api.connect_container_to_network(container["Id"], net_b, aliases=["web-b", "web-b2"])
    api.start(container["Id"])
    exec_output(api, container["Id"], "echo kept > /cache/marker && echo kept-too > /vol/marker")
    before = dict(api.inspect_container(container["Id"]))
    v1 = dict(api.inspect_image(images.ref("v1")))["Config"]
    v2 = dict(api.inspect_image(images.ref("v2")))["Config"]

    result = await deployer.deploy(before["Name"].lstrip("/"), images.ref("v2"), requested_by=ACTOR)

    after = only(resources)
    assert after["Id"] != before["Id"] and after["Name"] == before["Name"]
    assert after["Image"] == images.id("v2") == result.current.id
    assert after["State"]["Running"] and after["State"]["Health"]["Status"] == "healthy"

    # Config: everything equal but the image, the id-derived hostname and image defaults.
    old_config, new_config = dict(before["Config"]), dict(after["Config"])
    image_default_fields = ("Image", "Hostname", "Env", "Labels", "Cmd", "Healthcheck")
    for key in image_default_fields:
        old_config.pop(key, None)
        new_config.pop(key, None)
    assert new_config == old_config
    assert new_config["StopSignal"] == "SIGTERM" and new_config["StopTimeout"] == 5
    assert new_config["MacAddress"] == mac
    # Env: the container's own values kept; APP_VERSION was the OLD image's default → the new one's.
    assert "APP_VERSION=1" in v1["Env"] and "APP_VERSION=2" in v2["Env"]
    assert set(after["Config"]["Env"]) == (set(before["Config"]["Env"]) - {"APP_VERSION=1"}) | {"APP_VERSION=2"}
    assert {"FOO=bar", "API_TOKEN=s3cret"} <= set(after["Config"]["Env"])
    # Plus Wingman's mark: the deployment that made it (recovery acts only on containers it made).
    assert after["Config"]["Labels"] == {
        **before["Config"]["Labels"], "org.wingman.test.version": "2", DEPLOYMENT_LABEL: result.deployment_id,
    }  # fmt: skip
    assert after["Config"]["Cmd"] == v2["Cmd"] != v1["Cmd"]
    assert after["Config"]["Healthcheck"] == v2["Healthcheck"] != v1["Healthcheck"]

    # HostConfig: identical, but for the anonymous volume now mounted by name.
    old_host, new_host = dict(before["HostConfig"]), dict(after["HostConfig"])
    carried = new_host.pop("Mounts")
    old_host.pop("Mounts", None)
    assert new_host == old_host
    anonymous = next(m for m in before["Mounts"] if m["Destination"] == "/cache")
    assert carried == [{"Type": "volume", "Source": anonymous["Name"], "Target": "/cache"}]
    assert new_host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert new_host["Memory"] == 64 * 1024 * 1024
    assert new_host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}

    def mounts(info: dict[str, Any]) -> set[tuple[Any, ...]]:
        return {(m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"]) for m in info["Mounts"]}

    assert mounts(after) == mounts(before)

    # Networks: same networks, aliases (less each container's own id), static IP and MAC.
    def endpoints(info: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        own = {info["Id"][:12], info["Id"]}
        return {
            name: (sorted(set(ep["Aliases"] or []) - own), ep["IPAMConfig"], ep["Links"])
            for name, ep in info["NetworkSettings"]["Networks"].items()
        }

    assert endpoints(after) == endpoints(before)
    assert set(after["NetworkSettings"]["Networks"]) == {net_a, net_b}
    assert sorted(set(endpoints(after)[net_b][0])) == ["web-b", "web-b2"]
    assert after["NetworkSettings"]["Networks"][net_a]["IPAddress"] == static_ip
    assert after["NetworkSettings"]["Networks"][net_a]["MacAddress"] == mac

    # And it all works: the new version answers on the published port, data is still there.
    assert (await http_get_eventually(port)).strip() == "2"
    assert exec_output(api, after["Id"], "cat /cache/marker /vol/marker /data/hello.txt") == "kept\nkept-too\nfrom the host\n"
    assert leftovers(resources) == []
    api.inspect_image(images.id("v1"))  # the old image stays: rollback needs it


async def test_a_container_field_set_by_hand_is_kept_even_when_the_new_image_changes_it(
    deployer: Deployer, resources: Resources, images: BuiltImages
) -> None:
    pinned_hc = {"test": ["CMD-SHELL", "wget -q -O- http://127.0.0.1:8080/"], "interval": 700_000_000, "retries": 2}
    container = resources.container(
        images.ref("v1"),
        command=["sh", "-c", "trap 'exit 0' TERM; httpd -p 8080 -f -h /www & wait"],
        environment={"APP_VERSION": "pinned"},
        labels={"org.wingman.test.version": "pinned"},
        working_dir="/",
        user="0",
        healthcheck=pinned_hc,
    )
    name = container["Name"].lstrip("/")
    await deployer.deploy(name, images.ref("v2"), requested_by=ACTOR)
    after = only(resources)
    assert after["Config"]["Cmd"] == container["Config"]["Cmd"]
    assert "APP_VERSION=pinned" in after["Config"]["Env"] and "APP_VERSION=2" not in after["Config"]["Env"]
    assert after["Config"]["Labels"]["org.wingman.test.version"] == "pinned"
    assert after["Config"]["WorkingDir"] == "/" and after["Config"]["User"] == "0"
    assert after["Config"]["Healthcheck"]["Interval"] == 700_000_000
    assert after["Config"]["Healthcheck"]["Retries"] == 2
    # Timeout was not set by hand: the new image's default applies.
    assert after["Config"]["Healthcheck"]["Timeout"] == 3_000_000_000


# -- the health gate -------------------------------------------------------------------------------


async def test_healthy_deploy_reports_progress_and_records_it(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    container = resources.container(images.ref("v1"))
    name = container["Name"].lstrip("/")
    progress = Recorder()
    result = await deployer.deploy(name, images.ref("v2"), requested_by=ACTOR, approved_by="tg:2002", progress=progress)

    assert progress.stages == ["resolving", "stopping", "creating", "starting", "waiting for health", "done"]
    waits = [d for s, d in progress.events if s == "waiting for health"]
    assert waits[0]["elapsed"] == 0 and "health" in waits[0]
    assert result.previous.id == images.id("v1") and result.current.id == images.id("v2")
    assert result.verdict == "healthy" and images.ref("v2") in result.summary
    record = await deployments.get(result.deployment_id)
    assert record is not None and record.state == "succeeded" and record.finished
    assert (record.requested_by, record.approved_by) == (ACTOR, "tg:2002")
    assert record.prev_image_id == images.id("v1") and record.prev_image_tag == images.ref("v1")
    assert record.prev_container["Id"] == container["Id"]
    assert record.new_container_id == only(resources)["Id"]
    assert leftovers(resources) == []


async def assert_rolled_back(
    resources: Resources, before: dict[str, Any], failure: DeployFailed, deployments: DeploymentStore, image_id: str
) -> None:
    after = only(resources)
    # The very same container is back, under its name, running its old image.
    assert after["Id"] == before["Id"] and after["Name"] == before["Name"]
    assert after["State"]["Running"] and after["Image"] == image_id
    assert failure.rolled_back_to is not None and failure.rolled_back_to.id == image_id
    assert "rolled back to" in str(failure) and "\n" not in str(failure)
    assert leftovers(resources) == []
    assert failure.deployment_id is not None
    record = await deployments.get(failure.deployment_id)
    assert record is not None and record.state == "rolled_back" and record.finished


async def test_failing_health_check_rolls_back(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"))
    progress = Recorder()
    with pytest.raises(DeployFailed) as caught:
        await deployer.deploy(before["Name"].lstrip("/"), images.ref("unhealthy"), requested_by=ACTOR, progress=progress)
    assert "health check failed" in str(caught.value)
    assert caught.value.health_log and caught.value.health_log[-1].startswith("exit 1")
    assert progress.stages[-2:] == ["rolling back", "rolled back"]
    await assert_rolled_back(resources, before, caught.value, deployments, images.id("v1"))


async def test_immediate_exit_rolls_back_and_reports_cleaned_logs(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"))
    with pytest.raises(DeployFailed) as caught:
        await deployer.deploy(before["Name"].lstrip("/"), images.ref("exit"), requested_by=ACTOR)
    assert "exited with code 3" in str(caught.value)
    assert caught.value.last_logs == ["starting", "DB_PASSWORD=****", "fatal: no config"]
    await assert_rolled_back(resources, before, caught.value, deployments, images.id("v1"))


async def test_without_a_health_check_the_container_must_stay_running_for_the_window(
    deployer: Deployer, resources: Resources, images: BuiltImages
) -> None:
    container = resources.container(images.ref("v1"))
    began = time.monotonic()
    result = await deployer.deploy(container["Name"].lstrip("/"), images.ref("nohc"), requested_by=ACTOR, running_window=1.5)
    assert time.monotonic() - began >= 1.5
    assert result.verdict == "running for 1.5 s"
    assert only(resources)["Image"] == images.id("nohc")


async def test_a_restart_loop_rolls_back(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    api = resources.api
    before = resources.container(
        images.ref("nohc"), host_config=api.create_host_config(restart_policy={"Name": "always"})
    )
    with pytest.raises(DeployFailed) as caught:
        await deployer.deploy(before["Name"].lstrip("/"), images.ref("loop"), requested_by=ACTOR, running_window=3)
    assert "restart" in str(caught.value) or "exited" in str(caught.value)
    await assert_rolled_back(resources, before, caught.value, deployments, images.id("nohc"))


async def test_health_timeout_is_a_failure(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    # A check set on the container (so kept) that takes longer than the gate allows.
    slow_check = {"test": ["CMD-SHELL", "sleep 5"], "interval": 4_000_000_000, "timeout": 10_000_000_000}
    before = resources.container(images.ref("v1"), healthcheck=slow_check)
    with pytest.raises(DeployFailed) as caught:
        await deployer.deploy(before["Name"].lstrip("/"), images.ref("v2"), requested_by=ACTOR, timeout=1.0)
    assert "not healthy within 1 s" in str(caught.value)
    await assert_rolled_back(resources, before, caught.value, deployments, images.id("v1"))


# -- refusals: nothing touched -------------------------------------------------------------------


async def test_an_image_that_cannot_be_pulled_is_refused_and_nothing_is_touched(
    deployer: Deployer, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"))
    name = before["Name"].lstrip("/")
    with pytest.raises(Refused) as caught:
        await deployer.deploy(name, f"{images.repository}:no-such-tag", requested_by=ACTOR)
    assert "could not be pulled" in str(caught.value)
    after = only(resources)
    assert (after["Id"], after["State"]["StartedAt"], after["Image"]) == (
        before["Id"],
        before["State"]["StartedAt"],
        before["Image"],
    )
    assert await deployments.history(name) == []


async def test_an_unreachable_registry_is_a_clear_refusal(
    driver: DockerDriver, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"))
    admitting = Deployer(driver, deployments, image_allowlist=["127.0.0.1:1/*"], health_timeout=20, running_window=2)
    with pytest.raises(Refused) as caught:
        await admitting.deploy(before["Name"].lstrip("/"), "127.0.0.1:1/nothing:1", requested_by=ACTOR)
    assert "could not be pulled" in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert only(resources)["State"]["StartedAt"] == before["State"]["StartedAt"]


async def test_another_repository_needs_the_image_allowlist(
    driver: DockerDriver, deployments: DeploymentStore, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"))
    name = before["Name"].lstrip("/")
    other = resources.tag(images.id("v2"), f"{resources.prefix}-other/app", "2")
    strict = Deployer(driver, deployments, health_timeout=20, running_window=2)
    with pytest.raises(Refused) as caught:
        await strict.deploy(name, other, requested_by=ACTOR)
    assert "another repository" in str(caught.value)
    assert only(resources)["Id"] == before["Id"]

    admitting = Deployer(driver, deployments, image_allowlist=[f"{resources.prefix}-other/*"], health_timeout=20)
    result = await admitting.deploy(name, other, requested_by=ACTOR)
    assert result.current.id == images.id("v2")


@pytest.mark.parametrize(
    "image",
    ["app:bad tag", "App:1", "app:", ":1", "app;rm -rf /:1", "../app:1", "app@sha256:zz", "x" * 600, "", "a:" + "t" * 129],
)
async def test_invalid_image_references_are_refused(
    deployer: Deployer, resources: Resources, images: BuiltImages, image: str
) -> None:
    before = resources.container(images.ref("v1"), start=False)
    with pytest.raises(Refused):
        await deployer.deploy(before["Name"].lstrip("/"), image, requested_by=ACTOR)


async def test_an_image_id_is_refused_and_the_same_image_is_nothing_to_do(
    deployer: Deployer, resources: Resources, images: BuiltImages
) -> None:
    before = resources.container(images.ref("v1"), start=False)
    name = before["Name"].lstrip("/")
    with pytest.raises(Refused, match="image id"):
        await deployer.deploy(name, images.id("v2"), requested_by=ACTOR)
    with pytest.raises(Refused, match="nothing to deploy"):
        await deployer.deploy(name, images.ref("v1"), requested_by=ACTOR)


@pytest.mark.parametrize("name", ["web;reboot", "../etc", "a/b", "x" * 129, "", "-web", "wéb"])
async def test_invalid_container_names_are_refused(deployer: Deployer, images: BuiltImages, name: str) -> None:
    with pytest.raises(Refused):
        await deployer.deploy(name, images.ref("v2"), requested_by=ACTOR)


async def test_only_an_exact_name_is_a_container(deployer: Deployer, resources: Resources, images: BuiltImages) -> None:
    before = resources.container(images.ref("v1"), start=False)
    for almost in (before["Id"][:12], before["Name"].lstrip("/")[:-1], resources.name("nope")):
        with pytest.raises(Refused, match="no container named"):
            await deployer.deploy(almost, images.ref("v2"), requested_by=ACTOR)
    assert only(resources)["Id"] == before["Id"]


# -- rollback ---------------------------------------------------------------------------------------


async def test_rollback_goes_back_by_image_id_even_after_the_tag_moved(
    deployer: Deployer, resources: Resources, images: BuiltImages
) -> None:
    repository = f"{resources.prefix}-app/web"
    one = resources.tag(images.id("v1"), repository, "1")
    two = resources.tag(images.id("v2"), repository, "2")
    three = resources.tag(images.id("v3"), repository, "3")
    container = resources.container(one)
    name = container["Name"].lstrip("/")
    await deployer.deploy(name, two, requested_by=ACTOR)
    await deployer.deploy(name, three, requested_by=ACTOR)
    resources.tag(images.id("v1"), repository, "2")  # "app:2" now names another image

    progress = Recorder()
    result = await deployer.rollback(name, requested_by=ACTOR, approved_by="tg:2002", progress=progress)
    assert only(resources)["Image"] == images.id("v2") == result.current.id
    assert result.action == "rollback" and result.current.tag == two
    assert progress.stages[-1] == "done"

    # Again: back through history, not forth to v3.
    result = await deployer.rollback(name, requested_by=ACTOR)
    assert only(resources)["Image"] == images.id("v1")
    with pytest.raises(Refused, match="no previous image"):
        await deployer.rollback(name, requested_by=ACTOR)
    assert leftovers(resources) == []


async def test_rollback_without_history_is_refused(deployer: Deployer, resources: Resources, images: BuiltImages) -> None:
    container = resources.container(images.ref("v1"), start=False)
    with pytest.raises(Refused, match="no previous image"):
        await deployer.rollback(container["Name"].lstrip("/"), requested_by=ACTOR)


# -- concurrency -------------------------------------------------------------------------------------


async def test_concurrent_deploys_of_one_container_one_runs_one_is_busy(
    deployer: Deployer, driver: DockerDriver, resources: Resources, images: BuiltImages
) -> None:
    container = resources.container(images.ref("v1"))
    name = container["Name"].lstrip("/")
    first = Recorder()
    results = await asyncio.gather(
        deployer.deploy(name, images.ref("v2"), requested_by="tg:1001", progress=first),
        deployer.deploy(name, images.ref("v3"), requested_by="tg:1002"),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException), results[0]
    assert isinstance(results[1], Busy)
    assert results[1].holder == "tg:1001 (deploy)" and "tg:1001 (deploy)" in str(results[1])
    assert only(resources)["Image"] == images.id("v2")

    # A restart or stop while a deploy runs is refused too, naming the deploy.
    task = asyncio.create_task(deployer.deploy(name, images.ref("v3"), requested_by="tg:1003"))
    while driver.locks.holder(name) is None:
        await asyncio.sleep(0.01)
    for action in (driver.restart, driver.stop, driver.start):
        with pytest.raises(Busy, match=r"tg:1003 \(deploy\)"):
            await action(name, actor="tg:1004")
    with pytest.raises(Busy):
        await deployer.rollback(name, requested_by="tg:1004")
    await task
    assert driver.locks.holder(name) is None


async def test_different_containers_deploy_in_parallel_and_the_loop_stays_free(
    deployer: Deployer, resources: Resources, images: BuiltImages
) -> None:
    names = [resources.container(images.ref("v1"), suffix)["Name"].lstrip("/") for suffix in ("a", "b")]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lags.append(time.monotonic() - before - 0.02)

    spans: dict[str, tuple[float, float]] = {}

    async def timed(name: str) -> None:
        began = time.monotonic()
        await deployer.deploy(name, images.ref("v2"), requested_by=ACTOR)
        spans[name] = (began, time.monotonic())

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(timed(n) for n in names))
    stop.set()
    await tick
    (a0, a1), (b0, b1) = spans[names[0]], spans[names[1]]
    assert a0 < b1 and b0 < a1, "the two deploys did not overlap"
    assert max(lags) < 0.2, f"the event loop was blocked for {max(lags):.3f} s"
    assert len(lags) > 20


# -- the engine -----------------------------------------------------------------------------------------


async def test_deploy_with_the_engine_unreachable_is_a_clear_error(
    deployments: DeploymentStore, tmp_path: Path
) -> None:
    driver = DockerDriver(f"unix://{tmp_path}/nothing.sock")
    try:
        deployer = Deployer(driver, deployments)
        with pytest.raises(EngineUnavailable, match="unreachable"):
            await deployer.deploy("web", "app:2", requested_by=ACTOR)
        with pytest.raises(EngineUnavailable):
            await deployer.rollback("web", requested_by=ACTOR)
        assert await deployments.history("web") == []
        assert driver.locks.holder("web") is None
    finally:
        await driver.close()


async def test_an_auto_remove_container_is_refused(deployer: Deployer, resources: Resources, images: BuiltImages) -> None:
    api = resources.api
    before = resources.container(images.ref("v1"), host_config=api.create_host_config(auto_remove=True))
    with pytest.raises(Refused, match="--rm"):
        await deployer.deploy(before["Name"].lstrip("/"), images.ref("v2"), requested_by=ACTOR)
    assert only(resources)["State"]["StartedAt"] == before["State"]["StartedAt"]


async def test_a_vanished_container_is_refused(deployer: Deployer, resources: Resources, images: BuiltImages) -> None:
    container = resources.container(images.ref("v1"), start=False)
    resources.api.remove_container(container["Id"], force=True)
    with pytest.raises(Refused, match="no container named"):
        await deployer.deploy(container["Name"].lstrip("/"), images.ref("v2"), requested_by=ACTOR)
    with pytest.raises(NotFound):
        resources.api.inspect_container(container["Id"])
