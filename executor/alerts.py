"""Alerts: what the Docker engine's events say about allowlisted containers, as incidents.

An **incident** is one container's episode of trouble: it opens at the first death
(``die``, with its exit code and whether the kernel's OOM killer did it), OOM kill of a
process, or failed health check (``health_status: unhealthy``), counts every further one
(a restart loop is one incident whose count grows, not a message per restart), and closes
when the container runs again and is healthy: with a health check, healthy; without one,
running for ``Timing.recovery`` seconds on end. Incidents live in the executor's database
(table ``incidents``); opening and closing each is an audit entry.

What the chat sees goes through the outbox like approval messages do: events of kind
``alert`` with ``ref`` ``alert:<id>``, so the first one posts the message and the later
ones (counts, more containers, recovery) edit it in place. Incidents opened within
``Timing.group`` seconds of each other share one message (the engine restarting, a host
rebooting), and a message is rewritten at most once per ``Timing.group`` seconds however
fast its containers flap. Kind ``alert`` is never held by quiet hours (``bot.quiet`` holds
only the kinds it names as informational).

What is left out:
- containers the policy does not show (``policy.container_visible``), the temporary ones
  a deploy sets aside, a container labelled ``wingman.alerts=off``, and everything when
  ``WINGMAN_ALERTS=off``;
- whatever Wingman itself does: an event on a container while the Docker driver's
  ``TargetLocks`` hold it (a deploy and its health gate and rollback, a restart, a stop,
  crash recovery) is Wingman's own doing (``TargetLocks.held_at``, by the event's time);
  a deploy that fails its health gate is told by its approval message, not by an alert.

The events come from :mod:`executor.engine_events` (a thread, reconnecting when the engine
restarts). Each (re)connection compares every shown container's state with the last one
known: a container that was running and is not any more, or has turned unhealthy, while
the stream was down opens an incident as the event would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from docker.api.client import APIClient
from docker.errors import APIError, NotFound
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import AuditStore
from executor.deployments import DeploymentStore
from executor.docker_driver import DockerDriver, Visible, health_of, parse_aside_name, parse_docker_time
from executor.engine_events import EngineEvents, Signal
from executor.errors import ActionError
from executor.outbox import Outbox
from executor.progress import format_duration
from executor.schema import incidents
from policy.names import container_name_problem

log = logging.getLogger("wingman.executor")

SILENCE_LABEL = "wingman.alerts"  # =off silences one container
LOG_TAIL = 8
OPEN, CLOSED = "open", "closed"


@dataclass
class Timing:
    """How alerts pace themselves (tests shorten these)."""

    group: float = 3.0  # incidents opened this close together share one message; edits at most this often
    recovery: float = 10.0  # without a health check, running this long on end counts as recovered
    sweep: float = 2.0  # open incidents are looked at this often for recovery
    slack: float = 1.0  # an event this close to Wingman's own action on the container is that action's


# -- incidents ----------------------------------------------------------------------------


@dataclass
class Incident:
    id: str
    container: str
    message: str  # the outbox ref of the chat message that shows it
    state: str
    facts: dict[str, Any]  # kind (exited | oom | unhealthy), exit_code, oom, logs, rollback
    count: int
    opened_at: float
    last_at: float
    closed_at: float | None = None

    def headline(self) -> str:
        """``web exited (137, OOM killed) · restarted 4 times in 5m 0s`` (plain text, for the audit)."""
        kind, code = self.facts.get("kind"), self.facts.get("exit_code")
        if kind == "unhealthy":
            what = "is unhealthy"
        elif kind == "oom" and code is None:
            what = "had a process OOM killed"
        else:
            details = [str(code)] if code is not None else []
            if self.facts.get("oom"):
                details.append("OOM killed")
            what = "exited" + (f" ({', '.join(details)})" if details else "")
        line = f"{self.container} {what}"
        if self.count > 1:
            times = "once" if self.count == 2 else f"{self.count - 1} times"
            line += f" · restarted {times} in {format_duration(self.last_at - self.opened_at)}"
        if self.closed_at is not None:
            line += f" · recovered after {format_duration(self.closed_at - self.opened_at)}"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "container": self.container, "state": self.state, "count": self.count,
            "opened_at": self.opened_at, "last_at": self.last_at, "closed_at": self.closed_at,
            "headline": self.headline(), **self.facts,
        }  # fmt: skip


class IncidentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, incident: Incident) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(incidents).values(**_row(incident)))

    async def save(self, incident: Incident) -> None:
        values = _row(incident)
        del values["id"]
        async with self.engine.begin() as conn:
            await conn.execute(update(incidents).where(incidents.c.id == incident.id).values(**values))

    async def open_ones(self) -> list[Incident]:
        return await self._select(incidents.c.state == OPEN)

    async def of_message(self, message: str) -> list[Incident]:
        return await self._select(incidents.c.message == message)

    async def _select(self, where: Any) -> list[Incident]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(incidents).where(where).order_by(incidents.c.opened_at, incidents.c.id))).mappings().all()
        return [
            Incident(r["id"], r["container"], r["message"], r["state"], json.loads(r["facts"]), r["count"], r["opened_at"], r["last_at"], r["closed_at"])
            for r in rows
        ]  # fmt: skip


def _row(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id, "container": incident.container, "message": incident.message, "state": incident.state,
        "facts": json.dumps(incident.facts, ensure_ascii=False), "count": incident.count,
        "opened_at": incident.opened_at, "last_at": incident.last_at, "closed_at": incident.closed_at,
    }  # fmt: skip


# -- what a container looks like ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """A container's state as last known: enough to tell what changed while nobody watched."""

    id: str
    running: bool
    health: str | None
    started_at: str


