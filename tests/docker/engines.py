"""A second, real Docker engine for the tests: another host's Docker, on this machine.

``second_engine`` (session-scoped) starts its own ``dockerd`` with everything apart from the
default engine's: ``--data-root``, ``--exec-root`` (dockerd 20.10 starts its own containerd
under it, socket and state included), ``--pidfile`` and ``-H unix://…`` in a fresh
directory under /tmp, and no networking of its own (``--bridge=none --iptables=false
--ip-masq=false``). Containers there use network ``none``.

It runs in a network namespace of its own (``unshare --net``): dockerd 20.10 started with
``--bridge=none`` deletes the host's ``docker0`` (``removeDefaultBridgeInterface``),
which would cut every container of the default engine off its bridge. In its own
namespace it deletes nothing of the host's, and touches neither the host's firewall nor
its interfaces; its Unix socket is a file, reachable from the host as any other. It waits for the engine with a deadline
(the end of dockerd's log is in the failure), loads the test images of
``tests/docker/images.py`` into it (saved from the default engine: same refs, same image
ids), and at the end removes its containers and stops it with SIGTERM (SIGKILL to its
process group only if it does not stop within 30 s). It needs root, like any dockerd.

Usage::

    async def test_x(second_engine: SecondEngine, second_resources: Resources, images, make_harness):
        web = second_resources.container(images.ref("v1"), "web")       # on engine b, network none
        b = await make_harness(executor_name="b", docker_host=second_engine.host, ...)
        second_engine.api.inspect_container(web["Id"])                   # engine b's view

``second_resources`` is ``tests.docker.engine.Resources`` on the second engine (unique
names per test, everything removed afterwards); its ``container()`` puts containers on
network ``none`` unless told otherwise. Both fixtures are registered for the whole suite
by tests/conftest.py, and a test using them is marked ``slow``.

``own_engine`` is a dockerd of one test's own (same recipe, no images loaded), for a test
that crashes it (:meth:`OwnEngine.crash`: SIGKILL, as a crash; the containers live on in
their shims) and starts it again (:meth:`OwnEngine.start`), which the shared session
engine must never suffer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from tests.conftest import service_missing
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages

START_DEADLINE = 60.0
STOP_DEADLINE = 30.0


@dataclass
class SecondEngine:
    """A running second ``dockerd``: where it listens, a client for it, its files."""

    host: str  # DOCKER_HOST for an executor on "the other host": unix://<root>/docker.sock
    api: APIClient
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class NoNetworkResources(Resources):
    """``Resources`` whose containers use network ``none`` unless a host config is given."""

    def container(self, image: str, suffix: str = "svc", *, start: bool = True, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("host_config", self.api.create_host_config(network_mode="none"))
        return super().container(image, suffix, start=start, **kwargs)


def _connect(engine: SecondEngine) -> docker.DockerClient:
    """A client once the engine answers, within ``START_DEADLINE``; else ``RuntimeError``
    with the end of dockerd's log."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        code = engine.process.poll()
        if code is not None:
            raise RuntimeError(f"the second dockerd exited with status {code}; the end of its log:\n{engine.log_tail()}")
        try:
            client = docker.DockerClient(base_url=engine.host, version="auto", timeout=60)
            client.ping()
            return client
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the second dockerd did not answer within {START_DEADLINE:g} s; the end of its log:\n{engine.log_tail()}"
                ) from None
            time.sleep(0.1)


def start_engine(root: Path | None = None) -> tuple[SecondEngine, docker.DockerClient]:
    """Start a second dockerd in a fresh directory (or again in ``root``, after a crash);
    raises ``RuntimeError`` with its log."""
    dockerd, unshare = shutil.which("dockerd"), shutil.which("unshare")
    if dockerd is None:
        raise RuntimeError("dockerd is not installed (Debian: docker.io, see .ci/run)")
    if unshare is None:
        raise RuntimeError("unshare is not installed (Debian: util-linux)")
    if os.geteuid() != 0:
        raise RuntimeError("a second dockerd needs root")
    # Short: the sockets inside must stay under the 108 bytes of a Unix socket path.
    root = root or Path(tempfile.mkdtemp(prefix="wm-dk-", dir="/tmp"))
    sock = root / "docker.sock"
    command = [
        unshare, "--net", "--",  # see the module docstring: --bridge=none would delete the host's docker0
        dockerd,
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{sock}",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
    ]
    log = (root / "dockerd.log").open("ab")
    try:
        # unshare execs dockerd: the pid is dockerd's.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    engine = SecondEngine(f"unix://{sock}", None, root, process)  # type: ignore[arg-type]
    try:
        client = _connect(engine)
    except BaseException:
        stop_engine(engine, None)
        raise
    engine.api = client.api
    return engine, client


