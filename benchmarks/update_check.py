"""What one update check costs: 50 containers across 2 registries, wall time and registry requests.

Run it from the repository root, with a Docker engine (``DOCKER_HOST`` or the local
socket), Debian's ``busybox-static`` and ``docker-registry`` installed::

    python benchmarks/update_check.py
    python benchmarks/update_check.py --containers 50 --registries 2 --runs 5

Two registries (Debian's ``docker-registry``, each started here on 127.0.0.1) each sit
behind a counting forwarding proxy (``tests.docker.registry_proxy.RegistryProxy``): every
request of the check, the engine's (``inspect_distribution``: the manifest, the image
config) and Wingman's own tag-list client's (tags, the new image's date), goes through a
proxy and is counted by kind. ``--containers`` containers (created, not started, with no
network) are spread evenly over the registries, each in a repository of its own, running
``1.0.0``; half have a new image pushed under the same tag (policy ``digest``), the other
half a newer tag ``1.0.1`` (label ``wingman.update=patch``), so every container has one
update to find.

It prints, for ``--runs`` checks (``executor.updates.UpdateCheck.run``, as the executor's
``updates`` action and scheduled check run it, after one warm-up check):

- the wall time (median, min, max) and the requests of one check, by kind;
- beside them the floor, measured in the same run through the same proxies: one manifest
  request per container (``HEAD /v2/<name>/manifests/<tag>``, registries side by side and
  the containers of one registry one after another, as the check goes), its wall time,
  and the ratios.

A measurement, not a test: figures move with the machine's load (printed at the top).
Everything it creates (containers, tags, registries) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import docker
from docker.api.client import APIClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.docker_driver import DockerDriver  # noqa: E402
from executor.updates import RegistryCredentials, UpdateCheck  # noqa: E402
import tests.conftest  # noqa: E402,F401 - first: it imports tests.docker.registry, which imports it back
from tests.docker.images import BUSYBOX, build_images, remove_images  # noqa: E402
from tests.docker.registry import BINARY, Registry, remove_registry, start_registry  # noqa: E402
from tests.docker.registry_proxy import RegistryProxy  # noqa: E402

ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


def kind_of(method: str, path: str) -> str:
    if path.rstrip("/") == "/v2":
        return "/v2/ ping"
    if "/manifests/" in path:
        return f"manifest {method}"
    if path.endswith("/tags/list"):
        return "tag list"
    if "/blobs/" in path:
        return f"blob {method}"
    return f"other {method}"


def push(api: APIClient, image: str, repository: str, tag: str, tags: list[str]) -> None:
    api.tag(image, repository, tag, force=True)
    tags.append(f"{repository}:{tag}")
    for event in api.push(repository, tag=tag, stream=True, decode=True):
        if event.get("error"):
            raise RuntimeError(f"pushing {repository}:{tag} failed: {event['error']}")


async def floor(proxies: list[RegistryProxy], containers: list[tuple[str, str, str]]) -> float:
    """One manifest request per container, as the check orders them; its wall time."""
    async with aiohttp.ClientSession() as session:

        async def one_registry(host: str) -> None:
            for registry, path, tag in containers:
                if registry == host:
                    async with session.head(f"http://{host}/v2/{path}/manifests/{tag}", headers=[("Accept", a) for a in ACCEPT]) as answer:
                        if answer.status != 200:
                            raise RuntimeError(f"the floor's manifest request for {path}:{tag} answered {answer.status}")

        began = time.perf_counter()
        await asyncio.gather(*(one_registry(p.host) for p in proxies))
        return time.perf_counter() - began


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=50, help="containers to check (default 50)")
    parser.add_argument("--registries", type=int, default=2, help="registries they are spread over (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="measured checks (default 5, after one warm-up)")
    args = parser.parse_args()
    for needed, package in ((BUSYBOX, "busybox-static"), (BINARY, "docker-registry")):
        if not needed.is_file():
            print(f"{needed} is missing: apt-get install {package}", file=sys.stderr)
            return 2
    base_url = os.environ.get("DOCKER_HOST") or None
    client = docker.DockerClient(base_url=base_url or "unix:///var/run/docker.sock", version="auto", timeout=120)
    api = client.api
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; engine {api.version()['Version']}; {os.cpu_count()} cores")

    prefix = f"wingman-bench-{uuid.uuid4().hex[:8]}"
    registries: list[Registry] = []
    proxies: list[RegistryProxy] = []
    tags: list[str] = []
    images = None
    driver = DockerDriver(base_url)
    try:
        images = build_images(api, ["v1", "v2"])
        for _ in range(args.registries):
            registries.append(start_registry())
            proxies.append(await RegistryProxy(registries[-1].host).start())
        containers: list[tuple[str, str, str]] = []  # (proxy host, repository path, tag the container runs)
        began = time.perf_counter()
        for number in range(args.containers):
            proxy = proxies[number % len(proxies)]
            path = f"{prefix}/svc{number:03}"
            repository = f"{proxy.host}/{path}"
            # Pushed through the proxy, so the image goes by a digest in that repository.
            await asyncio.to_thread(push, api, images.id("v1"), repository, "1.0.0", tags)
            same_tag = number % 2 == 0
            labels = {} if same_tag else {"wingman.update": "patch"}
            api.create_container(
                f"{repository}:1.0.0", name=f"{prefix}-{number:03}", labels=labels,
                host_config=api.create_host_config(network_mode="none"),
            )  # fmt: skip
            await asyncio.to_thread(push, api, images.id("v2"), repository, "1.0.0" if same_tag else "1.0.1", tags)
            containers.append((proxy.host, path, "1.0.0"))
        print(f"set-up: {args.containers} containers, {args.registries} registries, {time.perf_counter() - began:.0f} s")

        credentials = Path(f"/tmp/{prefix}-no-config.json")  # absent: no credentials, as for public registries
        check = UpdateCheck(driver, lambda: RegistryCredentials.load(credentials))
        visible = lambda name, labels: name.startswith(prefix)  # noqa: E731
        walls: list[float] = []
        per_check: list[Counter[str]] = []
        own: list[int] = []
        report = None
        for run in range(args.runs + 1):  # run 0 is a warm-up
            for proxy in proxies:
                proxy.requests.clear()
            began = time.perf_counter()
            report = await check.run(visible)
            took = time.perf_counter() - began
            if report.problems or len(report.updates) != args.containers or report.checked != args.containers:
                print(f"the check did not find what was pushed: {len(report.updates)} updates of {report.checked} containers; {report.problems}", file=sys.stderr)
                return 1
            if run:
                walls.append(took)
                per_check.append(Counter(kind_of(m, p) for proxy in proxies for m, p in proxy.requests))
                own.append(report.requests)
        totals = [sum(c.values()) for c in per_check]
        total = int(statistics.median(totals))
        counts = next(c for c in per_check if sum(c.values()) == total)

        for proxy in proxies:
            proxy.requests.clear()
        floors = [await floor(proxies, containers) for _ in range(args.runs)]
        floor_requests = sum(len(p.requests) for p in proxies) // args.runs

        def figures(values: list[float]) -> str:
            return f"median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})"

        print(f"update check of {args.containers} containers across {args.registries} registries, {args.runs} runs (after a warm-up):")
        print(f"  wall time         {figures(walls)}")
        spread = f" (runs: {min(totals)}-{max(totals)})" if min(totals) != max(totals) else ""
        print(f"  registry requests {total} per check{spread}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        print(f"                    of which Wingman's tag-list client {statistics.median(own):.0f}, the engine {total - statistics.median(own):.0f}")
        print(f"  floor             {floor_requests} manifest requests (one per container), {figures(floors)}")
        print(f"  ratio             {total / floor_requests:.1f}x the requests, {statistics.median(walls) / statistics.median(floors):.1f}x the time")
    finally:
        for entry in api.containers(all=True, filters={"name": prefix}):
            api.remove_container(entry["Id"], force=True)
        for tag in tags:
            try:
                api.remove_image(tag)
            except docker.errors.APIError:
                pass
        if images is not None:
            remove_images(api, images)
        for proxy in proxies:
            await proxy.close()
        for registry in registries:
            remove_registry(registry)
        await driver.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
