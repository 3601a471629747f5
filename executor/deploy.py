"""Deploy and rollback: recreate a container with only its image changed.

A deploy, step by step (each docker call in the driver's thread pool, never on the loop):

1. resolving — the image reference is checked (syntax, then the image policy: the same
   repository as the running container unless the image allowlist admits it; see
   :mod:`policy.images`), then found locally or, only when missing, pulled — or, for an
   approved request, exactly the image it was bound to (:mod:`executor.pinning`): a
   registry digest is pulled only now, with progress, and checked against the approved
   digest (:mod:`executor.pulling`). A failed pull or a wrong digest is a refusal; nothing
   is touched.
2. the deployment is recorded (old container's full inspect JSON, both image ids), then
3. stopping — the old container is stopped with its own StopSignal and StopTimeout and
   renamed aside to ``<name>-wingman-old-<deployment id>`` (kept, not deleted);
4. creating — the new container is created under the old name from the old one's inspect,
   with only the image changed (see :mod:`executor.create_spec`) and joined to every network;
5. starting, then waiting for health (:mod:`executor.health_gate`) — healthy within the
   timeout; without a health check, still running after a window. Unhealthy, an exit, a
   restart or the timeout fail.
6. done — the old container is removed (its image is kept: rollback needs it). Or, on any
   failure from step 3 on, rolling back — the new container is removed, the old one gets
   its name back and is started again — then rolled back, and :class:`DeployFailed`.

``rollback`` goes back to the image the last deploy replaced, BY IMAGE ID, through the
same path. What a crash mid-deploy leaves behind is put right at start-up by
:func:`executor.recovery.recover`, which uses the same health gate and the deployer's restore.

One action per container at a time (the driver's ``locks``, ``executor.locks.TargetLocks``); deploys of
different containers run side by side.

Why this file is longer than about 500 lines: the steps above are one sequence that shares
one deployment record, one lock and one undo (``_replace``, ``_roll_back``, ``restore``);
cut apart, a reader would have to hold several files open to follow a single deploy. What
stands on its own is elsewhere: the create request, the health gate, pinning, the image
rules and crash recovery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from executor.create_spec import CreateSpec, build_create_spec
from executor.deployments import Deployment, DeploymentStore, new_deployment_id
from executor.docker_driver import (
    DeployFailed,
    DockerDriver,
    ImageRef,
    explain_api_error,
    aside_name,
    check_container_name,
    health_log_lines,
    short_id,
    stop_timeout,
)
from executor.errors import ActionError, ActionFailed, Refused
from executor.health_gate import GateVerdict, health_gate
from executor.pinning import ImagePin, find_pin, named_now, short_digest
from executor.progress import Progress, emit, no_progress
from executor.pulling import pull_pinned
from policy.images import (
    ImageReference,
    ImageReferenceError,
    image_policy_problem,
    parse_image_reference,
    repository_of,
)
from policy.names import show

log = logging.getLogger(__name__)

# Wingman's mark on every container a deploy or rollback creates: the deployment's id.
# Recovery removes or keeps a "new" container only when it carries the id of the record it
# is finishing (Docker cannot label a container after it was created, so the OLD container,
# which a deploy only renames, is recognised by its aside name and its recorded id instead).
DEPLOYMENT_LABEL = "wingman.deployment"
DEFAULT_HEALTH_TIMEOUT = 60.0
DEFAULT_RUNNING_WINDOW = 10.0

# -- image references ---------------------------------------------------------------------


def check_image_reference(text: object) -> ImageReference:
    """The parsed reference (see :mod:`policy.images`), or Refused with the reason."""
    try:
        return parse_image_reference(text)
    except ImageReferenceError as exc:
        raise Refused(str(exc)) from None


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeployResult:
    deployment_id: str
    service: str
    action: str  # deploy | rollback
    previous: ImageRef
    current: ImageRef
    seconds: float
    verdict: str  # "healthy" or "running for 10 s"
    summary: str  # one line for people


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a deploy or rollback puts in place of the running container, found under its lock."""

    old_image: dict[str, Any]  # the running image's inspect (its defaults give way to the new image's)
    target: ImageRef
    create_ref: str  # what the new container is created from: a tag, an id or repository@digest
    requested_image: str  # recorded with the deployment
    note: str = ""  # added to the outcome line (a tag that moved since the request)


