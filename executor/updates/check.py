"""One update check: what each allowlisted container could be updated to.

For every container the caller may see:

1. its image as configured (``repo:tag``; for a container a deploy created from
   ``repo@digest``, the tag that deploy was asked for) and the digests its image goes by
   (``RepoDigests``). A local build that never came from a registry has none and is
   not watched.
2. **same tag, new image**: the registry's digest for that tag, asked through the engine
   (``inspect_distribution``: a manifest request, with the credentials of
   ``WINGMAN_REGISTRY_AUTH``, which Docker Hub does not count as a pull), against the
   digests the container's image goes by.
3. **newer tag** (policies ``patch``, ``minor``, ``major``): the newest version tag of the
   registry's tag list within the policy (:mod:`executor.updates.versions`), and its digest
   asked the same way.

Registries are asked side by side, the containers of one registry one after another. A
registry that refuses the credentials, rate-limits or cannot be reached costs only its
own containers: it becomes ONE line in ``problems`` (``<registry>: <why>``), and once it
is unreachable or rate-limited it is not asked again in the same check.

An :class:`Update` is named by a short id derived from the container and the exact image
(``repo:tag@digest``), so the same update found by two checks is the same update.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from executor.deployments import DeploymentStore
from executor.docker_driver import DockerDriver, Visible, explain_api_error, parse_aside_name
from executor.errors import ActionError
from executor.updates.credentials import RegistryCredentials
from executor.updates.registry import (
    AUTH,
    BAD_ANSWER,
    NOT_FOUND,
    RATE_LIMITED,
    UNREACHABLE,
    RegistryClient,
    RegistryProblem,
    registry_of,
)
from executor.updates.versions import UpdatePolicy, newest_tag, policy_of
from policy.images import ImageReference, ImageReferenceError, parse_image_reference

log = logging.getLogger(__name__)

ID_LENGTH = 12
_STOPS = (UNREACHABLE, RATE_LIMITED)  # a registry in this state is not asked again this check


@dataclass(frozen=True, slots=True)
class Update:
    """One update a container could take; ``reference`` is what a deploy request carries."""

    id: str
    target: str
    image: str  # repo:tag the container runs
    current_tag: str
    new_tag: str
    current_digest: str
    new_digest: str
    reference: str  # repo:new_tag@new_digest
    created: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "target": self.target, "image": self.image, "current_tag": self.current_tag,
            "new_tag": self.new_tag, "current_digest": self.current_digest, "new_digest": self.new_digest,
            "reference": self.reference, "created": None if self.created is None else int(self.created),
        }  # fmt: skip


def update_id(target: str, reference: str) -> str:
    return hashlib.sha256(f"{target}\0{reference}".encode()).hexdigest()[:ID_LENGTH]


@dataclass(slots=True)
class CheckReport:
    """What one check found: the updates, one line per registry (or label) that failed, how many containers it checked."""

    updates: list[Update] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    watched: set[str] = field(default_factory=set)  # containers whose registry answered (their absent updates are gone)
    present: set[str] = field(default_factory=set)  # every container the caller may see (updates of others are gone)
    requests: int = 0  # registry requests of our own client (the engine's are one per manifest asked)

    def as_json(self) -> dict[str, Any]:
        return {"updates": [u.as_json() for u in self.updates], "problems": list(self.problems), "checked": self.checked}

    def summary(self) -> str:
        line = f"{len(self.updates)} updates for {self.checked} containers"
        if self.problems:
            line += f"; {len(self.problems)} problems: " + "; ".join(self.problems)
        return line[:1000]


@dataclass(frozen=True, slots=True)
class Watched:
    """A container as the check sees it."""

    name: str
    repository: str  # fully qualified: 127.0.0.1:5000/team/app
    name_as_given: str  # the image name as configured, without tag or digest
    tag: str
    digests: frozenset[str]  # the registry digests its image goes by, for this repository
    labels: dict[str, str]
    image_id: str


class UpdateCheck:
    """Finds the updates of the containers a caller may see (see the module docstring)."""

    def __init__(
        self,
        driver: DockerDriver,
        credentials: Callable[[], RegistryCredentials],
        *,
        default_policy: UpdatePolicy = UpdatePolicy.DIGEST,
        deployments: DeploymentStore | None = None,
        client: Callable[[RegistryCredentials], RegistryClient] = RegistryClient,
    ) -> None:
        self.driver = driver
        self.credentials = credentials
        self.default_policy = default_policy
        self.deployments = deployments
        self.client = client

    async def run(self, visible: Visible) -> CheckReport:
        report = CheckReport()
        credentials = await asyncio.to_thread(self.credentials)  # read fresh every check
        if credentials.problem:
            report.problems.append(credentials.problem)
        watched = await self._containers(visible, report)
        report.checked = len(watched)
        by_registry: dict[str, list[Watched]] = defaultdict(list)
        for container in watched:
            by_registry[registry_of(container.repository)[0]].append(container)
        platform = await self._platform()
        async with self.client(credentials) as client:
            results = await asyncio.gather(
                *(self._registry(registry, found, credentials, client, platform, report) for registry, found in sorted(by_registry.items()))
            )
            report.requests = client.requests
        for lines in results:
            report.problems.extend(lines)
        report.updates.sort(key=lambda u: (u.target, u.new_tag))
        return report

    # -- the containers ----------------------------------------------------------------------

    async def _containers(self, visible: Visible, report: CheckReport) -> list[Watched]:
        found = await self.driver.run(lambda api: _inspect_visible(api, visible))
        report.present = {entry[0] for entry in found}
        watched: list[Watched] = []
        for name, configured, labels, image_id, repo_digests in found:
            wanted = policy_of(labels, self.default_policy)
            if wanted.policy is UpdatePolicy.OFF:
                continue
            if wanted.problem is not None:
                report.problems.append(f"{name}: {wanted.problem}")
            ref = _parsed(configured)
            if (ref is None or ref.tag is None) and self.deployments is not None:
                # A deploy creates from the image id or repo@digest it was bound to: the tag
                # it was asked for is in its record.
                asked = _parsed(await self.deployments.latest_tag(name, image_id))
                if asked is not None and asked.tag is not None:
                    ref = asked
            if ref is None:
                continue  # created from an image id by hand: nothing names where it came from
            tag = ref.tag
            if tag is None and ref.digest is None:
                tag = "latest"
            digests = frozenset(d.partition("@")[2] for d in repo_digests if _same_repository(d.partition("@")[0], ref.repository))
            if not digests:
                continue  # built here, never pushed or pulled: no registry to ask
            if tag is None:
                report.problems.append(f"{name}: runs {configured[:80]} by digest without a tag; deploy it by tag to have it watched")
                continue
            watched.append(Watched(name, ref.repository, ref.name, tag, digests, labels, image_id))
        return watched

    async def _platform(self) -> tuple[str, str]:
        try:
            version = await self.driver.run(lambda api: api.version())
        except (ActionError, APIError):
            return ("linux", "amd64")
        return (str(version.get("Os") or "linux"), str(version.get("Arch") or "amd64"))

    # -- one registry --------------------------------------------------------------------------

    async def _registry(
        self,
        registry: str,
        containers: list[Watched],
        credentials: RegistryCredentials,
        client: RegistryClient,
        platform: tuple[str, str],
        report: CheckReport,
    ) -> list[str]:
        """The updates of one registry's containers (added to ``report``); its problem lines."""
        credential = credentials.for_registry(registry)
        auth = credential.engine_auth() if credential is not None else None
        problems: list[RegistryProblem] = []
        tag_lists: dict[str, list[str]] = {}
        unchecked = 0
        for container in containers:
            if any(p.kind in _STOPS for p in problems):
                unchecked += 1
                continue
            try:
                updates = await self._container(container, registry, auth, client, tag_lists)
            except RegistryProblem as problem:
                if problem.kind == RATE_LIMITED and problem.remaining is None:
                    remaining = await client.rate_limit(container.repository, container.tag)
                    if remaining:
                        problem = RegistryProblem(registry, RATE_LIMITED, f"{problem.reason}; ratelimit-remaining: {remaining}", remaining)
                problems.append(problem)
                unchecked += 1
                continue
            report.watched.add(container.name)
            for update in updates:
                created = await client.created(container.repository, update.new_digest, platform)
                report.updates.append(_with_created(update, created))
        if not problems:
            return []
        first = problems[0]
        line = str(first)
        if unchecked:
            line += f" ({unchecked} of {len(containers)} containers not checked)"
        return [line]

    async def _container(
        self, container: Watched, registry: str, auth: dict[str, str] | None, client: RegistryClient, tag_lists: dict[str, list[str]]
    ) -> list[Update]:
        wanted = policy_of(container.labels, self.default_policy)
        updates: list[Update] = []
        current = sorted(container.digests)[0]
        now = await self._digest(registry, f"{container.name_as_given}:{container.tag}", auth)
        if now is not None and now not in container.digests:
            updates.append(self._update(container, container.tag, current, now))
        if wanted.policy.watches_tags:
            if container.repository not in tag_lists:
                tag_lists[container.repository] = await client.tags(container.repository)
            newer = newest_tag(container.tag, tag_lists[container.repository], wanted.policy, wanted.include)
            if newer is not None:
                digest = await self._digest(registry, f"{container.name_as_given}:{newer}", auth)
                if digest is not None and digest not in container.digests:
                    updates.append(self._update(container, newer, current, digest))
        return updates

    def _update(self, container: Watched, new_tag: str, current: str, new_digest: str) -> Update:
        reference = f"{container.name_as_given}:{new_tag}@{new_digest}"
        return Update(
            update_id(container.name, reference), container.name, f"{container.name_as_given}:{container.tag}",
            container.tag, new_tag, current, new_digest, reference,
        )  # fmt: skip

    async def _digest(self, registry: str, image: str, auth: dict[str, str] | None) -> str | None:
        """The registry's manifest digest for ``image``, asked through the engine; None: no such tag."""

        def ask(api: APIClient) -> dict[str, Any]:
            return dict(api.inspect_distribution(image, auth_config=auth))

        try:
            found = await self.driver.run(ask)
        except APIError as exc:
            if "manifest unknown" in explain_api_error(exc).lower():
                return None  # no such tag (any more): nothing to offer
            raise _engine_problem(registry, exc) from None
        except ActionError as exc:
            raise RegistryProblem(registry, UNREACHABLE, f"not checked: {exc}") from None
        digest = (found.get("Descriptor") or {}).get("digest")
        return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def _engine_problem(registry: str, exc: APIError) -> RegistryProblem:
    """The engine's answer about a registry, as one line of ours (the engine's text names no secret)."""
    text = explain_api_error(exc)
    low = text.lower()
    if "toomanyrequests" in low or "429" in low or "too many requests" in low or "rate limit" in low:
        return RegistryProblem(registry, RATE_LIMITED, "rate-limited the check (HTTP 429)")
    if "unauthorized" in low or "authentication required" in low or "denied" in low or "401" in low or "no basic auth" in low:
        return RegistryProblem(registry, AUTH, "refused the credentials (or access) for its images")
    if any(w in low for w in ("connection refused", "no such host", "timeout", "i/o timeout", "dial tcp", "eof", "connection reset")):
        return RegistryProblem(registry, UNREACHABLE, f"cannot be reached ({text[:160]})")
    if "not found" in low:
        return RegistryProblem(registry, NOT_FOUND, f"does not know an image: {text[:160]}")
    return RegistryProblem(registry, BAD_ANSWER, text[:200])


