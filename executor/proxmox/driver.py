"""The Proxmox driver: the six actions on allowlisted guests (see the package docstring).

``ProxmoxDriver`` finds a guest (the node from ``/cluster/resources``, never from the
caller), holds Wingman's lock on its vmid, checks Proxmox's own state and config lock, then
starts a task and waits for it (``executor.proxmox.tasks``). Start, shutdown and reboot share
one path, ``_power``; what differs between them (what counts as already done, which locks
are fine, what Proxmox is asked) is a ``_Power`` row, how long to wait an argument.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from executor.errors import ActionError, Busy, Refused, StartupError, Unavailable
from executor.locks import TargetLocks
from executor.progress import Progress, emit, no_progress
from executor.proxmox.connection import Connection
from executor.proxmox.selfcheck import self_check
from executor.proxmox.settings import ProxmoxSettings, credentials, parse_host, secret_text, verification
from executor.proxmox.tasks import Tasks, TaskFailed
from executor.proxmox.values import (
    DEFAULT_SNAPSHOT_PREFIX,
    SAFETY_SNAPSHOT_PREFIX,
    Current,
    Visible,
    VmOutcome,
    VmStatus,
    check_snapshot_name,
    free_snapshot_name,
    guest_of,
    outcome,
    refuse_template,
)
from policy.names import parse_vmid, vmid_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Power:
    """What differs between start, shutdown and reboot; ``ProxmoxDriver._power`` does the rest."""

    action: str  # the API's status/<action>, and the word in locks and outcomes
    stage: str  # the progress stage while it is asked for
    done: str  # the summary after the guest's label; {node} is its node
    nothing_to_do_when: str | None = None  # the guest's status in which the action is a no-op
    needs_running: bool = False  # refused unless the guest runs
    allowed_locks: frozenset[str] = frozenset()  # Proxmox config locks that do not make it busy
    asks_guest: bool = False  # the guest is asked to act within shutdown_timeout (sent to Proxmox)
    stops_guest: bool = False  # progress shows that time limit; a failed task says if the guest still runs


# A hibernated guest carries the lock "suspended"; starting it is how it resumes.
_START = _Power(
    "start", "starting", "started on {node}", nothing_to_do_when="running", allowed_locks=frozenset({"suspended"})
)
_SHUTDOWN = _Power(
    "shutdown", "shutting-down", "shut down cleanly", nothing_to_do_when="stopped", asks_guest=True, stops_guest=True
)
_REBOOT = _Power("reboot", "rebooting", "rebooted", needs_running=True, asks_guest=True)


class ProxmoxDriver:
    """Actions on the allowlisted guests of one Proxmox VE cluster.

    Give ``token`` (``user@realm!tokenid=secret``) or ``user`` and ``password`` (ticket
    login). The certificate is checked against ``ca_bundle`` when given (a PEM file), else
    against the system's CAs; ``verify_ssl=False`` turns checking off (and cannot be
    combined with a CA bundle). A bad setting raises ``StartupError`` naming it.

    Nothing is sent to Proxmox until the first call: the executor starts while Proxmox is
    down, and the API client is made again after Proxmox was unreachable or refused a
    ticket.

    Timing (seconds): ``request_timeout`` per HTTP request; ``task_timeout`` for a start,
    snapshot or rollback task; a shutdown asks the guest to stop within ``shutdown_timeout``
    and is waited for ``shutdown_timeout + shutdown_grace``; a reboot for
    ``shutdown_timeout + task_timeout``. Tasks are polled every ``poll_interval`` and
    progress is reported every ``progress_interval``. ``now`` gives the time written into
    default snapshot names (local time by default).
    """

    def __init__(
        self,
        host: str,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        verify_ssl: bool = True,
        ca_bundle: str | Path | None = None,
        request_timeout: float = 15.0,
        task_timeout: float = 300.0,
        shutdown_timeout: int = 180,
        shutdown_grace: float = 30.0,
        poll_interval: float = 1.0,
        progress_interval: float = 5.0,
        log_lines: int = 10,
        now: Callable[[], datetime] | None = None,
        workers: int = 4,
        locks: TargetLocks[int] | None = None,
    ) -> None:
        address = parse_host(host)
        login = credentials(token, user, password)
        self.connection = Connection(address, login, verification(verify_ssl, ca_bundle), request_timeout, workers)
        if self.connection.verify is False:
            log.warning("PROXMOX_VERIFY_SSL is false: the Proxmox certificate is not checked")
        if isinstance(shutdown_timeout, bool) or not isinstance(shutdown_timeout, int) or shutdown_timeout < 1:
            raise ValueError("shutdown_timeout must be a whole number of seconds, at least 1")
        self.tasks = Tasks(
            self.connection, poll_interval=poll_interval, progress_interval=progress_interval, log_lines=log_lines
        )
        self.task_timeout = task_timeout
        self.shutdown_timeout = shutdown_timeout
        self.shutdown_grace = shutdown_grace
        self.now = now or (lambda: datetime.now().astimezone())
        self.locks = locks or TargetLocks[int]()

    @classmethod
    def from_settings(cls, settings: ProxmoxSettings, **options: Any) -> ProxmoxDriver | None:
        """The driver for these settings, or None when Proxmox is not configured at all.

        Reads ``proxmox_ca_bundle`` (``PROXMOX_CA_BUNDLE``) too when the settings have it.
        Other PROXMOX_ settings without ``PROXMOX_HOST`` are a mistake, not "off".
        """
        host = (settings.proxmox_host or "").strip()
        token = secret_text(settings.proxmox_token)
        password = secret_text(settings.proxmox_password)
        user = (settings.proxmox_user or "").strip() or None
        ca_bundle = getattr(settings, "proxmox_ca_bundle", None) or None
        if not host:
            given = [
                name
                for name, value in (
                    ("PROXMOX_TOKEN", token),
                    ("PROXMOX_USER", user),
                    ("PROXMOX_PASSWORD", password),
                    ("PROXMOX_CA_BUNDLE", ca_bundle),
                )
                if value
            ]
            if given:
                raise StartupError(
                    f"PROXMOX_HOST: is not set, but {', '.join(given)} is; set it (host[:port]) or remove those"
                )
            return None
        return cls(
            host,
            token=token,
            user=user,
            password=password,
            verify_ssl=bool(settings.proxmox_verify_ssl),
            ca_bundle=ca_bundle,
            **options,
        )

    def __repr__(self) -> str:
        return f"ProxmoxDriver({self.where!r}, principal={self.principal!r})"

    @property
    def where(self) -> str:
        return self.connection.where

    @property
    def principal(self) -> str:
        return self.connection.principal

    @property
    def uses_token(self) -> bool:
        return self.connection.uses_token

    async def close(self) -> None:
        self.connection.close()

    # -- lookups ----------------------------------------------------------------------------

    async def _guests(self) -> list[VmStatus]:
        raw = await self.connection.run("the cluster resource list", lambda api: api.cluster.resources.get(type="vm"))
        if not isinstance(raw, list):
            raise Unavailable(f"Proxmox at {self.where} answered the resource list with something that is not a list")
        guests = [g for g in (guest_of(entry) for entry in raw) if g is not None]
        return sorted(guests, key=lambda g: g.vmid)

    async def _locate(self, vmid: object, visible: Visible) -> VmStatus:
        """The guest with this vmid, on the node Proxmox says, when ``visible`` admits it."""
        number = parse_vmid(vmid)
        if number is None:
            raise Refused(vmid_problem(vmid))
        found = [g for g in await self._guests() if g.vmid == number]
        # A hidden guest is answered exactly like a missing one.
        if len(found) != 1 or not visible(number, found[0].node):
            raise Refused(f"there is no allowed VM or CT {number}")
        return found[0]

    async def _current(self, guest: VmStatus) -> Current:
        path = (guest.kind, str(guest.vmid), "status", "current")
        raw = await self.connection.run(f"the status of {guest.label}", lambda api: api.nodes(guest.node)(path).get())
        if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
            raise Unavailable(f"Proxmox at {self.where} answered the status of {guest.label} with no status")
        lock = raw.get("lock")
        qmp = raw.get("qmpstatus")
        return Current(
            status=raw["status"],
            lock=lock if isinstance(lock, str) and lock else None,
            qmpstatus=qmp if isinstance(qmp, str) else None,
        )

    async def _status_after(self, guest: VmStatus) -> str | None:
        with contextlib.suppress(ActionError):
            return (await self._current(guest)).status
        return None

    async def _snapshot_names(self, guest: VmStatus) -> list[str]:
        path = (guest.kind, str(guest.vmid), "snapshot")
        raw = await self.connection.run(f"the snapshot list of {guest.label}", lambda api: api.nodes(guest.node)(path).get())
        if not isinstance(raw, list):
            raise Unavailable(f"Proxmox at {self.where} answered the snapshot list of {guest.label} with no list")
        names = [e.get("name") for e in raw if isinstance(e, dict)]
        # "current" is the guest's present state, listed as if it were a snapshot.
        return [n for n in names if isinstance(n, str) and n != "current"]

    @contextlib.asynccontextmanager
    async def _acting_on(
        self, vmid: object, visible: Visible, actor: str, action: str
    ) -> AsyncIterator[tuple[VmStatus, Current]]:
        """The guest, held under Wingman's lock for ``action``, and its current state; never a template."""
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} ({action})", label=guest.label):
            refuse_template(guest)
            yield guest, await self._current(guest)

    @staticmethod
    def _refuse_locked(guest: VmStatus, current: Current, allowed: frozenset[str] = frozenset()) -> None:
        if current.lock is not None and current.lock not in allowed:
            raise Busy(f"{guest.label} is locked by Proxmox ({current.lock}); try again when that has finished")

    # -- status -----------------------------------------------------------------------------------

    async def status(self, visible: Visible, vmid: object = None) -> list[VmStatus]:
        """Every guest ``visible`` admits, by vmid; or that one guest (refused like a missing one)."""
        if vmid is not None:
            return [await self._locate(vmid, visible)]
        return [g for g in await self._guests() if visible(g.vmid, g.node)]

    # -- power ------------------------------------------------------------------------------------

    async def start(
        self, vmid: object, visible: Visible, *, actor: str = "wingman", progress: Progress = no_progress
    ) -> VmOutcome:
        return await self._power(_START, vmid, visible, actor, progress, self.task_timeout)

    async def shutdown(
        self, vmid: object, visible: Visible, *, actor: str = "wingman", progress: Progress = no_progress
    ) -> VmOutcome:
        """A clean shutdown through the guest (ACPI or the container's init); never a forced stop."""
        # Deliberately no forceStop: a guest that ignores the request is left running.
        return await self._power(_SHUTDOWN, vmid, visible, actor, progress, self.shutdown_timeout + self.shutdown_grace)

    async def reboot(
        self, vmid: object, visible: Visible, *, actor: str = "wingman", progress: Progress = no_progress
    ) -> VmOutcome:
        """A clean reboot through the guest; a stopped guest is refused (start it instead)."""
        return await self._power(_REBOOT, vmid, visible, actor, progress, self.shutdown_timeout + self.task_timeout)

    async def _power(
        self, power: _Power, vmid: object, visible: Visible, actor: str, progress: Progress, timeout: float
    ) -> VmOutcome:
        """The one path of start, shutdown and reboot: POST ``status/<action>``, wait up to ``timeout``."""
        async with self._acting_on(vmid, visible, actor, power.action) as (guest, current):
            if current.status == power.nothing_to_do_when:
                paused = " (paused)" if current.status == "running" and current.qmpstatus == "paused" else ""
                summary = f"{guest.label} is already {current.status}{paused}; nothing to do"
                return outcome(guest, power.action, False, summary, current.status)
            if power.needs_running and current.status != "running":
                raise Refused(f"{guest.label} is {current.status}, not running; use /vm start to start it")
            self._refuse_locked(guest, current, allowed=power.allowed_locks)
            details: dict[str, Any] = {"vmid": guest.vmid, "node": guest.node}
            params: dict[str, Any] = {}
            if power.asks_guest:
                params["timeout"] = self.shutdown_timeout
                if power.stops_guest:
                    details["timeout"] = self.shutdown_timeout
            await emit(progress, power.stage, details)
            what = f"the {power.action} of {guest.label}"
            upid = await self.tasks.post(guest, what, ("status", power.action), **params)
            try:
                await self.tasks.wait(guest, upid, what, timeout, progress)
            except TaskFailed as exc:
                if not power.stops_guest:
                    raise
                raise await self._not_shut_down(guest, exc) from None
            after = await self._status_after(guest)
            return outcome(guest, power.action, True, f"{guest.label} {power.done.format(node=guest.node)}", after, upid=upid)

    async def _not_shut_down(self, guest: VmStatus, exc: TaskFailed) -> TaskFailed:
        """A shutdown task that failed: the task's own error when the guest stopped, else what is left."""
        after = await self._status_after(guest)
        if after == "stopped":
            return exc
        still = "is still running" if after == "running" else f"is {after or 'in an unknown state'}"
        said = f" (Proxmox: {exc.exitstatus})" if exc.exitstatus else ""
        return TaskFailed(
            f"{guest.label} did not shut down within {self.shutdown_timeout} s and {still}{said};"
            " Wingman never forces a stop: shut it down from inside, or stop it in Proxmox if you accept the risk",
            upid=exc.upid,
            exitstatus=exc.exitstatus,
            last_logs=exc.last_logs,
        )

    # -- snapshots --------------------------------------------------------------------------------

    async def snapshot(
        self,
        vmid: object,
        visible: Visible,
        name: str | None = None,
        *,
        actor: str = "wingman",
        progress: Progress = no_progress,
    ) -> VmOutcome:
        """Take snapshot ``name`` (default ``wingman-YYYYMMDD-HHMM``) of the guest, without RAM."""
        if name is not None:
            check_snapshot_name(name)
        async with self._acting_on(vmid, visible, actor, "snapshot") as (guest, current):
            self._refuse_locked(guest, current)
            taken = await self._snapshot_names(guest)
            if name is None:
                name = free_snapshot_name(DEFAULT_SNAPSHOT_PREFIX, taken, self.now())
            elif name in taken:
                raise Refused(f"{guest.label} already has a snapshot named {name!r}")
            upid = await self._take_snapshot(guest, name, f"taken by Wingman for {actor}", progress)
            after = await self._status_after(guest)
            return outcome(
                guest, "snapshot", True, f"snapshot {name!r} of {guest.label} taken", after, upid=upid, snapshot=name
            )

    async def rollback(
        self,
        vmid: object,
        snapshot: str,
        visible: Visible,
        *,
        actor: str = "wingman",
        progress: Progress = no_progress,
    ) -> VmOutcome:
        """Roll the guest back to ``snapshot``, after taking a safety snapshot of its present state."""
        check_snapshot_name(snapshot)
        async with self._acting_on(vmid, visible, actor, "rollback") as (guest, current):
            self._refuse_locked(guest, current)
            taken = await self._snapshot_names(guest)
            if snapshot not in taken:
                known = ", ".join(taken[-10:]) if taken else "none"
                raise Refused(f"{guest.label} has no snapshot named {snapshot!r} (it has: {known})")
            safety = free_snapshot_name(SAFETY_SNAPSHOT_PREFIX, taken, self.now())
            await emit(progress, "safety-snapshot", {"vmid": guest.vmid, "snapshot": safety})
            try:
                await self._take_snapshot(
                    guest,
                    safety,
                    f"safety snapshot by Wingman for {actor}, before rolling back to {snapshot}",
                    progress,
                )
            except ActionError as exc:
                raise _reworded(
                    exc, f"the safety snapshot failed, so {guest.label} was not rolled back: {exc.reason}"
                ) from None
            await emit(progress, "rolling-back", {"vmid": guest.vmid, "snapshot": snapshot, "safety_snapshot": safety})
            what = f"the rollback of {guest.label} to {snapshot!r}"
            kept = f"the safety snapshot {safety!r} holds its state from before"
            try:
                upid = await self.tasks.post(guest, what, ("snapshot", snapshot, "rollback"))
                await self.tasks.wait(guest, upid, what, self.task_timeout, progress)
            except ActionError as exc:
                logs = getattr(exc, "last_logs", [])
                hint = ""
                if any("most recent snapshot" in line for line in logs):
                    hint = " (this storage rolls back only to its newest snapshot)"
                raise _reworded(exc, f"{exc.reason}{hint}; {kept}") from None
            after = await self._status_after(guest)
            now = f"; it is now {after}" if after else ""
            return outcome(
                guest,
                "rollback",
                True,
                f"{guest.label} rolled back to snapshot {snapshot!r}; safety snapshot {safety!r} holds its state from before{now}",
                after,
                upid=upid,
                snapshot=snapshot,
                safety_snapshot=safety,
            )

    async def _take_snapshot(self, guest: VmStatus, name: str, description: str, progress: Progress) -> str:
        what = f"snapshot {name!r} of {guest.label}"
        await emit(progress, "snapshotting", {"vmid": guest.vmid, "node": guest.node, "snapshot": name})
        upid = await self.tasks.post(guest, what, ("snapshot",), snapname=name, description=description)
        await self.tasks.wait(guest, upid, what, self.task_timeout, progress)
        return upid

    # -- start-up self-check ------------------------------------------------------------------------

    async def self_check(self, vmids: Iterable[int], visible: Visible | None = None) -> list[str]:
        """Problems with the allowlisted guests, one line each (see ``executor.proxmox.selfcheck``)."""
        return await self_check(self.connection, self._guests, vmids, visible)


def _reworded(exc: ActionError, reason: str) -> ActionError:
    """The same kind of error (with the same task details) saying ``reason``."""
    if isinstance(exc, TaskFailed):
        return TaskFailed(reason, upid=exc.upid, exitstatus=exc.exitstatus, last_logs=exc.last_logs)
    return type(exc)(reason)