class _StepFailed(Exception):
    """A step inside the rollback scope failed; the message says which and why."""


# -- the deployer -----------------------------------------------------------------------------


class Deployer:
    """Deploys and rollbacks for the containers of one engine (start-up recovery: ``executor.recovery``)."""

    def __init__(
        self,
        driver: DockerDriver,
        store: DeploymentStore,
        *,
        image_allowlist: Sequence[str] = (),
        health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        running_window: float = DEFAULT_RUNNING_WINDOW,
        poll_interval: float = 0.2,
    ) -> None:
        self.driver = driver
        self.store = store
        self.image_allowlist = list(image_allowlist)
        self.health_timeout = health_timeout
        self.running_window = running_window
        self.poll_interval = poll_interval

    def limits(self, timeout: float | None, running_window: float | None) -> tuple[float, float]:
        """One call's health timeout and running window: the deployer's unless given."""
        return (
            self.health_timeout if timeout is None else timeout,
            self.running_window if running_window is None else running_window,
        )

    # -- pinning: what a request is bound to -------------------------------------------------

    async def pin(self, image: str) -> ImagePin:
        """Resolve ``image`` now, without pulling: the local image's id, else the registry's digest.

        Refused (one line) when the image is neither here nor known to its registry, or the
        registry cannot be reached. The registry is asked through the engine
        (``inspect_distribution``), so the engine's own registry credentials apply.
        """
        ref = check_image_reference(image)

        return await self.driver.run(lambda api: find_pin(api, ref))

    async def pin_rollback(self, name: str) -> ImagePin:
        """The image a rollback of ``name`` would return to, by id; Refused when there is none."""
        check_container_name(name)
        old = await self._inspect_service(name)
        return await self._rollback_target(name, old)

    async def _rollback_target(self, name: str, old: dict[str, Any]) -> ImagePin:
        record = await self.store.rollback_target(name, str(old["Image"]))
        if record is None:
            raise Refused(
                f"no recorded deploy put {name}'s current image ({short_id(str(old['Image']))}) there,"
                " so there is no previous image to go back to"
            )
        if await self._inspect_image(record.prev_image_id) == {}:
            raise Refused(f"the previous image {ImageRef(record.prev_image_tag, record.prev_image_id)} is no longer on this host")
        return ImagePin(record.prev_image_tag, "local", record.prev_image_id)

    # -- deploy ---------------------------------------------------------------------------------

    async def deploy(
        self,
        name: str,
        image: str,
        *,
        requested_by: str,
        approved_by: str | None = None,
        pin: ImagePin | None = None,
        progress: Progress = no_progress,
        timeout: float | None = None,
        running_window: float | None = None,
    ) -> DeployResult:
        """Recreate container ``name`` from ``image``; roll back automatically on failure.

        With ``pin`` (what the request was bound to, see :meth:`pin`) the container is
        created from exactly that image, the image id or ``repository@digest``, whatever
        the tag names by now; the outcome says when the tag has moved. Without one (direct
        calls) the reference is resolved now: the local image, else a pull.

        Raises Refused (nothing touched), Busy, EngineUnavailable, or DeployFailed (with
        what it rolled back to).
        """
        check_container_name(name)
        ref = check_image_reference(image)
        if pin is not None and pin.image != ref.text:
            raise Refused(f"the request was bound to {pin.image}, not {ref.text}; ask again")
        async def plan(old: dict[str, Any]) -> _Plan:
            old_image = await self._inspect_image(str(old["Image"]))
            current = await self._current_repositories(name, old, old_image)
            problem = image_policy_problem(ref, current, self.image_allowlist)
            if problem is not None:
                raise Refused(problem)
            note = ""
            if pin is None:
                new_image = await self._resolve(ref)
                create_ref = ref.text
            else:
                new_image, create_ref, pulled = await self._fetch_pinned(ref, pin, progress)
                note = pulled + await self._tag_moved(ref, pin)
            target = ImageRef(ref.text, str(new_image["Id"]))
            if target.id == old["Image"]:
                raise Refused(f"{name} already runs {target}; there is nothing to deploy")
            return _Plan(old_image, target, create_ref, requested_image=ref.text, note=note)

        return await self._recreate(
            name, "deploy", ref.text, plan, requested_by, approved_by, progress, self.limits(timeout, running_window)
        )

    async def rollback(
        self,
        name: str,
        *,
        requested_by: str,
        approved_by: str | None = None,
        pin: ImagePin | None = None,
        progress: Progress = no_progress,
        timeout: float | None = None,
        running_window: float | None = None,
    ) -> DeployResult:
        """Redeploy the image the last deploy of ``name`` replaced, by image id.

        With ``pin`` (the target found when the rollback was requested) exactly that image
        is deployed, even if another deploy has happened since.
        """
        check_container_name(name)
        if pin is not None and pin.source != "local":
            raise Refused("a rollback goes back to an image on this host; ask again")

        async def plan(old: dict[str, Any]) -> _Plan:
            if pin is None:
                chosen = await self._rollback_target(name, old)
            elif await self._inspect_image(pin.id) == {}:
                raise Refused(f"the approved image {pin} is no longer on this host")
            else:
                chosen = pin
            target = ImageRef(chosen.image, chosen.id)
            if target.id == old["Image"]:
                raise Refused(f"{name} already runs {target}; there is nothing to roll back to")
            # Create from the tag only while it still names that very image: a moved tag
            # must not matter, and the id is what the new container is checked against.
            tagged = await self._inspect_image(target.tag) if repository_of(target.tag) else {}
            create_ref = target.tag if tagged.get("Id") == target.id else target.id
            old_image = await self._inspect_image(str(old["Image"]))
            return _Plan(old_image, target, create_ref, requested_image=target.id)

        return await self._recreate(
            name, "rollback", "previous", plan, requested_by, approved_by, progress, self.limits(timeout, running_window)
        )

    async def _recreate(
        self,
        name: str,
        action: str,
        shown: str,
        plan: Callable[[dict[str, Any]], Awaitable[_Plan]],
        requested_by: str,
        approved_by: str | None,
        progress: Progress,
        limits: tuple[float, float],
    ) -> DeployResult:
        """The path deploy and rollback share: under the container's lock, ``plan`` picks the image, then replace."""
        started = time.monotonic()
        with self.driver.locks.hold(name, f"{requested_by} ({action})"):
            await emit(progress, "resolving", {"service": name, "image": shown})
            old = await self._inspect_service(name)
            _check_replaceable(name, old)
            chosen = await plan(old)
            return await self._replace(
                name, old, chosen, action, requested_by, approved_by, progress=progress, limits=limits, started=started
            )

    async def _fetch_pinned(self, ref: ImageReference, pin: ImagePin, progress: Progress) -> tuple[dict[str, Any], str, str]:
        """The pinned image's inspect, the reference to create from, and a note for the outcome.

        A registry pin is pulled by digest when needed, with progress, and checked against
        the approved digest before it may be used (:mod:`executor.pulling`).
        """
        if pin.source == "local":
            found = await self._inspect_image(pin.id)
            if not found:
                raise Refused(f"the approved image {pin} is no longer on this host; ask again")
            return found, pin.id, ""
        pulled = await pull_pinned(self.driver, ref, pin, progress)
        return pulled.image, pulled.create_ref, pulled.note()

    async def _tag_moved(self, ref: ImageReference, pin: ImagePin) -> str:
        """A note for the outcome when ``ref`` no longer names the pinned image; "" when it does or cannot tell."""
        if ref.digest:
            return ""  # a digest reference cannot move

        try:
            now = await self.driver.run(lambda api: named_now(api, ref, pin))
        except ActionError:
            return ""
        if now == pin.id:
            return ""
        where = f"it names {short_digest(now)} now" if now else "it no longer names an image here"
        return f"; the tag {ref.text} has moved since the request ({where}), the approved {short_digest(pin.id)} ran"

    async def _replace(
        self,
        name: str,
        old: dict[str, Any],
        plan: _Plan,
        action: str,
        requested_by: str,
        approved_by: str | None,
        *,
        progress: Progress,
        limits: tuple[float, float],
        started: float,
    ) -> DeployResult:
        old_image, target, create_ref = plan.old_image, plan.target, plan.create_ref
        previous = ImageRef(await self._display_tag(name, old, old_image), str(old["Image"]))
        old_id = str(old["Id"])
        try:
            record = await self.store.record(
                service=name,
                action=action,
                requested_by=requested_by,
                approved_by=approved_by,
                requested_image=plan.requested_image,
                prev_image_id=previous.id,
                prev_image_tag=previous.tag,
                new_image_id=target.id,
                new_image_tag=target.tag,
                prev_container=old,
                deployment_id=new_deployment_id(),
            )
        except Exception as exc:  # the database: nothing has been touched yet
            log.exception("could not record the deployment of %s", name)
            raise ActionFailed(f"could not record the {action} of {name}, so nothing was touched: {exc}") from None

        new_id: str | None = None
        verdict: GateVerdict | None = None
        try:
            await self.store.set_state(record.id, "replacing")
            await emit(progress, "stopping", {"service": name, "stop_timeout": stop_timeout(old)})
            await self._step("stopping the old container", lambda api: _stop_and_set_aside(api, old, name, record.id))
            await emit(progress, "creating", {"service": name, "image": target.tag, "image_id": target.short_id})
            spec = await self._step(
                "preparing the new container",
                lambda api: build_create_spec(old, old_image, create_ref, api_version=str(api.api_version)),
            )
            spec.body["Labels"] = {**(spec.body.get("Labels") or {}), DEPLOYMENT_LABEL: record.id}
            new_id = await self._step("creating the new container", lambda api: _create(api, name, spec))
            created = new_id
            await self.store.set_state(record.id, "starting", new_container_id=created)
            await self._step("connecting the new container", lambda api: _join_networks(api, created, spec, target.id))
            await emit(progress, "starting", {"service": name})
            await self._step("starting the new container", lambda api: api.start(created))
            await self.store.set_state(record.id, "verifying")
            timeout, window = limits
            verdict = await health_gate(
                self.driver, created, timeout=timeout, window=window, poll_interval=self.poll_interval, progress=progress
            )
            if not verdict.ok:
                raise _StepFailed(verdict.reason)
        except Exception as exc:  # anything from here on is undone; CancelledError is left to recovery
            reason = str(exc) if isinstance(exc, (_StepFailed, ActionError)) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (_StepFailed, ActionError)):
                log.exception("deploy of %s failed unexpectedly", name)
            raise await self._roll_back(record, name, old, previous, target, new_id, reason, verdict, progress) from None

        seconds = time.monotonic() - started
        await self._finish_success(record, old_id)
        outcome = f"{name} now runs {target}, {verdict.reason} after {seconds:.0f} s; it ran {previous}{plan.note}"
        try:
            await self.store.finish(record.id, "succeeded", outcome, {"seconds": round(seconds, 3)})
        except Exception:  # the service is fine; recovery will close the record at the next start
            log.exception("could not close deployment %s", record.id)
        await emit(progress, "done", {"service": name, "image": target.tag, "image_id": target.short_id, "seconds": round(seconds, 1)})
        return DeployResult(record.id, name, action, previous, target, seconds, verdict.reason, outcome)

    async def _finish_success(self, record: Deployment, old_id: str) -> None:
        try:
            await self.store.set_state(record.id, "healthy")
        except Exception:
            log.exception("could not mark deployment %s healthy", record.id)
        try:
            # v=False: anonymous volumes now belong to the new container too.
            await self.driver.run(lambda api: api.remove_container(old_id, v=False, force=True))
        except (APIError, ActionError) as exc:
            # Recovery's sweep removes it at the next start; the service is fine meanwhile.
            log.warning("could not remove the old container of deployment %s: %s", record.id, exc)

    async def _roll_back(
        self,
        record: Deployment,
        name: str,
        old: dict[str, Any],
        previous: ImageRef,
        target: ImageRef,
        new_id: str | None,
        reason: str,
        verdict: GateVerdict | None,
        progress: Progress,
    ) -> DeployFailed:
        verb = "rollback" if record.action == "rollback" else "deploy"
        await emit(progress, "rolling back", {"service": name, "reason": reason})
        try:
            await self.store.set_state(record.id, "rolling_back")
        except Exception:
            log.exception("could not mark deployment %s as rolling back", record.id)
        health_log = list(verdict.health_log) if verdict else []
        last_logs: list[str] = []
        if new_id is not None:
            last_logs = await self.driver.last_logs(new_id, 20)
            if not health_log:
                try:
                    info = await self.driver.run(lambda api: api.inspect_container(new_id))
                    health_log = health_log_lines(info)
                except (APIError, ActionError):
                    pass
        detail = {"reason": reason, "health_log": health_log, "last_logs": last_logs}
        problem = await self.restore(name, old, new_id, record.id, record.prev_was_running)
        if problem is not None:
            outcome = (
                f"{verb} of {name} to {target.tag} failed: {reason}; putting {previous} back failed too"
                f" ({problem}); it is retried at the executor's next start"
            )
            # The record stays open (rolling_back) so recovery tries again.
            await emit(progress, "rolled back", {"service": name, "ok": False, "problem": problem})
            return DeployFailed(outcome, deployment_id=record.id, health_log=health_log, last_logs=last_logs)
        state = "running" if record.prev_was_running else "stopped, as it was"
        outcome = f"{verb} of {name} to {target.tag} failed: {reason}; rolled back to {previous}, {state}"
        try:
            await self.store.finish(record.id, "rolled_back", outcome, detail)
        except Exception:
            log.exception("could not close deployment %s", record.id)
        await emit(progress, "rolled back", {"service": name, "ok": True, "image": previous.tag, "image_id": previous.short_id})
        return DeployFailed(
            outcome, deployment_id=record.id, rolled_back_to=previous, health_log=health_log, last_logs=last_logs
        )

    async def restore(
        self, name: str, old: dict[str, Any], new_id: str | None, deployment_id: str, was_running: bool
    ) -> str | None:
        """Remove the new container, give the old one its name back, start it: None, or what failed."""
        old_id = str(old["Id"])

        def work(api: APIClient) -> str | None:
            try:
                holder: dict[str, Any] | None = api.inspect_container(name)
            except NotFound:
                holder = None
            if holder is not None and holder["Name"] == f"/{name}" and holder["Id"] != old_id:
                if holder["Id"] == new_id or made_by(holder, deployment_id):
                    api.remove_container(holder["Id"], force=True, v=True)
                else:
                    return f"a container named {name} that this deploy did not create ({short_id(holder['Id'])}) is in the way"
            elif new_id is not None:
                try:
                    api.remove_container(new_id, force=True, v=True)
                except NotFound:
                    pass
            try:
                current = api.inspect_container(old_id)
            except NotFound:
                return f"the old container {short_id(old_id)} is gone"
            if current["Name"] != f"/{name}":
                api.rename(old_id, name)
            if was_running and not current["State"].get("Running"):
                api.start(old_id)
            if was_running and not api.inspect_container(old_id)["State"].get("Running"):
                return f"the old container {short_id(old_id)} did not start again"
            return None

        try:
            return await self.driver.run(work)
        except APIError as exc:
            return f"Docker refused: {explain_api_error(exc)}"
        except ActionError as exc:
            return str(exc)

    # -- lookups ------------------------------------------------------------------------------------

    async def _step(self, what: str, fn: Any) -> Any:
        try:
            return await self.driver.run(fn)
        except APIError as exc:
            raise _StepFailed(f"{what} failed: {explain_api_error(exc)}") from None
        except ActionError as exc:
            raise _StepFailed(f"{what} failed: {exc}") from None

    async def _inspect_service(self, name: str) -> dict[str, Any]:
        try:
            return await self.driver.run(lambda api: self.driver.inspect_named(api, name))
        except APIError as exc:
            raise ActionFailed(f"could not inspect {name}: {explain_api_error(exc)}") from None

    async def _inspect_image(self, ref: str) -> dict[str, Any]:
        """The image's inspect, or {} when the engine has no such image."""

        def work(api: APIClient) -> dict[str, Any]:
            try:
                return dict(api.inspect_image(ref))
            except NotFound:
                return {}

        try:
            return await self.driver.run(work)
        except APIError as exc:
            raise ActionFailed(f"could not inspect image {show(ref)}: {explain_api_error(exc)}") from None

    async def _resolve(self, ref: ImageReference) -> dict[str, Any]:
        """The local image; pulled only when missing. Refused when it cannot be had."""
        repository, tag = ref.pull_args

        def pull(api: APIClient) -> Any:
            if ref.digest:
                return api.pull(f"{repository}@{ref.digest}", stream=True, decode=True)
            return api.pull(repository, tag=tag, stream=True, decode=True)

        refusal = f"image {ref.text} is not on this host and could not be pulled"
        return await self.driver.run(lambda api: _have_or_pull(api, ref.text, lambda: pull(api), refusal))

    async def _current_repositories(self, name: str, old: dict[str, Any], old_image: dict[str, Any]) -> set[str]:
        """Every repository the running image goes by (its tag, the image's tags and digests, the record)."""
        texts = [str((old.get("Config") or {}).get("Image") or "")]
        texts += [str(t) for t in old_image.get("RepoTags") or []]
        texts += [str(d).split("@", 1)[0] for d in old_image.get("RepoDigests") or []]
        recorded = await self.store.latest_tag(name, str(old["Image"]))
        if recorded:
            texts.append(recorded)
        return {repo for repo in map(repository_of, texts) if repo}

    async def _display_tag(self, name: str, old: dict[str, Any], old_image: dict[str, Any]) -> str:
        configured = str((old.get("Config") or {}).get("Image") or "")
        if repository_of(configured):
            return configured
        recorded = await self.store.latest_tag(name, str(old["Image"]))
        if recorded:
            return recorded
        tags = old_image.get("RepoTags") or []
        return str(tags[0]) if tags else short_id(str(old["Image"]))