def _inspect_visible(api: APIClient, visible: Visible) -> list[tuple[str, str, dict[str, str], str, list[str]]]:
    """(name, image as configured, labels, image id, repo digests) of every visible container; in a worker."""
    found = []
    images: dict[str, list[str]] = {}
    for entry in api.containers(all=True):
        names = [n.lstrip("/") for n in entry.get("Names") or []]
        name = next((n for n in names if "/" not in n), None)
        listed = {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}
        if name is None or parse_aside_name(name) is not None or not visible(name, listed):
            continue  # an old container a deploy set aside is not a service of its own
        try:
            info = api.inspect_container(entry["Id"])
        except NotFound:
            continue  # removed meanwhile
        image_id = str(info.get("Image") or "")
        if image_id not in images:
            try:
                images[image_id] = list(api.inspect_image(image_id).get("RepoDigests") or [])
            except NotFound:
                images[image_id] = []
        config = info.get("Config") or {}
        labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
        found.append((name, str(config.get("Image") or ""), labels, image_id, images[image_id]))
    return found


def _same_repository(name: str, repository: str) -> bool:
    try:
        return parse_image_reference(name).repository == repository
    except ImageReferenceError:
        return False


def _parsed(text: str | None) -> ImageReference | None:
    if not text:
        return None
    try:
        return parse_image_reference(text)
    except ImageReferenceError:
        return None


def _with_created(update: Update, created: float | None) -> Update:
    return Update(
        update.id, update.target, update.image, update.current_tag, update.new_tag, update.current_digest,
        update.new_digest, update.reference, created,
    )  # fmt: skip