def load_images(source: APIClient, target: APIClient, images: BuiltImages) -> None:
    """Copy the test images from one engine to the other (``docker save | docker load``)."""
    for variant in images.ids:
        data = b"".join(source.get_image(images.ref(variant)))
        for event in target.load_image(data):
            if isinstance(event, dict) and "error" in event:
                raise RuntimeError(f"loading {images.ref(variant)} into the second engine failed: {event['error']}")
        if target.inspect_image(images.ref(variant))["Id"] != images.id(variant):
            raise RuntimeError(f"{images.ref(variant)} has another id on the second engine")


def stop_engine(engine: SecondEngine, client: docker.DockerClient | None) -> None:
    """Remove its containers, stop it (SIGTERM, then SIGKILL to its process group), and
    remove its files."""
    if client is not None:
        try:
            for entry in client.api.containers(all=True):
                try:
                    client.api.remove_container(entry["Id"], force=True, v=True)
                except (NotFound, APIError):
                    pass
        except Exception:  # the engine may be the thing that failed
            pass
        client.close()
    if engine.process.poll() is None:
        engine.process.terminate()
        try:
            engine.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(engine.process.pid, signal.SIGKILL)
            engine.process.wait(STOP_DEADLINE)
    # A clean stop unmounts everything; after a kill, leave what is still mounted.
    mounted = Path("/proc/mounts").read_text()
    if str(engine.root) not in mounted:
        shutil.rmtree(engine.root, ignore_errors=True)


@pytest.fixture(scope="session")
def second_engine(engine: APIClient, images: BuiltImages) -> Iterator[SecondEngine]:
    """A second dockerd with the test images loaded; see the module docstring."""
    try:
        started, client = start_engine()
    except RuntimeError as exc:
        service_missing(f"no second Docker engine: {exc}")
    try:
        load_images(engine, started.api, images)
    except Exception as exc:
        stop_engine(started, client)
        pytest.fail(f"the test images could not be loaded into the second engine: {exc}")
    yield started
    stop_engine(started, client)


@pytest.fixture
def second_resources(second_engine: SecondEngine) -> Iterator[Resources]:
    """Per-test names and clean-up on the second engine; containers on network ``none``."""
    res = NoNetworkResources(second_engine.api)
    try:
        yield res
    finally:
        res.cleanup()


class OwnEngine:
    """A second dockerd of one test's own, to crash and start again in the same directory."""

    def __init__(self) -> None:
        self.engine, self._client = start_engine()
        self.root = self.engine.root

    @property
    def host(self) -> str:
        return self.engine.host

    @property
    def api(self) -> APIClient:
        return self.engine.api

    def crash(self) -> None:
        """dockerd killed; its containerd waited for (it dies with its parent) or killed, so
        the next start does not take the dying one for alive; the containers' shims live on."""
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        containerd = int(pid_file.read_text().strip()) if pid_file.exists() else None
        self._client.close()
        self.engine.process.kill()
        self.engine.process.wait(STOP_DEADLINE)
        if containerd is not None:
            deadline = time.monotonic() + 10
            while _alive(containerd) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(containerd):
                os.kill(containerd, signal.SIGKILL)
            while _alive(containerd):
                time.sleep(0.1)
        # Where nothing reaps orphans (pid 1 of some containers), the dead containerd stays a
        # zombie that dockerd takes for alive: its pid file goes with it.
        pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        self.engine, self._client = start_engine(self.root)

    def remove(self) -> None:
        if self.engine.process.poll() is not None:
            self.start()  # a crashed engine is started again, to stop cleanly (and unmount)
        stop_engine(self.engine, self._client)
        # The mount a crash left (dockerd mounts its data root on itself at each start) goes
        # too: this engine was ours alone, nothing else can be using it.
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((p for p in mounted if p == str(self.root) or p.startswith(f"{self.root}/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead, only not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def own_engine() -> Iterator[OwnEngine]:
    """A dockerd for this test alone (see the module docstring); removed afterwards."""
    try:
        made = OwnEngine()
    except RuntimeError as exc:
        service_missing(f"no second Docker engine: {exc}")
    try:
        yield made
    finally:
        made.remove()
