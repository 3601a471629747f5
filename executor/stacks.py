"""Compose stacks: the containers one project is made of, the order they depend on, the compose file.

Compose writes labels on every container it makes (``com.docker.compose.project``,
``.service``, ``.project.config_files``, ``.project.working_dir``, and, in Compose v2,
``.depends_on``); Wingman reads a stack from those labels alone, without needing the
compose file. Where the file helps it is read, never written:

- the dependency order of a stack's services comes from the ``depends_on`` labels where
  Compose wrote them (v2), else from the compose files the labels name when the executor
  can read them (Debian's docker-compose 1.29 writes no ``depends_on`` label), else from
  the order the containers were created in (Compose creates dependencies first);
- after a deploy or rollback of one service, :func:`compose_file_note` says when the
  compose file still names another image, so that the next ``docker compose up`` would
  bring that one back.

:func:`restart_stack` restarts a stack's services in that order, dependencies first, each
one running (and healthy, when it has a health check) before its dependents restart.
Compose files are parsed with PyYAML's ``safe_load`` (no tag is constructed into an
object), off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from docker.api.client import APIClient
from docker.errors import APIError

from executor.docker_driver import (
    COMPOSE_ONEOFF_LABEL,
    COMPOSE_SERVICE_LABEL,
    DockerDriver,
    explain_api_error,
    health_of,
    labels_of,
    parse_aside_name,
)
from executor.errors import ActionError, ActionFailed, Refused
from executor.progress import Progress, emit, no_progress
from policy.names import COMPOSE_PROJECT_LABEL, container_name_problem, show

DEPENDS_ON_LABEL = "com.docker.compose.depends_on"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
COMPOSE_FILE_MAX_BYTES = 1 << 20  # a compose file is small; a bigger one is not read

ORDER_FROM_LABELS = "the depends_on labels"
ORDER_FROM_FILE = "the compose file"
ORDER_FROM_CREATION = "the order the containers were created in"


@dataclass(frozen=True, slots=True)
class Member:
    """One container of a stack, as its labels and inspect say."""

    name: str
    id: str
    service: str
    created: str  # RFC 3339: sorts in creation order
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class ComposeFile:
    """What the compose files of a project say of each service: its image and what it depends on."""

    paths: tuple[str, ...]
    images: dict[str, str]
    depends_on: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Stack:
    """A project's containers grouped by service, and the order to act on the services in."""

    project: str
    services: dict[str, list[Member]]  # service → its containers, oldest first
    order: list[str]  # dependencies first
    order_from: str  # which of ORDER_FROM_* gave the order
    compose: ComposeFile | None = None


@dataclass(frozen=True, slots=True)
class ServiceOutcome:
    service: str
    containers: list[str]
    ok: bool
    state: str  # "running (healthy)", "not restarted: db failed", "exited (code 1)"

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "containers": self.containers, "ok": self.ok, "state": self.state}


@dataclass(frozen=True, slots=True)
class StackOutcome:
    project: str
    order: list[str]
    order_from: str
    services: list[ServiceOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.services)

    def summary(self, verb: str) -> str:
        done = "; ".join(f"{s.service}: {s.state}" for s in self.services)
        return f"stack {self.project} {verb} in dependency order ({' → '.join(self.order)}, from {self.order_from}): {done}"


# -- reading a stack -------------------------------------------------------------------------


def compose_paths(labels: Mapping[str, str]) -> list[Path]:
    """The compose files the labels name, made absolute against the project's working directory."""
    listed = [p.strip() for p in labels.get(CONFIG_FILES_LABEL, "").split(",") if p.strip()]
    base = labels.get(WORKING_DIR_LABEL, "")
    return [Path(p) if os.path.isabs(p) or not base else Path(base) / p for p in listed]


