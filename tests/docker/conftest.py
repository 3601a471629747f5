"""Fixtures for the Docker driver tests: a driver, a deployment store and a deployer.

The engine, the test images and per-test resources come from tests/docker/engine.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from docker.api.client import APIClient

from executor.deploy import Deployer
from executor.deployments import DeploymentStore
from executor.docker_driver import DockerDriver
from tests.docker.engine import DOCKER_HOST
from tests.stores import open_deployment_store


@pytest.fixture
async def driver(engine: APIClient) -> AsyncIterator[DockerDriver]:
    made = DockerDriver(DOCKER_HOST, settle_seconds=0.5)
    yield made
    await made.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "executor.db"


@pytest.fixture
async def deployments(db_path: Path) -> AsyncIterator[DeploymentStore]:
    store = await open_deployment_store(f"sqlite+aiosqlite:///{db_path}")
    yield store
    await store.engine.dispose()


@pytest.fixture
def deployer(driver: DockerDriver, deployments: DeploymentStore) -> Deployer:
    # Short gates: the test images turn healthy in about half a second.
    return Deployer(driver, deployments, health_timeout=20, running_window=2, poll_interval=0.1)