# -- steps run in a worker thread ------------------------------------------------------------------


def _check_replaceable(name: str, old: dict[str, Any]) -> None:
    """Refuse what a recreate cannot do safely, before anything is touched."""
    if (old.get("HostConfig") or {}).get("AutoRemove"):
        # Stopping it would delete it, and with it the way back.
        raise Refused(f"{name} was started with --rm (auto-remove): it cannot be recreated safely; recreate it by hand")


def made_by(container: dict[str, Any], deployment_id: str) -> bool:
    """Whether ``container`` was created by deployment ``deployment_id`` (it carries our label)."""
    labels = (container.get("Config") or {}).get("Labels") or {}
    return bool(deployment_id) and labels.get(DEPLOYMENT_LABEL) == deployment_id


def _have_or_pull(api: APIClient, wanted: str, pull: Callable[[], Any], refusal: str) -> dict[str, Any]:
    """The inspect of image ``wanted``, pulled first when the engine lacks it; Refused (``refusal: why``) when it cannot be had."""
    try:
        return dict(api.inspect_image(wanted))
    except NotFound:
        pass
    errors: list[str] = []
    try:
        for event in pull():
            if isinstance(event, dict) and event.get("error"):
                errors.append(str(event["error"]))
    except APIError as exc:
        errors.append(explain_api_error(exc))
    try:
        return dict(api.inspect_image(wanted))
    except NotFound:
        why = " ".join(errors[-1].split())[:300] if errors else "the registry did not provide it"
        raise Refused(f"{refusal}: {why}") from None


