"""Update checks against real registries, through the whole executor.

Debian's docker-registry on localhost, plain and with htpasswd auth behind TLS (its CA in
/etc/docker/certs.d for the engine and for Wingman's tag-list client), images built FROM
scratch pushed under several tags; the containers run on the real engine and the checks
go through a real executor on its socket (the ``updates`` action) and its scheduler (the
scheduled check and its one outbox event).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from docker.api.client import APIClient

from executor.updates import RegistryClient
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.registry import PASSWORD, USER, Registry, remove_registry, start_registry
from tests.docker.test_executor_actions import finished
from tests.harness import APPROVER, OPERATOR, VIEWER, Harness
from tests.updates.conftest import RateLimitingFront, write_config


@pytest.fixture
def registry_auth(tmp_path: Path, secure_registry: Registry) -> Path:
    return write_config(tmp_path / "docker-config.json", {secure_registry.host: (USER, PASSWORD)})


@pytest.fixture
async def harness(make_harness: Any, resources: Resources, registry_auth: Path) -> Harness:
    return await make_harness(
        container_allowlist=[f"{resources.prefix}-*"], registry_auth=registry_auth, update_check_at="off",
        deploy_timeout_seconds=20,
    )  # fmt: skip


async def updates_events(harness: Harness) -> list[dict[str, Any]]:
    """The ``updates`` notifications waiting in the outbox (acknowledged as the bot would)."""
    client = harness.client()
    events = await client.poll(wait=0)
    await client.ack([e["id"] for e in events])
    return [e["payload"] for e in events if e["kind"] == "updates"]


async def check_now(harness: Harness) -> dict[str, Any]:
    reply = await harness.client().call(VIEWER, "updates")
    assert reply.status == "done", reply
    return dict(reply.result)


def start(resources: Resources, image: str, suffix: str, labels: dict[str, str] | None = None) -> None:
    """A container of ``image``, with no network: an update check needs none (the registry is
    the engine's and Wingman's to ask), and the test needs nothing of the default bridge."""
    resources.container(image, suffix, labels=labels or {}, host_config=resources.api.create_host_config(network_mode="none"))


def by_target(result: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for update in result["updates"]:
        found.setdefault(update["target"], []).append(update["new_tag"])
    return found


async def test_a_new_image_under_the_same_tag_is_announced_once_and_deploys_exactly_that_digest(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry
) -> None:
    repository = registry.repository()
    running = registry.push(engine, resources, images.id("v1"), repository, "stable")
    start(resources, f"{repository}:stable", "web")
    pushed = registry.push(engine, resources, images.id("v2"), repository, "stable")  # same tag, new image

    assert await harness.daemon.scheduler.run_job("updates") is not None
    [announced] = await updates_events(harness)
    [update] = announced["updates"]
    web = resources.name("web")
    assert update == {
        "id": update["id"], "target": web, "image": f"{repository}:stable", "current_tag": "stable",
        "new_tag": "stable", "current_digest": running, "new_digest": pushed,
        "reference": f"{repository}:stable@{pushed}", "created": update["created"],
    }  # fmt: skip
    assert announced["problems"] == [] and announced["checked"] == 1
    assert isinstance(update["created"], int)

    # A second check finds it again but announces nothing.
    assert await harness.daemon.scheduler.run_job("updates") is not None
    assert await updates_events(harness) == []
    entries = [e for e in await harness.executor.audit.tail(20) if e.action in ("scheduler.updates", "updates.announce")]
    assert [(e.action, e.decision) for e in entries] == [
        ("scheduler.updates", "started"), ("updates.announce", "done"), ("scheduler.updates", "ok"),
        ("scheduler.updates", "started"), ("scheduler.updates", "ok"),
    ]
    assert entries[1].params["updates"] == [{"id": update["id"], "target": web, "reference": update["reference"]}]

    # Announced and not deployed: the weekly report's recall finds it.
    pending = harness.daemon.scheduler.context.pending_updates
    assert [{**u, "announced_at": 0} for u in await pending()] == [{**update, "announced_at": 0}]

    # The Deploy button reads the update back by id, then asks for an ordinary deploy of its reference.
    client = harness.client()
    one = await client.call(VIEWER, "updates", {"id": update["id"]})
    assert one.status == "done" and one.result["updates"] == [update] and one.result["state"] == "pending"
    # Someone moves the tag again before the approval: the approved digest runs all the same.
    registry.push(engine, resources, images.id("v3"), repository, "stable")
    asked = await client.call(OPERATOR, "deploy", {"target": web, "image": update["reference"]})
    assert asked.status == "pending", asked
    assert asked.result["approval"]["args"]["pinned"]["id"] in (pushed, images.id("v2"))
    assert (await client.call(APPROVER, "approval.approve", {"id": asked.result["approval"]["id"]})).status == "done"
    outcome = await finished(harness, asked.result["approval"]["id"])
    assert outcome["approval"]["state"] == "done", outcome
    assert engine.inspect_container(web)["Image"] == images.id("v2")
    assert pushed in [d.partition("@")[2] for d in engine.inspect_image(images.id("v2"))["RepoDigests"]]

    # Deployed: that update is gone; the tag's newest image (v3) is the one on offer now.
    after = await check_now(harness)
    assert [u["new_digest"] for u in after["updates"]] != [pushed]
    gone = await client.call(VIEWER, "updates", {"id": update["id"]})
    assert gone.result["state"] == "gone"
    assert update["id"] not in [u["id"] for u in await pending()]


async def test_version_tags_under_patch_minor_and_major_and_an_include_pattern(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, secure_registry: Registry
) -> None:
    repository = secure_registry.repository()
    digests = {
        tag: secure_registry.push(engine, resources, images.id(variant), repository, tag)
        for tag, variant in [("1.2.3", "v1"), ("1.2.4", "v2"), ("1.3.0", "v3"), ("2.0.0", "nohc"), ("1.4.0-alpine", "unhealthy")]
    }
    image = f"{repository}:1.2.3"
    for suffix, labels in [
        ("patch", {"wingman.update": "patch"}),
        ("minor", {"wingman.update": "minor"}),
        ("major", {"wingman.update": "MAJOR"}),
        ("alpine", {"wingman.update": "minor", "wingman.update.include": r"\d+\.\d+\.\d+-alpine"}),
        ("digest", {}),
        ("badregex", {"wingman.update": "major", "wingman.update.include": "1.(2"}),
        ("off", {"wingman.update": "off"}),
    ]:
        start(resources, image, suffix, labels)

    result = await check_now(harness)
    name = resources.name
    assert by_target(result) == {
        name("patch"): ["1.2.4"], name("minor"): ["1.3.0"], name("major"): ["2.0.0"], name("alpine"): ["1.4.0-alpine"],
    }  # fmt: skip
    major = next(u for u in result["updates"] if u["target"] == name("major"))
    assert major["reference"] == f"{repository}:2.0.0@{digests['2.0.0']}" and major["current_digest"] == digests["1.2.3"]
    assert isinstance(major["created"], int)  # read over TLS with the credentials: manifest, then config
    assert result["checked"] == 6  # "off" is not checked
    [problem] = result["problems"]
    assert problem.startswith(f"{name('badregex')}: label wingman.update.include='1.(2' is not a regular expression")
    assert problem.endswith("watching by digest only") and "\n" not in problem


class StopsTheRegistry(RegistryClient):
    """The real client; the first time it asks ``registry`` for tags, that registry is stopped first."""

    registry: Registry

    async def tags(self, repository: str) -> list[str]:
        if repository.startswith(self.registry.host):
            self.registry.stop()
        return await super().tags(repository)


async def test_each_registry_that_fails_is_one_line_and_the_others_are_still_checked(
    make_harness: Any, resources: Resources, images: BuiltImages, engine: APIClient, registry: Registry,
    secure_registry: Registry, rate_limiting_front: RateLimitingFront, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Pa55word-for-the-test"
    config = write_config(tmp_path / "wrong.json", {secure_registry.host: (USER, wrong)})
    harness = await make_harness(
        container_allowlist=[f"{resources.prefix}-*"], registry_auth=config, update_check_at="off",
    )  # fmt: skip
    # Fine: the plain registry, a new image under the running tag.
    fine = registry.repository()
    registry.push(engine, resources, images.id("v1"), fine, "1.0")
    start(resources, f"{fine}:1.0", "fine")
    new = registry.push(engine, resources, images.id("v2"), fine, "1.0")
    # Refused: the secure registry with a wrong password in WINGMAN_REGISTRY_AUTH.
    secured = secure_registry.repository()
    secure_registry.push(engine, resources, images.id("v1"), secured, "1.0")
    start(resources, f"{secured}:1.0", "refused")
    # Rate-limited: our front answers 429 once the image is pushed through it.
    front = Registry(rate_limiting_front.host)
    limited = front.repository()
    # In a thread: the front answers on this test's event loop, which must stay free meanwhile.
    await asyncio.to_thread(front.push, engine, resources, images.id("v1"), limited, "1.0")
    start(resources, f"{limited}:1.0", "limited")
    rate_limiting_front.limited = True
    # Stopped mid-check: a registry of its own, stopped when the check first asks it for tags.
    own = start_registry()
    try:
        stopping = own.repository()
        own.push(engine, resources, images.id("v1"), stopping, "1.0")
        for suffix in ("stopped1", "stopped2"):
            start(resources, f"{stopping}:1.0", suffix, {"wingman.update": "minor"})
        client_class = type("Stops", (StopsTheRegistry,), {"registry": own})
        harness.executor.updates.checker.client = client_class

        assert await harness.daemon.scheduler.run_job("updates") is not None
    finally:
        remove_registry(own)
    [announced] = await updates_events(harness)
    assert [(u["target"], u["new_digest"]) for u in announced["updates"]] == [(resources.name("fine"), new)]
    problems = sorted(announced["problems"])
    assert len(problems) == 3, problems
    assert all("\n" not in line and "Traceback" not in line for line in problems)
    by_host = {line.partition(": ")[0]: line for line in problems}
    assert set(by_host) == {secure_registry.host, rate_limiting_front.host, own.host}
    assert "refused the credentials" in by_host[secure_registry.host]
    assert "rate-limited the check (HTTP 429); ratelimit-remaining: 0;w=21600" in by_host[rate_limiting_front.host]
    assert "cannot be reached" in by_host[own.host] and "(2 of 2 containers not checked)" in by_host[own.host]

    # The same problems again at the next check: nothing new to tell, no message.
    assert await harness.daemon.scheduler.run_job("updates") is not None
    assert await updates_events(harness) == []

    # The run is audited as an alert naming the problems; no secret anywhere.
    run = [e for e in await harness.executor.audit.tail(10) if e.action == "scheduler.updates"][-1]  # the second run
    assert run.decision == "alert" and {p.partition(": ")[0] for p in run.params["problems"]} == set(by_host)
    rows = json.dumps([e.__dict__ if hasattr(e, "__dict__") else str(e) for e in await harness.executor.audit.tail(200)], default=str)
    for secret in (wrong, PASSWORD):
        assert secret not in rows
        assert secret not in caplog.text
        assert secret not in json.dumps(announced)
