"""The second Docker engine (tests/docker/engines.py) is another host's Docker: what is
created there is invisible to the default engine, and the other way round."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker.api.client import APIClient
from docker.errors import NotFound

from tests.docker.engine import Resources
from tests.docker.engines import SecondEngine, start_engine, stop_engine
from tests.docker.images import BuiltImages


def test_a_container_on_the_second_engine_is_invisible_to_the_default_one(
    engine: APIClient, second_engine: SecondEngine, second_resources: Resources, resources: Resources, images: BuiltImages
) -> None:
    there = second_resources.container(images.ref("v1"), "web")
    here = resources.container(images.ref("v1"), "web", start=False)

    assert there["State"]["Running"] and there["HostConfig"]["NetworkMode"] == "none"
    assert there["Image"] == images.id("v1")  # the same image, loaded, not rebuilt
    with pytest.raises(NotFound):
        engine.inspect_container(there["Id"])
    assert not engine.containers(all=True, filters={"id": there["Id"]})
    with pytest.raises(NotFound):
        second_engine.api.inspect_container(here["Id"])
    # Same name on both engines, two containers: each engine sees its own.
    assert second_engine.api.inspect_container(second_resources.name("web"))["Id"] == there["Id"]
    assert engine.inspect_container(resources.name("web"))["Id"] == here["Id"]
    assert second_engine.api.info()["DockerRootDir"] == str(second_engine.root / "data")


def test_starting_and_stopping_a_second_engine_leaves_the_default_ones_bridge_alone(engine: APIClient) -> None:
    """dockerd --bridge=none deletes the host's docker0 unless it has a network of its own."""
    bridge = engine.inspect_network("bridge")["Options"].get("com.docker.network.bridge.name", "docker0")
    index = Path(f"/sys/class/net/{bridge}/ifindex")
    before = index.read_text()
    started, client = start_engine()
    try:
        assert client.ping()
    finally:
        stop_engine(started, client)
    assert index.read_text() == before  # the same interface, neither deleted nor made anew
    assert not started.root.exists()
