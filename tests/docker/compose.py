"""Compose stacks for tests, made by the real Compose CLI (Debian's docker-compose 1.29, or `docker compose`).

A stack has three services built from the test images (tests/docker/images.py): ``db``
(the v1 image, with its health check), ``app`` (v1, depends on ``db`` being healthy) and
``worker`` (no health check, depends on ``app``). Each test gets a project name of its
own; ``down`` removes it afterwards, even when the test failed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.docker.images import BuiltImages

COMPOSE_FILE = """\
version: "2.4"
services:
  db:
    image: {db}
  app:
    image: {app}
    depends_on:
      db:
        condition: service_healthy
  worker:
    image: {worker}
    depends_on:
      - app
"""


def compose_command() -> list[str]:
    """How Compose is run here: Debian's ``docker-compose`` or the ``docker compose`` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    service_missing("no Compose CLI: install Debian's docker-compose (see .ci/run)")
    raise AssertionError("unreachable")


@dataclass
class Stack:
    project: str
    directory: Path
    command: list[str]

    @property
    def file(self) -> Path:
        return self.directory / "docker-compose.yml"

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [*self.command, "-p", self.project, *args], cwd=self.directory, capture_output=True, text=True, timeout=180
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def container(self, service: str) -> str:
        """The name of the service's (first) container, whatever naming this Compose uses."""
        [container_id] = self.run("ps", "-q", service).split()
        return container_id

    def ps_ids(self) -> list[str]:
        return self.run("ps", "-q").split()


def make_stack(images: BuiltImages, directory: Path, **overrides: str) -> Stack:
    project = f"wmt{uuid.uuid4().hex[:8]}"
    refs = {"db": images.ref("v1"), "app": images.ref("v1"), "worker": images.ref("nohc"), **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "docker-compose.yml").write_text(COMPOSE_FILE.format(**refs))
    return Stack(project, directory, compose_command())


@pytest.fixture
def stack(images: BuiltImages, tmp_path: Path) -> Iterator[Stack]:
    """A running three-service stack (db ← app ← worker), removed afterwards."""
    made = make_stack(images, tmp_path / "stack")
    try:
        made.run("up", "-d")
        yield made
    finally:
        made.run("down", "-v", "--remove-orphans", check=False)
