"""A real image registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry).

Started once per test session on ``127.0.0.1:<free port>`` with its storage in a temporary
directory, no auth and no TLS: the Docker engine trusts registries on 127.0.0.0/8 without
TLS. Tests push the FROM-scratch test images into it (:meth:`Registry.push`) and move tags
there. Without the binary the tests skip, saying how to install it; with ``CI=true`` they
fail instead (``tests.conftest.service_missing``). The fixture is registered for the whole
suite by tests/conftest.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker.api.client import APIClient

from tests.conftest import service_missing
from tests.docker.engine import Resources, free_port

BINARY = Path("/usr/bin/docker-registry")

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class PushFailed(Exception):
    pass


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:<port>

    def repository(self) -> str:
        """A repository name of its own for one test."""
        return f"{self.host}/wmt-{uuid.uuid4().hex[:8]}/svc"

    def push(self, api: APIClient, resources: Resources, image: str, repository: str, tag: str) -> str:
        """Tag ``image`` as ``repository:tag``, push it; returns the registry's manifest digest."""
        ref = resources.tag(image, repository, tag)
        errors, digest = [], ""
        for event in api.push(repository, tag=tag, stream=True, decode=True):
            if event.get("error"):
                errors.append(str(event["error"]))
            digest = str((event.get("aux") or {}).get("Digest") or digest)
        if errors or not digest:
            raise PushFailed(f"pushing {ref} failed: {errors or 'no digest reported'}")
        return digest

    def forget_locally(self, api: APIClient, ref: str) -> None:
        """Remove the local tag (the image stays under its other names): now only the registry has it."""
        api.remove_image(ref)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    if not BINARY.is_file():
        service_missing(f"{BINARY} is missing: install Debian's docker-registry package (see .ci/run)")
    home = Path(tempfile.mkdtemp(prefix="wingman-registry-"))
    port = free_port()
    (home / "config.yml").write_text(_CONFIG.format(root=home / "storage", port=port))
    log = (home / "registry.log").open("wb")
    process = subprocess.Popen([str(BINARY), "serve", str(home / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v2/"
        # Polls a process start-up: readiness, not a stand-in for synchronisation.
        deadline = time.monotonic() + 30
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                service_missing(
                    f"docker-registry did not answer at {url}: {(home / 'registry.log').read_text(errors='replace')[-500:]}"
                )
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)
