"""The Docker driver: status, logs, restart, start and stop of named containers.

Everything here talks to the engine through the docker SDK (7.x), which is synchronous:
every SDK call runs in the driver's own small thread pool, never on the event loop, so a
slow or unreachable engine holds up only the request that is waiting for it.

The driver trusts nothing it is handed. Policy (who may act, which containers are
allowlisted) is decided by the executor before a driver method is called; the driver still
checks that a name is a valid container name that names EXACTLY one existing container
(the engine would otherwise accept an id prefix), and it never lists, counts or hints at a
container its caller's ``visible`` predicate hides.

One action at a time per container: ``DockerDriver.locks`` (``executor.locks``) refuses a second restart,
start, stop, deploy or rollback on a container that is busy, naming who holds it. The
deploy module (``executor.deploy``) takes the same locks through ``DockerDriver.locks``.

Errors are the executor's family (``executor.errors``): :class:`Refused`, :class:`Busy`,
:class:`ActionFailed` (and :class:`DeployFailed`), :class:`EngineUnavailable`; ``str(error)``
is one line that can be shown to a person as it is. Nothing in this module raises anything else to its
callers for an engine failure, and no traceback is meant to reach a user.

Why this file is longer than about 500 lines: besides the driver it holds the small values
and name rules of containers (``ContainerStatus``, ``ImageRef``, aside names, log
cleaning) that the deployer and recovery share with it; they are a few lines each and
are read beside the driver methods that make them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests
from docker.api.client import APIClient
from docker.errors import APIError, DockerException, NotFound

from executor.errors import ActionError, ActionFailed, Refused, Unavailable
from executor.locks import TargetLocks
from executor.progress import Progress, emit, format_duration, no_progress
from policy.names import COMPOSE_PROJECT_LABEL, container_name_problem, project_of, show

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LOG_LINES_DEFAULT = 50
LOG_LINES_MAX = 500
LOG_LINE_MAX_CHARS = 2000
DEFAULT_STOP_TIMEOUT = 10  # the engine's own default when a container sets no StopTimeout

# What a container's name and labels must satisfy to be listed or acted on (policy's word).
Visible = Callable[[str, Mapping[str, str] | None], bool]
# Compose's labels besides the project (policy.names.COMPOSE_PROJECT_LABEL).
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"

# Containers renamed aside during a deploy are called "<name>-wingman-old-<deploy id>":
# recognisable after a crash, and never listed or acted on as services of their own.
ASIDE_MARKER = "-wingman-old-"
_ASIDE_NAME = re.compile(r"(?P<service>.+)-wingman-old-(?P<deploy>[0-9a-f]{8,32})")


# -- errors -------------------------------------------------------------------------------


class EngineUnavailable(Unavailable):
    """The Docker engine could not be reached or did not answer."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image as shown to people (``tag``) and as Docker knows it (``id``, sha256:…)."""

    tag: str
    id: str

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    def __str__(self) -> str:
        return f"{self.tag} ({self.short_id})"


class DeployFailed(ActionFailed):
    """A deploy or rollback failed; what it rolled back to and why are attached.

    ``rolled_back_to`` is the image the service runs again, or None when even the restore
    failed (the reason then says what is left to do by hand). ``health_log`` holds the
    health check's last outputs and ``last_logs`` the failed container's last 20 log lines,
    both already cleaned for showing (ANSI stripped, secrets masked).
    """

    def __init__(
        self,
        reason: str,
        *,
        deployment_id: str | None = None,
        rolled_back_to: ImageRef | None = None,
        health_log: Sequence[str] = (),
        last_logs: Sequence[str] = (),
    ) -> None:
        super().__init__(reason, last_logs=last_logs)
        self.deployment_id = deployment_id
        self.rolled_back_to = rolled_back_to
        self.health_log = list(health_log)