def read_compose_file(labels: Mapping[str, str]) -> ComposeFile | None:
    """The project's compose files as one (later files override earlier ones); None when unreadable.

    Blocking file I/O: call it in a thread. Only ``services.<name>.image`` and
    ``.depends_on`` (a list, or a mapping of service → condition) are read.
    """
    paths = compose_paths(labels)
    if not paths:
        return None
    images: dict[str, str] = {}
    depends: dict[str, list[str]] = {}
    for path in paths:
        try:
            with path.open("rb") as handle:
                raw = handle.read(COMPOSE_FILE_MAX_BYTES + 1)
            if len(raw) > COMPOSE_FILE_MAX_BYTES:
                return None
            document = yaml.safe_load(raw)
        except (OSError, yaml.YAMLError, ValueError):
            return None
        services = document.get("services") if isinstance(document, dict) else None
        if not isinstance(services, dict):
            return None
        for service, spec in services.items():
            if not isinstance(service, str) or not isinstance(spec, dict):
                continue
            if isinstance(spec.get("image"), str):
                images[service] = spec["image"]
            needs = spec.get("depends_on")
            if isinstance(needs, (list, dict)):
                depends[service] = [str(n) for n in needs if isinstance(n, str)]
    return ComposeFile(tuple(str(p) for p in paths), images, depends)


def depends_on_label(labels: Mapping[str, str]) -> list[str] | None:
    """Compose v2's ``depends_on`` label (``db:service_healthy:false,cache:service_started:true``); None without it."""
    text = labels.get(DEPENDS_ON_LABEL)
    if text is None:
        return None
    return [item.split(":", 1)[0].strip() for item in text.split(",") if item.split(":", 1)[0].strip()]


def dependency_order(
    services: Mapping[str, Sequence[Member]], compose: ComposeFile | None
) -> tuple[list[str], str]:
    """The services, dependencies first, and where the order came from (one of ORDER_FROM_*).

    Ties, and everything a cycle leaves, go in creation order; dependencies on services
    without a container here (scaled to 0, another project) are ignored.
    """
    created = sorted(services, key=lambda s: min(m.created for m in services[s]))
    needs: dict[str, list[str]] | None = None
    from_labels = {s: depends_on_label(services[s][0].labels) for s in services}
    if any(v is not None for v in from_labels.values()):
        needs, source = {s: v or [] for s, v in from_labels.items()}, ORDER_FROM_LABELS
    elif compose is not None and compose.depends_on:
        needs, source = {s: compose.depends_on.get(s, []) for s in services}, ORDER_FROM_FILE
    if needs is None:
        return created, ORDER_FROM_CREATION
    order: list[str] = []
    placed: set[str] = set()
    pending = list(created)
    while pending:
        ready = next((s for s in pending if all(d in placed or d not in services for d in needs[s])), None)
        if ready is None:  # a cycle: the rest in creation order
            order.extend(pending)
            break
        order.append(ready)
        placed.add(ready)
        pending.remove(ready)
    return order, source


def _members(api: APIClient, project: str) -> list[Member]:
    """The project's containers (not one-off ``run`` ones, not ones a deploy set aside); in a worker."""
    found = []
    for entry in api.containers(all=True, filters={"label": f"{COMPOSE_PROJECT_LABEL}={project}"}):
        labels = {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}
        names = [n.lstrip("/") for n in entry.get("Names") or [] if n.count("/") == 1]
        if not names or labels.get(COMPOSE_PROJECT_LABEL) != project or labels.get(COMPOSE_ONEOFF_LABEL) == "True":
            continue
        if parse_aside_name(names[0]) is not None or container_name_problem(names[0]) is not None:
            continue
        info = api.inspect_container(entry["Id"])
        service = labels.get(COMPOSE_SERVICE_LABEL) or names[0]
        found.append(Member(names[0], str(entry["Id"]), service, str(info.get("Created") or ""), labels_of(info)))
    return sorted(found, key=lambda m: m.created)


