"""An update's image is pulled only after approval, with progress, and must be the approved digest.

Through the whole executor, against the real registry (Debian's docker-registry) behind
a forwarding proxy (:mod:`tests.docker.registry_proxy`) that counts what the engine asks
for and can step in: move the tag in the registry the moment the engine starts pulling,
or answer the approved digest with another image's manifest. The image under test has a
layer of its own (random bytes), removed from the engine before the request, so its pull
really downloads.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from docker.api.client import APIClient
from docker.errors import NotFound

from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.registry import Registry
from tests.docker.registry_proxy import RegistryProxy
from tests.harness import APPROVER, OPERATOR, Harness

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
BLOB_BYTES = 400_000


@pytest.fixture
async def harness(make_harness: Any, resources: Resources) -> Harness:
    return await make_harness(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)


@pytest.fixture
async def proxy(registry: Registry) -> AsyncIterator[RegistryProxy]:
    started = await RegistryProxy(registry.host).start()
    yield started
    await started.close()


class Published:
    """One repository in the registry, seen by the engine through the proxy."""

    def __init__(self, engine: APIClient, resources: Resources, registry: Registry, proxy: RegistryProxy) -> None:
        self.engine, self.resources, self.registry, self.proxy = engine, resources, registry, proxy
        self.path = f"wmt-{uuid.uuid4().hex[:8]}/svc"
        self.name = f"{proxy.host}/{self.path}"  # what the containers and the deploys use

    def push(self, image_id: str, tag: str) -> str:
        """Push ``image_id`` straight to the registry as ``path:tag``; the manifest digest."""
        digest = self.registry.push(self.engine, self.resources, image_id, f"{self.registry.host}/{self.path}", tag)
        self.resources.tags.append(f"{self.name}@{digest}")  # what a pull through the proxy leaves
        return digest

    def push_fresh(self, base: str, tag: str) -> tuple[str, str]:
        """An image with a layer of its own, pushed and then removed from the engine: (image id, digest)."""
        dockerfile = f"FROM {base}\nRUN head -c {BLOB_BYTES} /dev/urandom > /blob-{uuid.uuid4().hex}\n"
        built = f"{self.resources.prefix}-fresh:build"
        for event in self.engine.build(fileobj=io.BytesIO(dockerfile.encode()), tag=built, rm=True, forcerm=True, decode=True):
            assert "error" not in event, event
        image_id = str(self.engine.inspect_image(built)["Id"])
        digest = self.push(image_id, tag)
        self.engine.remove_image(image_id, force=True)  # every tag and its own layer: only the registry has it now
        return image_id, digest

    async def manifest(self, tag: str) -> tuple[bytes, str]:
        return await self.proxy.upstream_get(f"/v2/{self.path}/manifests/{tag}", MANIFEST)

    async def layers_fetched(self, digest: str) -> int:
        """Downloads of the image's layers: what only a pull fetches (binding the request
        reads the manifest and, through the engine, the image's config blob)."""
        manifest = json.loads((await self.manifest(digest))[0])
        layers = {f"/v2/{self.path}/blobs/{layer['digest']}" for layer in manifest["layers"]}
        return sum(1 for method, path in self.proxy.requests if method == "GET" and path in layers)


@pytest.fixture
def published(engine: APIClient, resources: Resources, registry: Registry, proxy: RegistryProxy) -> Published:
    return Published(engine, resources, registry, proxy)


async def request(harness: Harness, target: str, image: str) -> dict[str, Any]:
    reply = await harness.client().call(OPERATOR, "deploy", {"target": target, "image": image})
    assert reply.status == "pending", reply
    return dict(reply.result["approval"])