def seen_of(info: dict[str, Any]) -> Seen:
    state = info.get("State") or {}
    running = bool(state.get("Running")) and not state.get("Restarting")
    return Seen(str(info.get("Id", "")), running, health_of(info), str(state.get("StartedAt") or ""))


def silenced(info: dict[str, Any]) -> bool:
    labels = (info.get("Config") or {}).get("Labels") or {}
    return str(labels.get(SILENCE_LABEL, "")).strip().lower() in ("off", "false", "no", "0")


def secret_values(info: dict[str, Any]) -> list[str]:
    """Values of the container's environment: never shown, even when a log line prints one."""
    values = []
    for entry in (info.get("Config") or {}).get("Env") or []:
        _, _, value = str(entry).partition("=")
        if len(value) >= 4:  # shorter values (0, yes, on) are everywhere in logs and guard nothing
            values.append(value)
    return sorted(values, key=len, reverse=True)


def scrub(lines: list[str], secrets_: list[str]) -> list[str]:
    out = []
    for line in lines:
        for value in secrets_:
            line = line.replace(value, "****")
        out.append(line)
    return out


# -- the watcher --------------------------------------------------------------------------


class Alerts:
    """Follows the engine, keeps incidents, tells the chat. ``start`` then ``stop``."""

    def __init__(
        self,
        *,
        driver: DockerDriver,
        store: IncidentStore,
        outbox: Outbox,
        audit: AuditStore,
        visible: Visible,
        deployments: DeploymentStore | None = None,
        clock: Callable[[], float] = time.time,
        timing: Timing | None = None,
    ) -> None:
        self.driver = driver
        self.store = store
        self.outbox = outbox
        self.audit = audit
        self.visible = visible
        self.deployments = deployments
        self.clock = clock
        self.timing = timing or Timing()
        self.connections = 0  # how many times the stream was (re)connected and compared
        self._open: dict[str, Incident] = {}  # container name -> its open incident
        self._known: dict[str, Seen] = {}
        self._group: tuple[str, float] | None = None  # the newest message and when it was opened
        self._dirty: set[str] = set()
        self._changed = asyncio.Event()
        self._signals: asyncio.Queue[Signal] = asyncio.Queue()
        self._events: EngineEvents | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lost: str | None = None  # why the stream is down, while it is
        self._died_at: dict[str, float] = {}  # container -> time of its last die event
        self._side: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._open = {i.container: i for i in await self.store.open_ones()}
        loop = asyncio.get_running_loop()
        self._events = EngineEvents(self.driver.base_url, lambda s: loop.call_soon_threadsafe(self._signals.put_nowait, s))
        self._events.start()
        for name, work in (("alerts-events", self._consume), ("alerts-recovery", self._sweep), ("alerts-messages", self._flush)):
            self._tasks.append(asyncio.create_task(self._forever(name, work), name=name))

    def last_known(self, name: str) -> Seen | None:
        """The container's state as last seen (by an event or a comparison)."""
        return self._known.get(name)

    async def stop(self) -> None:
        if self._events is not None:
            await asyncio.to_thread(self._events.stop)
        for task in [*self._tasks, *self._side]:
            task.cancel()
        for task in [*self._tasks, *self._side]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._dirty:  # what changed in the last moments still reaches the chat
            with contextlib.suppress(Exception):
                await self._write_messages()

    async def _forever(self, name: str, work: Callable[[], Any]) -> None:
        """Run ``work`` again after any failure (the database, the engine, a bug), logged once a try."""
        while True:
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - alerts must outlive whatever goes wrong
                log.error("alerts: %s failed (%s); going on", name, exc, exc_info=not isinstance(exc, (ActionError, APIError)))
                await asyncio.sleep(self.timing.sweep)

    # -- the engine's events ---------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            signal = await self._signals.get()
            if signal.kind == "connected":
                await self._compare()
                self.connections += 1
                if self._lost is not None:
                    log.info("alerts: following the Docker engine's events again")
                self._lost = None
            elif signal.kind == "lost":
                if signal.reason != self._lost:  # one line per trouble, not one per try
                    log.warning("alerts: no event stream from the Docker engine (%s); reconnecting with back-off", signal.reason)
                self._lost = signal.reason
            else:
                await self._on_event(signal.event)

    async def _on_event(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        name, action, container_id = str(attributes.get("name", "")), str(event.get("Action", "")), str(actor.get("ID", ""))
        if not self._shown(name, attributes):  # an event's attributes carry the container's labels
            return
        when = int(event.get("timeNano") or 0) / 1e9 or self.clock()
        try:
            info = await self.driver.run(lambda api: api.inspect_container(container_id))
        except NotFound:
            self._known.pop(name, None)
            return
        if str(info.get("Name", "")).lstrip("/") != name:
            return  # renamed since (a deploy setting it aside)
        self._known[name] = seen_of(info)
        if silenced(info) or self.driver.locks.held_at(name, when, slack=self.timing.slack):
            return
        if action == "die":
            self._died_at[name] = when
            code = attributes.get("exitCode")
            oom = bool((info.get("State") or {}).get("OOMKilled"))
            await self._trouble(name, info, "oom" if oom else "exited", int(code) if str(code).lstrip("-").isdigit() else None)
        elif action == "oom":
            # Most often the container dies of it at once, and its die event tells (with
            # OOMKilled); only a container still up a moment later lost just a process.
            self._spawn(self._oom_without_death(name, container_id, when))
        elif action.startswith("health_status") and action.partition(":")[2].strip() == "unhealthy":
            await self._trouble(name, info, "unhealthy", None)

    async def _oom_without_death(self, name: str, container_id: str, when: float) -> None:
        await asyncio.sleep(max(self.timing.group, 1.0))
        if self._died_at.get(name, 0.0) >= when:
            return  # it died of it: the die event opened or counted the incident
        try:
            info = await self.driver.run(lambda api: api.inspect_container(container_id))
        except NotFound:
            return
        if seen_of(info).running:
            await self._trouble(name, info, "oom", None)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _shown(self, name: str, labels: Mapping[str, str] | None) -> bool:
        return bool(name) and container_name_problem(name) is None and parse_aside_name(name) is None and self.visible(name, labels)

    async def _compare(self) -> None:
        """On (re)connection: what changed while nobody watched, as the events would have told."""
        now = self.clock()
        current = await self._look_all()
        if self.connections > 0:
            for name, info in current.items():
                before, seen = self._known.get(name), seen_of(info)
                if before is None or silenced(info) or self.driver.locks.held_at(name, now, slack=self.timing.slack):
                    continue
                state = info.get("State") or {}
                if before.running and not seen.running:
                    oom = bool(state.get("OOMKilled"))
                    code = state.get("ExitCode")
                    await self._trouble(name, info, "oom" if oom else "exited", code if isinstance(code, int) else None)
                elif seen.health == "unhealthy" and before.health != "unhealthy":
                    await self._trouble(name, info, "unhealthy", None)
        self._known = {name: seen_of(info) for name, info in current.items()}

    async def _look_all(self) -> dict[str, dict[str, Any]]:
        def listing(api: APIClient) -> list[tuple[str, str, dict[str, str]]]:
            found = []
            for entry in api.containers(all=True):
                names = [n.lstrip("/") for n in entry.get("Names") or [] if n.count("/") == 1]
                if names:
                    found.append((names[0], str(entry["Id"]), {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}))
            return found

        wanted = [(name, cid) for name, cid, labels in await self.driver.run(listing) if self._shown(name, labels)]

        def inspect_all(api: APIClient) -> dict[str, dict[str, Any]]:
            out = {}
            for name, cid in wanted:
                with contextlib.suppress(NotFound):
                    out[name] = api.inspect_container(cid)
            return out

        return await self.driver.run(inspect_all)

    # -- incidents -------------------------------------------------------------------------

    async def _trouble(self, name: str, info: dict[str, Any], kind: str, exit_code: int | None) -> None:
        now = self.clock()
        facts = {
            "kind": kind,
            "exit_code": exit_code,
            "oom": kind == "oom",
            "logs": scrub(await self.driver.last_logs(str(info.get("Id", "")), LOG_TAIL), secret_values(info)),
            "rollback": await self._can_roll_back(name, str(info.get("Image", ""))),
        }
        incident = self._open.get(name)
        if incident is not None:
            incident.count += 1
            incident.last_at = now
            incident.facts.update(facts)
            await self.store.save(incident)
        else:
            incident = Incident(secrets.token_hex(4), name, self._message_for(now), OPEN, facts, 1, now, now)
            await self.store.add(incident)
            self._open[name] = incident
            await self.audit.append(
                actor="system", action="alert.open", decision="done", target=name,
                params={"incident": incident.id, "kind": kind, "exit_code": exit_code, "oom": facts["oom"]},
                outcome=incident.headline(),
            )  # fmt: skip
        self._mark(incident.message)

    def _message_for(self, now: float) -> str:
        if self._group is not None and now - self._group[1] <= self.timing.group:
            return self._group[0]
        message = f"alert:{secrets.token_hex(4)}"
        self._group = (message, now)
        return message

    async def _can_roll_back(self, name: str, image_id: str) -> bool:
        if self.deployments is None or not image_id:
            return False
        return await self.deployments.rollback_target(name, image_id) is not None

    async def _sweep(self) -> None:
        """Close the incidents whose container runs again, healthy (or steadily, without a check)."""
        while True:
            await asyncio.sleep(self.timing.sweep)
            for name, incident in list(self._open.items()):
                if self.driver.locks.holder(name) is not None:
                    continue  # Wingman is acting on it: judge once it is done
                try:
                    info = await self.driver.run(lambda api, name=name: self.driver.inspect_named(api, name))
                except ActionError:  # gone (removed): nothing left to recover
                    info = None
                if info is not None and not self._recovered(info):
                    continue
                await self._close(incident, "recovered" if info is not None else "removed")

    def _recovered(self, info: dict[str, Any]) -> bool:
        seen = seen_of(info)
        if not seen.running:
            return False
        if seen.health is not None:
            return seen.health == "healthy"
        started = parse_docker_time(seen.started_at)
        return started is not None and time.time() - started.timestamp() >= self.timing.recovery

    async def _close(self, incident: Incident, how: str) -> None:
        incident.state, incident.closed_at = CLOSED, self.clock()
        if how == "removed":
            incident.facts["removed"] = True
        await self.store.save(incident)
        self._open.pop(incident.container, None)
        await self.audit.append(
            actor="system", action="alert.close", decision="done", target=incident.container,
            params={"incident": incident.id, "count": incident.count, "how": how}, outcome=incident.headline(),
        )  # fmt: skip
        self._mark(incident.message)

    # -- the chat --------------------------------------------------------------------------

    def _mark(self, message: str) -> None:
        self._dirty.add(message)
        self._changed.set()

    async def _flush(self) -> None:
        while True:
            await self._changed.wait()
            # Gather what else happens in the next moments into the same post or edit.
            await asyncio.sleep(self.timing.group)
            self._changed.clear()
            await self._write_messages()

    async def _write_messages(self) -> None:
        dirty, self._dirty = self._dirty, set()
        try:
            for message in sorted(dirty):
                shown = await self.store.of_message(message)
                if shown:
                    payload = {"alert": {"incidents": [i.as_json() for i in shown]}}
                    await self.outbox.add("alert", payload, now=self.clock(), ref=message)
                dirty.discard(message)
        finally:
            if dirty:  # what could not be written is tried again
                self._dirty |= dirty
                self._changed.set()