# -- values returned ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    state: str  # Docker's: created, running, restarting, paused, exited, dead, removing
    health: str | None  # starting, healthy, unhealthy; None without a health check
    image: str  # the tag the container was created from (or the image's own tag)
    image_id: str  # short: 12 hex digits
    started_at: datetime | None
    uptime_seconds: int | None  # None unless running
    restart_count: int
    exit_code: int | None  # None while running
    project: str | None = None  # the Compose project and service its labels name, if any
    service: str | None = None
    created: str = ""  # Docker's creation time (RFC 3339), for a stack's creation order

    def summary(self) -> str:
        """One line for people: ``web: running (healthy), app:2 [1a2b3c4d5e6f], up 3m 2s, 0 restarts``."""
        state = self.state if self.health is None else f"{self.state} ({self.health})"
        if self.uptime_seconds is not None:
            since = f"up {format_duration(self.uptime_seconds)}"
        elif self.exit_code is not None and self.state in ("exited", "dead"):
            since = f"exit code {self.exit_code}"
        else:
            since = "not running"
        restarts = "1 restart" if self.restart_count == 1 else f"{self.restart_count} restarts"
        return f"{self.name}: {state}, {self.image} [{self.image_id}], {since}, {restarts}"


@dataclass(frozen=True, slots=True)
class ContainerLogs:
    name: str
    lines: list[str]
    requested: int  # what was asked for, after the 500-line cap
    capped: bool  # True when more than LOG_LINES_MAX was asked for


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    name: str
    action: str  # restart, start, stop
    status: ContainerStatus
    changed: bool  # False when the container already was in the wanted state
    summary: str


# -- text helpers -------------------------------------------------------------------------


def short_id(image_or_container_id: str) -> str:
    return image_or_container_id.removeprefix("sha256:")[:12]


def parse_docker_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; its zero time (never started) is None."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(timezone.utc)


# CSI sequences (colours, cursor moves), OSC sequences (titles, links), other 2-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SECRET_WORDS = r"(?:TOKEN|PASSWORD|PASSWD|PASSPHRASE|SECRET|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)"
# KEY=value, KEY: value, "key": "value" where the key contains a secret word.
_SECRET_ASSIGNMENT = re.compile(
    rf"""(?P<key>["']?[A-Za-z0-9_.\-]*{_SECRET_WORDS}[A-Za-z0-9_.\-]*["']?\s*[=:]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,;&"']+)""",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"""(?P<key>\b(?:Proxy-)?Authorization["']?\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|.+)""", re.IGNORECASE
)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=\-]+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<key>\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)(?P<value>[^\s/@]+)(?=@)", re.IGNORECASE)
MASK = "****"