async def read_stack(driver: DockerDriver, project: str) -> Stack:
    """The stack as the engine has it now; Refused when no container belongs to ``project``."""
    try:
        members = await driver.run(lambda api: _members(api, project))
    except APIError as exc:
        raise ActionFailed(f"Docker refused to list stack {project}: {explain_api_error(exc)}") from None
    if not members:
        raise Refused(f"there is no Compose stack named {show(project)} on this host")
    services: dict[str, list[Member]] = {}
    for member in members:
        services.setdefault(member.service, []).append(member)
    compose = await asyncio.to_thread(read_compose_file, members[0].labels)
    order, source = dependency_order(services, compose)
    return Stack(project, services, order, source, compose)


# -- what the compose file still says ------------------------------------------------------------


def compose_file_note(labels: Mapping[str, str], image: str) -> str:
    """After a deploy or rollback: "" unless the container is a Compose service whose file names another image.

    Blocking file I/O: call it in a thread. The file is only read, never changed.
    """
    project, service = labels.get(COMPOSE_PROJECT_LABEL), labels.get(COMPOSE_SERVICE_LABEL)
    if not project or not service:
        return ""
    paths = compose_paths(labels)
    if not paths:
        return ""
    compose = read_compose_file(labels)
    where = ", ".join(str(p) for p in paths)
    if compose is None:
        return f"; the compose file ({where}) could not be read to check which image it names for {service}"
    named = compose.images.get(service)
    if named is None or named == image:
        return ""
    return (
        f"; the compose file ({where}) still names {named} for {service}: the next `docker compose up`"
        f" of {project} would bring that back (Wingman does not edit it)"
    )


# -- restarting a stack --------------------------------------------------------------------------


async def restart_stack(
    driver: DockerDriver,
    project: str,
    *,
    actor: str,
    health_timeout: float,
    progress: Progress = no_progress,
    poll_interval: float = 0.2,
) -> StackOutcome:
    """Restart every service of ``project``, dependencies first; each must run (and be healthy) before the next.

    When a service fails, the services after it are not restarted (their dependency is
    down) and the outcome says so for each. Holds ``stack:<project>`` for its whole run,
    and each container's own lock while it restarts it.
    """
    with driver.locks.hold(f"stack:{project}", f"{actor} (restart)"):
        stack = await read_stack(driver, project)
        outcome = StackOutcome(project, stack.order, stack.order_from)
        failed: str | None = None
        for service in stack.order:
            names = [m.name for m in stack.services[service]]
            if failed is not None:
                outcome.services.append(ServiceOutcome(service, names, False, f"not restarted: {failed} failed"))
                continue
            await emit(progress, "restarting", {"service": service, "containers": ", ".join(names)})
            states, ok = [], True
            for name in names:
                try:
                    await driver.restart(name, actor=actor)
                    state, healthy = await _wait_healthy(driver, name, health_timeout, poll_interval)
                except ActionError as exc:
                    state, healthy = f"failed: {exc}", False
                states.append(state if len(names) == 1 else f"{name} {state}")
                ok = ok and healthy
            outcome.services.append(ServiceOutcome(service, names, ok, ", ".join(states)))
            if not ok:
                failed = service
        await emit(progress, "done", {"project": project})
        return outcome


async def _wait_healthy(driver: DockerDriver, name: str, timeout: float, poll_interval: float) -> tuple[str, bool]:
    """The container's state once it is healthy (or, without a health check, running); with whether it is."""
    deadline = time.monotonic() + timeout
    while True:
        info = await driver.run(lambda api: driver.inspect_named(api, name))
        state = info.get("State") or {}
        health = health_of(info)
        if not state.get("Running"):
            return f"{state.get('Status', 'stopped')} (exit code {state.get('ExitCode')})", False
        if health is None:
            return "running", True
        if health == "healthy":
            return "running (healthy)", True
        if health == "unhealthy" or time.monotonic() >= deadline:
            return f"running ({health})", False
        await asyncio.sleep(poll_interval)