def _stop_and_set_aside(api: APIClient, old: dict[str, Any], name: str, deploy_id: str) -> None:
    state = old.get("State") or {}
    if state.get("Running") or state.get("Restarting"):
        api.stop(old["Id"], timeout=stop_timeout(old))
    api.rename(old["Id"], aside_name(name, deploy_id))


def _create(api: APIClient, name: str, spec: CreateSpec) -> str:
    created = api.create_container_from_config(spec.body, name=name)
    return str(created["Id"])


def _join_networks(api: APIClient, container_id: str, spec: CreateSpec, image_id: str) -> None:
    for network, endpoint in spec.connect:
        links = {}
        for link in endpoint.links:
            target, _, alias = link.partition(":")
            links[target.lstrip("/")] = alias.rsplit("/", 1)[-1] or None
        api.connect_container_to_network(
            container_id,
            network,
            ipv4_address=endpoint.ipv4_address,
            ipv6_address=endpoint.ipv6_address,
            aliases=list(endpoint.aliases) or None,
            links=links or None,
            link_local_ips=list(endpoint.link_local_ips) or None,
            driver_opt=endpoint.driver_opts,
            mac_address=endpoint.mac_address,
        )
    for network in spec.disconnect:
        api.disconnect_container_from_network(container_id, network)
    got = api.inspect_container(container_id)["Image"]
    if got != image_id:
        raise _StepFailed(
            f"the new container got image {short_id(got)} instead of {short_id(image_id)} (the tag moved during the deploy)"
        )