def _masked(match: re.Match[str]) -> str:
    value = match.group("value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f"{match.group('key')}{value[0]}{MASK}{value[0]}"
    return f"{match.group('key')}{MASK}"


def mask_secrets(line: str) -> str:
    """The line with the values of obvious secrets replaced by ``****``."""
    for pattern in (_AUTHORIZATION, _BEARER, _URL_PASSWORD, _SECRET_ASSIGNMENT):
        line = pattern.sub(_masked, line)
    return line


def clean_log_text(raw: bytes | str) -> list[str]:
    """Log output as lines fit to show: decoded, ANSI and control codes gone, secrets masked."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    lines: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        # A carriage return redraws the line on a terminal: keep what was left showing.
        if "\r" in line:
            line = line.rsplit("\r", 1)[1]
        line = _CONTROL.sub("", _ANSI.sub("", line)).replace("\t", "    ")
        line = mask_secrets(line)
        if len(line) > LOG_LINE_MAX_CHARS:
            line = line[: LOG_LINE_MAX_CHARS - 1] + "…"
        lines.append(line)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# -- names --------------------------------------------------------------------------------


def aside_name(service: str, deploy_id: str) -> str:
    """The temporary name a deploy gives the old container while the new one proves itself."""
    return f"{service}{ASIDE_MARKER}{deploy_id}"


def parse_aside_name(name: str) -> tuple[str, str] | None:
    """``(service, deploy id)`` for a name made by :func:`aside_name`, else None."""
    match = _ASIDE_NAME.fullmatch(name)
    return None if match is None else (match.group("service"), match.group("deploy"))


def check_container_name(name: object) -> str:
    """The name when it may be acted on; otherwise Refused, with the reason."""
    problem = container_name_problem(name)
    if problem is not None:
        raise Refused(problem)
    assert isinstance(name, str)
    if parse_aside_name(name) is not None:
        raise Refused(f"{show(name)} is a temporary container of a deploy; act on the service's own name")
    return name


def _no_such_container(name: str) -> Refused:
    return Refused(f"there is no container named {show(name)}")


def labels_of(info: dict[str, Any]) -> dict[str, str]:
    """A container's labels (from its inspect), as the engine has them."""
    labels = (info.get("Config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def stop_timeout(info: dict[str, Any]) -> int:
    """The container's own StopTimeout (what ``docker stop`` without ``-t`` would wait)."""
    value = (info.get("Config") or {}).get("StopTimeout")
    return int(value) if isinstance(value, int) and value >= 0 else DEFAULT_STOP_TIMEOUT


def health_of(info: dict[str, Any]) -> str | None:
    health = (info.get("State") or {}).get("Health")
    return health.get("Status") if isinstance(health, dict) else None


def health_log_lines(info: dict[str, Any], limit: int = 5) -> list[str]:
    """The newest health check results as cleaned lines: ``exit 1: <output>``."""
    health = (info.get("State") or {}).get("Health")
    if not isinstance(health, dict):
        return []
    lines: list[str] = []
    for probe in (health.get("Log") or [])[-limit:]:
        output = " | ".join(clean_log_text(str(probe.get("Output") or "").strip())) or "(no output)"
        lines.append(f"exit {probe.get('ExitCode')}: {output}")
    return lines


# -- the driver ---------------------------------------------------------------------------


class DockerDriver:
    """Actions on named containers of one Docker engine.

    ``base_url`` is ``DOCKER_HOST`` (None: the local socket). The SDK client is made on
    first use, in a worker thread, and made again after the engine was unreachable, so the
    executor starts even while Docker is down.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        workers: int = 8,
        settle_seconds: float = 1.0,
        locks: TargetLocks[str] | None = None,
        registry_auth: Path | None = None,
    ) -> None:
        self.base_url = base_url
        # The Docker config.json whose registry credentials the engine is given for pulls and
        # manifest look-ups (WINGMAN_REGISTRY_AUTH); None: the SDK's own default.
        self.registry_auth = registry_auth
        self.timeout = timeout
        self.settle_seconds = settle_seconds
        self.locks = locks or TargetLocks[str]()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wingman-docker")
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    @property
    def where(self) -> str:
        return self.base_url or DEFAULT_SOCKET

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- running SDK calls off the loop ---------------------------------------------------

    async def run(self, fn: Callable[[APIClient], T]) -> T:
        """Run ``fn(api)`` in the driver's thread pool; engine failures become EngineUnavailable.

        Docker's own refusals (``docker.errors.APIError``, ``NotFound``) pass through for the
        caller to word.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[APIClient], T]) -> T:
        try:
            return fn(self._api())
        except APIError:
            raise
        except ActionError:
            raise
        except requests.exceptions.ReadTimeout:
            raise EngineUnavailable(
                f"the Docker engine at {self.where} did not answer within {self.timeout:g} s"
            ) from None
        except (requests.exceptions.RequestException, DockerException, OSError) as exc:
            self._forget_client()
            if "timed out" in str(exc).lower():  # the first call's version query wraps its timeout
                raise EngineUnavailable(
                    f"the Docker engine at {self.where} did not answer within {self.timeout:g} s"
                ) from None
            raise EngineUnavailable(f"the Docker engine at {self.where} is unreachable: {_cause(exc)}") from None

    def _api(self) -> APIClient:
        with self._client_lock:
            if self._client is None:
                # version="auto" asks the engine which API it speaks: the SDK's default
                # (1.44) is refused by older engines such as Debian 12's 20.10.
                self._client = docker.DockerClient(
                    base_url=self.base_url or DEFAULT_SOCKET, version="auto", timeout=max(1, math.ceil(self.timeout))
                )
                if self.registry_auth is not None:
                    self._client.api.reload_config(str(self.registry_auth))
            return self._client.api

    def _forget_client(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # -- shared lookups ----------------------------------------------------------------------

    def inspect_named(self, api: APIClient, name: str) -> dict[str, Any]:
        """Inspect the container whose name is exactly ``name`` (no id prefixes); in a worker."""
        try:
            info: dict[str, Any] = api.inspect_container(name)
        except NotFound:
            raise _no_such_container(name) from None
        if str(info.get("Name", "")).lstrip("/") != name:
            raise _no_such_container(name)
        return info

    async def inspect(self, name: str) -> dict[str, Any]:
        check_container_name(name)
        return await self.run(lambda api: self.inspect_named(api, name))

    # -- status ------------------------------------------------------------------------------

    async def status(self, visible: Visible, name: str | None = None, *, project: str | None = None) -> list[ContainerStatus]:
        """Status of every container ``visible(name, labels)`` admits, by name; or of that one container.

        With ``project``, only the containers Compose labelled with that project (one-off
        ``run`` containers left out). A hidden container is answered exactly like a missing one.
        """
        if name is not None:
            check_container_name(name)

            def one(api: APIClient) -> ContainerStatus:
                info = self.inspect_named(api, name)
                if not visible(name, labels_of(info)):
                    raise _no_such_container(name)
                return _status_of(api, info)

            return [await self.run(one)]

        def listing(api: APIClient) -> list[tuple[str, str, dict[str, str]]]:
            named = []
            filters = {"label": f"{COMPOSE_PROJECT_LABEL}={project}"} if project is not None else None
            for entry in api.containers(all=True, filters=filters):
                # Names of linked containers look like "/other/alias": only a container's own counts.
                names = [n.lstrip("/") for n in entry.get("Names") or [] if n.count("/") == 1]
                labels = dict(entry.get("Labels") or {})
                if project is not None and labels.get(COMPOSE_ONEOFF_LABEL) == "True":
                    continue
                if names and parse_aside_name(names[0]) is None and container_name_problem(names[0]) is None:
                    named.append((names[0], str(entry["Id"]), labels))
            return named

        def collect(api: APIClient, wanted: list[str]) -> list[ContainerStatus]:
            statuses = []
            for container_id in wanted:
                try:
                    statuses.append(_status_of(api, api.inspect_container(container_id)))
                except NotFound:
                    continue  # removed between the listing and the inspect
            return sorted(statuses, key=lambda s: s.name)

        try:
            named = await self.run(listing)
            # The caller's predicate runs here, on the loop, never in a worker thread.
            wanted = [container_id for own, container_id, labels in named if visible(own, labels)]
            return await self.run(lambda api: collect(api, wanted))
        except APIError as exc:
            raise ActionFailed(f"Docker refused the status query: {explain_api_error(exc)}") from None

    # -- logs -----------------------------------------------------------------------------------

    async def logs(self, name: str, lines: int = LOG_LINES_DEFAULT) -> ContainerLogs:
        """The last ``lines`` lines (at most 500) of stdout and stderr, cleaned for showing."""
        check_container_name(name)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 1:
            raise Refused(f"{show(lines)} is not a number of lines: give a whole number from 1 to {LOG_LINES_MAX}")
        capped = lines > LOG_LINES_MAX
        wanted = min(lines, LOG_LINES_MAX)

        def read(api: APIClient) -> list[str]:
            info = self.inspect_named(api, name)
            raw = api.logs(info["Id"], stdout=True, stderr=True, tail=wanted, timestamps=False)
            return clean_log_text(raw)[-wanted:]

        try:
            text = await self.run(read)
        except APIError as exc:
            raise ActionFailed(f"Docker refused to read the logs of {name}: {explain_api_error(exc)}") from None
        return ContainerLogs(name=name, lines=text, requested=wanted, capped=capped)

    async def last_logs(self, container_id: str, lines: int = 20) -> list[str]:
        """The last lines of a container by id, cleaned; empty when they cannot be read."""
        try:
            raw = await self.run(lambda api: api.logs(container_id, stdout=True, stderr=True, tail=lines))
        except (APIError, ActionError):
            return []
        return clean_log_text(raw)[-lines:]

    # -- restart, start, stop ----------------------------------------------------------------

    async def restart(self, name: str, *, actor: str, progress: Progress = no_progress) -> ActionOutcome:
        """Restart with the container's own StopSignal and StopTimeout; confirm it runs again."""
        check_container_name(name)
        with self.locks.hold(name, f"{actor} (restart)"):
            info = await self._inspect_for_action(name, "restart")
            await emit(progress, "restarting", {"container": name, "stop_timeout": stop_timeout(info)})
            before = (info.get("State") or {}).get("StartedAt")
            await self._act(name, "restart", lambda api: api.restart(info["Id"], timeout=stop_timeout(info)))
            status = await self._confirm_running(name, info["Id"], "restart", previous_start=before)
            outcome = ActionOutcome(name, "restart", status, True, f"{name} restarted: {status.summary()}")
            await emit(progress, "done", {"container": name, "state": status.state})
            return outcome

    async def start(self, name: str, *, actor: str, progress: Progress = no_progress) -> ActionOutcome:
        """Start a stopped container; confirm it is running (and stays so briefly)."""
        check_container_name(name)
        with self.locks.hold(name, f"{actor} (start)"):
            info = await self._inspect_for_action(name, "start")
            if (info.get("State") or {}).get("Running"):
                status = await self._status(info["Id"], name)
                return ActionOutcome(name, "start", status, False, f"{name} was already running: {status.summary()}")
            await emit(progress, "starting", {"container": name})
            await self._act(name, "start", lambda api: api.start(info["Id"]))
            status = await self._confirm_running(name, info["Id"], "start", previous_start=None)
            await emit(progress, "done", {"container": name, "state": status.state})
            return ActionOutcome(name, "start", status, True, f"{name} started: {status.summary()}")

    async def stop(self, name: str, *, actor: str, progress: Progress = no_progress) -> ActionOutcome:
        """Stop with the container's own StopSignal and StopTimeout; confirm it has stopped."""
        check_container_name(name)
        with self.locks.hold(name, f"{actor} (stop)"):
            info = await self._inspect_for_action(name, "stop")
            state = info.get("State") or {}
            if not state.get("Running") and not state.get("Restarting"):
                status = await self._status(info["Id"], name)
                return ActionOutcome(name, "stop", status, False, f"{name} was not running: {status.summary()}")
            await emit(progress, "stopping", {"container": name, "stop_timeout": stop_timeout(info)})
            await self._act(name, "stop", lambda api: api.stop(info["Id"], timeout=stop_timeout(info)))
            status = await self._status(info["Id"], name)
            if status.state in ("running", "restarting"):
                raise ActionFailed(f"{name} is still {status.state} after stop")
            await emit(progress, "done", {"container": name, "state": status.state})
            return ActionOutcome(name, "stop", status, True, f"{name} stopped: {status.summary()}")

    async def _inspect_for_action(self, name: str, action: str) -> dict[str, Any]:
        try:
            return await self.run(lambda api: self.inspect_named(api, name))
        except APIError as exc:
            raise ActionFailed(f"could not {action} {name}: {explain_api_error(exc)}") from None

    async def _act(self, name: str, action: str, fn: Callable[[APIClient], Any]) -> None:
        try:
            await self.run(fn)
        except NotFound:
            raise ActionFailed(f"could not {action} {name}: it was removed meanwhile") from None
        except APIError as exc:
            raise ActionFailed(f"could not {action} {name}: {explain_api_error(exc)}") from None

    async def _status(self, container_id: str, name: str) -> ContainerStatus:
        try:
            return await self.run(lambda api: _status_of(api, api.inspect_container(container_id)))
        except NotFound:
            raise ActionFailed(f"{name} was removed meanwhile") from None
        except APIError as exc:
            raise ActionFailed(f"could not read the state of {name}: {explain_api_error(exc)}") from None

    async def _confirm_running(
        self, name: str, container_id: str, action: str, *, previous_start: str | None
    ) -> ContainerStatus:
        """Running now and still running ``settle_seconds`` later, without a restart between."""
        first = await self.run(lambda api: api.inspect_container(container_id))
        deadline = time.monotonic() + self.settle_seconds
        info = first
        while True:
            state = info.get("State") or {}
            restarted = info.get("RestartCount", 0) != first.get("RestartCount", 0)
            if not state.get("Running") or state.get("Restarting") or restarted:
                logs = await self.last_logs(container_id)
                detail = f"exit code {state.get('ExitCode')}" if not state.get("Running") else "it keeps restarting"
                raise ActionFailed(f"{name} did not stay running after {action}: {detail}", last_logs=logs)
            if previous_start is not None and state.get("StartedAt") == previous_start:
                raise ActionFailed(f"{name} was not restarted: it still runs the process started at {previous_start}")
            if time.monotonic() >= deadline:
                return await self._status(container_id, name)
            await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
            info = await self.run(lambda api: api.inspect_container(container_id))


def _status_of(api: APIClient, info: dict[str, Any]) -> ContainerStatus:
    """A ContainerStatus from an inspect; with ``api``, an image created by id is shown by tag."""
    state = info.get("State") or {}
    started = parse_docker_time(state.get("StartedAt"))
    running = bool(state.get("Running"))
    uptime = int(max(time.time() - started.timestamp(), 0)) if running and started else None
    image = str((info.get("Config") or {}).get("Image") or "")
    image_id = str(info.get("Image") or "")
    if not image or image.startswith("sha256:"):
        image = _tag_of_image(api, image_id)
    labels = labels_of(info)
    return ContainerStatus(
        project=project_of(labels),
        service=labels.get(COMPOSE_SERVICE_LABEL) if project_of(labels) else None,
        created=str(info.get("Created") or ""),
        name=str(info.get("Name", "")).lstrip("/"),
        state=str(state.get("Status") or "unknown"),
        health=health_of(info),
        image=image or "<untagged>",
        image_id=short_id(image_id),
        started_at=started,
        uptime_seconds=uptime,
        restart_count=int(info.get("RestartCount") or 0),
        exit_code=None if running else state.get("ExitCode"),
    )


def _tag_of_image(api: APIClient, image_id: str) -> str:
    try:
        tags = api.inspect_image(image_id).get("RepoTags") or []
    except APIError:
        return ""
    return str(tags[0]) if tags else ""


def _cause(exc: BaseException) -> str:
    """The innermost OS-level reason (``connection refused``) or the exception's own words."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException) and id(arg) not in seen:
                current = arg
                break
        else:
            current = current.__cause__ or current.__context__
    text = " ".join(str(exc).split())
    for known in ("Connection refused", "No such file or directory", "Permission denied"):
        if known in text:
            return known.lower()
    return text[:200] or type(exc).__name__


def explain_api_error(exc: APIError) -> str:
    text = exc.explanation if isinstance(exc.explanation, str) and exc.explanation else str(exc)
    return " ".join(text.split())[:300]