async def approve_and_follow(harness: Harness, approval_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Approve, then read the outbox as the bot does: the final event and every progress report."""
    client = harness.client()
    assert (await client.call(APPROVER, "approval.approve", {"id": approval_id})).status == "done"
    progress: list[dict[str, Any]] = []
    for _ in range(40):
        events = await client.poll(wait=10)
        for event in events:
            if event["ref"] == approval_id and event["kind"] == "progress":
                progress.append(event["payload"]["progress"])
            if event["ref"] == approval_id and event["kind"] == "approval.finished":
                return event["payload"], progress
        await client.ack([e["id"] for e in events])
    raise AssertionError(f"approval {approval_id} never finished")


def running(engine: APIClient, resources: Resources) -> dict[str, Any]:
    return dict(engine.inspect_container(resources.name("web")))


async def test_the_update_is_pulled_only_after_approval_with_progress_and_runs_the_pushed_digest(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, published: Published
) -> None:
    resources.container(resources.tag(images.id("v1"), published.name, "1.2.3"), "web")
    image_id, digest = published.push_fresh(images.ref("v2"), "1.2.4")
    reference = f"{published.name}:1.2.4@{digest}"  # what the update's Deploy button asks for
    approval = await request(harness, resources.name("web"), reference)
    assert approval["args"]["pinned"] == {"image": reference, "source": "registry", "id": digest}
    # Asked and bound, but nothing pulled before the approval.
    assert await published.layers_fetched(digest) == 0
    with pytest.raises(NotFound):
        engine.inspect_image(f"{published.name}@{digest}")

    outcome, progress = await approve_and_follow(harness, approval["id"])
    assert outcome["approval"]["state"] == "done", outcome
    web = running(engine, resources)
    assert web["Image"] == image_id
    assert f"{published.name}@{digest}" in engine.inspect_image(web["Image"])["RepoDigests"]
    # The container still says which tag it follows, and which digest it was deployed at.
    assert web["Config"]["Image"] == reference
    pulled = [p for p in progress if p["stage"] in ("pulling", "pulled")]
    assert pulled and pulled[-1]["stage"] == "pulled", progress
    last = pulled[-1]
    assert last["layers"] >= 1 and last["layers_done"] == last["layers"] and last["bytes_done"] >= BLOB_BYTES // 2
    assert "; pulled " in outcome["outcome"]["reason"] and "layers" in outcome["outcome"]["reason"]
    assert await published.layers_fetched(digest) >= 1  # its own layer (the others were here)


@pytest.mark.parametrize("asked", ["reference", "tag"])
async def test_a_tag_moved_after_approval_does_not_change_what_is_deployed(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, published: Published, asked: str
) -> None:
    """The tag moves in the registry at the moment the engine starts pulling (after the last
    vote): the approved digest is deployed, never the moved one."""
    resources.container(resources.tag(images.id("v1"), published.name, "1.2.3"), "web")
    moved_digest = published.push(images.id("v3"), "other")
    image_id, digest = published.push_fresh(images.ref("v2"), "1.2.4")
    image = f"{published.name}:1.2.4@{digest}" if asked == "reference" else f"{published.name}:1.2.4"
    approval = await request(harness, resources.name("web"), image)
    assert approval["args"]["pinned"]["id"] == digest
    moved_body, moved_type = await published.manifest("other")

    async def move_the_tag_first(request: web.Request) -> None:
        if request.method == "GET" and request.path == f"/v2/{published.path}/manifests/{digest}":
            published.proxy.before = None
            await published.proxy.upstream_put(f"/v2/{published.path}/manifests/1.2.4", moved_body, moved_type)
        return None

    published.proxy.before = move_the_tag_first
    outcome, _ = await approve_and_follow(harness, approval["id"])
    assert published.proxy.before is None, "the engine never asked for the approved digest"
    assert (await published.manifest("1.2.4"))[0] == moved_body  # the tag did move
    assert outcome["approval"]["state"] == "done", outcome
    web = running(engine, resources)
    assert web["Image"] == image_id and web["Image"] != images.id("v3")
    assert f"{published.name}@{digest}" in engine.inspect_image(web["Image"])["RepoDigests"]
    assert moved_digest not in str(engine.inspect_image(web["Image"])["RepoDigests"])
    if asked == "tag":
        assert "has moved since the request" in outcome["outcome"]["reason"]


async def test_a_registry_answering_the_approved_digest_with_another_image_is_refused_and_nothing_changes(
    harness: Harness, resources: Resources, images: BuiltImages, engine: APIClient, published: Published
) -> None:
    before = resources.container(resources.tag(images.id("v1"), published.name, "1.2.3"), "web")
    published.push(images.id("v3"), "other")
    _, digest = published.push_fresh(images.ref("v2"), "1.2.4")
    reference = f"{published.name}:1.2.4@{digest}"
    approval = await request(harness, resources.name("web"), reference)
    other_body, other_type = await published.manifest("other")

    async def swap(request: web.Request) -> web.Response | None:
        if request.method in ("GET", "HEAD") and request.path == f"/v2/{published.path}/manifests/{digest}":
            return web.Response(body=other_body if request.method == "GET" else None, content_type=other_type.split(";")[0],
                                headers={"Docker-Content-Digest": digest})  # fmt: skip
        return None

    published.proxy.before = swap
    outcome, _ = await approve_and_follow(harness, approval["id"])
    assert outcome["approval"]["state"] == "failed", outcome
    reason = outcome["outcome"]["reason"]
    assert reason.startswith(f"the approved image {reference} · sha256:") and "could not be pulled" in reason, reason
    assert "\n" not in reason
    after = running(engine, resources)
    assert (after["Id"], after["Image"], after["State"]["Running"]) == (before["Id"], images.id("v1"), True)
    refused = [e for e in await harness.executor.audit.tail(10) if e.action == "deploy" and e.decision == "refused"]
    assert refused and refused[-1].outcome == reason
