"""What Wingman's deploy costs over doing the same recreate by hand with the docker SDK.

Run it from the repository root, with a Docker engine (``DOCKER_HOST`` or the local socket)
and Debian's ``busybox-static`` installed::

    python benchmarks/deploy_bench.py
    python benchmarks/deploy_bench.py --runs 15

One container with a realistic configuration (env, labels, a user-defined network with an
alias, a published port, a named volume, a restart policy, a memory limit) is moved back
and forth between two images built here FROM scratch, in two ways, alternating:

(a) **wingman** - ``executor.deploy.Deployer.deploy``: resolve, policy, the deployment
    record in SQLite (durable writes), stop, rename aside, create from the old
    container's inspect, join networks, start, the gate, remove the old container.
(b) **direct** - the same recreate as a script would write it with the SDK: stop, rename,
    create (the configuration written out by hand), start, wait until running, remove.

The images have no health check and Wingman's running window is 0 s, so both sides wait
for the same thing (the new container reported running): the gate's own waiting is left
out on both. It prints the median, min and max of each side over ``--runs`` runs (after one
warm-up run each) and the ratio of the medians (target <= 1.10). A measurement, not a
test: figures move with the machine's load (printed at the top). Everything it creates is
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
from docker.api.client import APIClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.deploy import Deployer  # noqa: E402
from executor.docker_driver import DockerDriver  # noqa: E402
from tests.stores import open_deployment_store  # noqa: E402

BUSYBOX = Path("/bin/busybox")
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin APP_VERSION={version}
RUN mkdir -p /www && echo {version} > /www/index.html
EXPOSE 8080
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
"""


def build(api: APIClient, repository: str) -> list[str]:
    context = Path(tempfile.mkdtemp(prefix="wingman-bench-"))
    tags = []
    try:
        shutil.copy2(BUSYBOX, context / "busybox")
        for version in ("a", "b"):
            (context / f"Dockerfile.{version}").write_text(DOCKERFILE.format(version=version))
            tag = f"{repository}:{version}"
            for event in api.build(path=str(context), dockerfile=f"Dockerfile.{version}", tag=tag, rm=True, decode=True):
                if "error" in event:
                    raise SystemExit(f"building {tag} failed: {event['error']}")
            tags.append(tag)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return tags


def create_direct(api: APIClient, image: str, name: str, network: str, volume: str, port: int) -> str:
    """The container's configuration, written out as a script would."""
    host_config = api.create_host_config(
        port_bindings={8080: ("127.0.0.1", port)},
        binds={volume: {"bind": "/data", "mode": "rw"}},
        restart_policy={"Name": "unless-stopped"},
        mem_limit="64m",
        network_mode=network,
    )
    created = api.create_container(
        image,
        name=name,
        environment={"FOO": "bar", "API_TOKEN": "s3cret"},
        labels={"com.example.team": "ops"},
        ports=[8080],
        host_config=host_config,
        networking_config=api.create_networking_config({network: api.create_endpoint_config(aliases=["web"])}),
    )
    return str(created["Id"])


def direct_recreate(api: APIClient, name: str, image: str, network: str, volume: str, port: int) -> float:
    began = time.perf_counter()
    old = api.inspect_container(name)["Id"]
    api.stop(old, timeout=10)
    api.rename(old, f"{name}-old")
    new = create_direct(api, image, name, network, volume, port)
    api.start(new)
    while not api.inspect_container(new)["State"]["Running"]:
        time.sleep(0.01)
    api.remove_container(old, v=False, force=True)
    return time.perf_counter() - began


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per side (default 10)")
    args = parser.parse_args()
    if not BUSYBOX.is_file():
        print(f"{BUSYBOX} is missing: apt-get install busybox-static", file=sys.stderr)
        return 2
    base_url = os.environ.get("DOCKER_HOST") or None
    client = docker.DockerClient(base_url=base_url or "unix:///var/run/docker.sock", version="auto")
    api = client.api
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; engine {api.version()['Version']}")

    prefix = f"wingman-bench-{uuid.uuid4().hex[:8]}"
    repository = f"{prefix}/svc"
    name, network, volume = f"{prefix}-web", f"{prefix}-net", f"{prefix}-data"
    tmp = Path(tempfile.mkdtemp(prefix="wingman-bench-"))
    driver = DockerDriver(base_url)
    store = await open_deployment_store(f"sqlite+aiosqlite:///{tmp / 'executor.db'}")
    tags: list[str] = []
    try:
        tags = build(api, repository)
        api.create_network(network)
        api.create_volume(volume)
        port = 18000 + int(uuid.uuid4().int % 2000)
        api.start(create_direct(api, tags[0], name, network, volume, port))
        deployer = Deployer(driver, store, running_window=0, poll_interval=0.05)

        current = 0
        wingman: list[float] = []
        direct: list[float] = []
        for run in range(args.runs + 1):  # run 0 of each side is a warm-up
            current = 1 - current
            began = time.perf_counter()
            await deployer.deploy(name, tags[current], requested_by="bench", running_window=0)
            took = time.perf_counter() - began
            if run:
                wingman.append(took)
            current = 1 - current
            took = await asyncio.to_thread(direct_recreate, api, name, tags[current], network, volume, port)
            if run:
                direct.append(took)

        def figures(values: list[float]) -> str:
            return f"median {statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"

        ratio = statistics.median(wingman) / statistics.median(direct)
        print(f"recreate, {args.runs} runs each, alternating:")
        print(f"  (a) wingman deploy  {figures(wingman)}")
        print(f"  (b) direct SDK      {figures(direct)}")
        print(f"  ratio a/b: {ratio:.3f}  (target <= 1.10)")
    finally:
        for entry in api.containers(all=True, filters={"name": prefix}):
            api.remove_container(entry["Id"], force=True)
        for remove in (lambda: api.remove_network(network), lambda: api.remove_volume(volume, force=True)):
            try:
                remove()
            except docker.errors.APIError:
                pass
        for tag in tags:
            try:
                api.remove_image(tag, force=True)
            except docker.errors.APIError:
                pass
        await driver.close()
        await store.engine.dispose()
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
