"""The Docker engine for tests: a session client, images built FROM scratch, per-test resources.

The engine is the one at ``DOCKER_HOST`` (the local socket when unset). Without one the
tests skip, saying why; with ``CI=true`` they fail instead (``tests.conftest.service_missing``).

Every test gets a unique name prefix; whatever it creates (containers, including ones a
deploy renamed aside, networks, volumes, extra image tags) is removed afterwards, even
when the test failed. The fixtures are registered for the whole suite by tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from tests.conftest import service_missing
from tests.docker.images import BuildFailed, BuiltImages, build_images, remove_images

DOCKER_HOST = os.environ.get("DOCKER_HOST") or None


@pytest.fixture(scope="session")
def engine() -> Iterator[APIClient]:
    """A synchronous SDK client for test set-up (the code under test makes its own)."""
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST or "unix:///var/run/docker.sock", version="auto", timeout=60)
        client.ping()
    except Exception as exc:  # any failure to reach it means: no engine for these tests
        service_missing(f"no Docker engine at {DOCKER_HOST or 'unix:///var/run/docker.sock'}: {exc}")
    yield client.api
    client.close()


@pytest.fixture(scope="session")
def images(engine: APIClient) -> Iterator[BuiltImages]:
    try:
        built = build_images(engine)
    except BuildFailed as exc:
        service_missing(str(exc))
    yield built
    remove_images(engine, built)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Resources:
    """Names unique to one test, and everything the test created under them."""

    api: APIClient
    prefix: str = field(default_factory=lambda: f"wmt-{uuid.uuid4().hex[:8]}")
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def name(self, suffix: str = "svc") -> str:
        return f"{self.prefix}-{suffix}"

    def container(self, image: str, suffix: str = "svc", *, start: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Create (and start) a container with low-level create_container keyword arguments."""
        name = self.name(suffix)
        created = self.api.create_container(image, name=name, **kwargs)
        if start:
            self.api.start(created["Id"])
        return dict(self.api.inspect_container(created["Id"]))

    def network(self, suffix: str, **kwargs: Any) -> str:
        name = self.name(suffix)
        self.api.create_network(name, **kwargs)
        self.networks.append(name)
        return name

    def volume(self, suffix: str) -> str:
        name = self.name(suffix)
        self.api.create_volume(name)
        self.volumes.append(name)
        return name

    def tag(self, image: str, repository: str, tag: str) -> str:
        self.api.tag(image, repository, tag, force=True)
        self.tags.append(f"{repository}:{tag}")
        return f"{repository}:{tag}"

    def ours(self) -> list[dict[str, Any]]:
        return [
            c for c in self.api.containers(all=True) if any(n.lstrip("/").startswith(self.prefix) for n in c["Names"])
        ]

    def cleanup(self) -> None:
        for entry in self.ours():
            try:
                self.api.remove_container(entry["Id"], force=True, v=True)
            except NotFound:
                pass
            except APIError as exc:
                # A killed deploy may have left the engine removing it already.
                if "already in progress" not in str(exc):
                    raise
        for name in self.networks:
            try:
                self.api.remove_network(name)
            except NotFound:
                pass
        for name in self.volumes:
            try:
                self.api.remove_volume(name, force=True)
            except NotFound:
                pass
        for tag in self.tags:
            try:
                self.api.remove_image(tag)
            except (NotFound, APIError):
                pass


@pytest.fixture
def resources(engine: APIClient) -> Iterator[Resources]:
    res = Resources(engine)
    try:
        yield res
    finally:
        res.cleanup()
