"""The Proxmox VE driver: status, start, shutdown, reboot, snapshot and rollback of guests.

Everything here talks to the Proxmox API (``https://host:8006/api2/json``) through
proxmoxer 2.x, which is synchronous: every call runs in the driver's own small thread pool,
never on the event loop. Both kinds of guest are handled: QEMU virtual machines
(``/nodes/{node}/qemu/{vmid}/…``) and LXC containers (``/nodes/{node}/lxc/{vmid}/…``).

Trust: policy has already allowed the vmid before a method here is called, but the driver
checks again. A vmid must be a whole number in Proxmox's range; the node a guest lives on
is read from ``/cluster/resources`` (never taken from the caller), and the caller's
``visible(vmid, node)`` predicate must admit the pair. A hidden guest is answered exactly
like a missing one, and is never listed.

Acting: the guest's current status and Proxmox's own config lock are read before acting
(starting a running guest is a no-op answer, not an error; a locked guest is "busy"), and
Wingman holds its own per-vmid lock so two of its actions never overlap on one guest. Every
POST answers with a task id (UPID); the driver waits for it and counts it a success only
when the task is ``stopped`` with exit status ``OK``. Otherwise the error says the exit
status and carries the last lines of the task log (``TaskFailed.last_logs``). Shutdown never
sends ``forceStop``: a guest that does not shut down in time is left running and the
answer says so. Rollback first takes a safety snapshot and names it.

Errors are the executor's own (``executor.errors``): ``Refused`` (nothing touched),
``Busy``, ``ActionFailed`` (and its ``TaskFailed``), ``Unavailable`` (Proxmox unreachable,
credentials refused, a 5xx answer). ``str(error)`` is one line that can be shown as it is;
credentials never appear in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from executor.locks import TargetLocks
from executor.progress import Progress, emit, format_duration, no_progress
from executor.errors import ActionError, ActionFailed, Refused, Busy, StartupError, Unavailable
from policy.names import node_name_problem, parse_vmid, show, vmid_problem

log = logging.getLogger(__name__)

T = TypeVar("T")

# The caller's allowlist check: may this vmid on this node be seen and acted on?
Visible = Callable[[int, str], bool]

DEFAULT_PORT = 8006
GUEST_KINDS = ("qemu", "lxc")

# What the self-check looks for on /vms/<vmid>, and what fails without each.
REQUIRED_PRIVILEGES: dict[str, str] = {
    "VM.Audit": "/vm status",
    "VM.PowerMgmt": "/vm start, shutdown and reboot",
    "VM.Snapshot": "/vm snapshot and the safety snapshot of /vm rollback",
    "VM.Snapshot.Rollback": "/vm rollback",
}

# Snapshot names are Proxmox "pve-configid"s with maxLength 40 (the API schema). Proxmox's
# own check is /^[a-z][a-z0-9_-]+$/i: a letter and AT LEAST one more character, so a
# one-letter name is refused by Proxmox and therefore here.
SNAPSHOT_NAME_MAX = 40
_SNAPSHOT_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]+")
RESERVED_SNAPSHOT_NAMES = frozenset({"current", "vzdump"})  # refused by the snapshot API
SNAPSHOT_NAME_RULE = "snapshot names are 2 to 40 characters: a letter, then letters, digits, '_' and '-'"
DEFAULT_SNAPSHOT_PREFIX = "wingman"
SAFETY_SNAPSHOT_PREFIX = "wingman-pre-rollback"

# A task id as Proxmox writes it: UPID:node:pid:pstart:starttime:type:id:user:
_UPID = re.compile(
    r"UPID:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8,}:[0-9A-Fa-f]{8,}:[0-9A-Fa-f]{8,}"
    r":[^:\s/?#%]+:[^:\s/?#%]*:[^:\s/?#%]+:"
)
# The schema's userid pattern, and an API token in PROXMOX_TOKEN's form.
_USERID = re.compile(r"[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+")
_TOKEN = re.compile(r"(?P<user>[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<name>[A-Za-z][A-Za-z0-9.\-_]+)=(?P<secret>\S+)")
_DNS_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

LOG_PAGE = 500  # task log lines per request
LOG_PAGES_MAX = 20  # a task log longer than this is read only so far
MAX_POLL_ERRORS = 3  # consecutive failed task polls before the wait gives up


# -- errors -------------------------------------------------------------------------------


class TaskFailed(ActionFailed):
    """A Proxmox task ended without exit status OK, or did not end in time.

    ``exitstatus`` is Proxmox's (None when the task had not finished); ``last_logs`` holds
    the last lines of its task log (the executor passes them on to the chat).
    """

    def __init__(self, reason: str, *, upid: str, exitstatus: str | None, last_logs: Iterable[str] = ()) -> None:
        super().__init__(reason, last_logs=last_logs)
        self.upid = upid
        self.exitstatus = exitstatus


# -- values returned ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmStatus:
    """One guest as ``/cluster/resources`` describes it."""

    vmid: int
    name: str
    kind: str  # qemu or lxc
    node: str
    status: str  # Proxmox's: running, stopped (and paused, prelaunch… for QEMU)
    uptime_seconds: int | None
    cpu: float | None  # fraction of `cpus` in use: 0.25 is a quarter of all of them
    cpus: float | None
    mem_bytes: int | None
    maxmem_bytes: int | None
    lock: str | None  # Proxmox's config lock: backup, snapshot, migrate…
    template: bool

    @property
    def label(self) -> str:
        return guest_label(self.vmid, self.kind, self.name)

    def summary(self) -> str:
        """One line: ``VM 101 (web) on pve1: running, up 2h 3m, CPU 4% of 2, memory 1.0/4.0 GiB``."""
        parts = [f"{self.label} on {self.node}: {'template' if self.template else self.status}"]
        if self.status == "running" and self.uptime_seconds:
            parts.append(f"up {format_duration(self.uptime_seconds)}")
        if self.status == "running" and self.cpu is not None:
            of = f" of {self.cpus:g}" if self.cpus else ""
            parts.append(f"CPU {self.cpu * 100:.0f}%{of}")
        if self.status == "running" and self.mem_bytes is not None and self.maxmem_bytes:
            parts.append(f"memory {_gib(self.mem_bytes)}/{_gib(self.maxmem_bytes)} GiB")
        if self.lock:
            parts.append(f"locked ({self.lock})")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "vmid": self.vmid,
            "name": self.name,
            "type": self.kind,
            "node": self.node,
            "status": self.status,
            "uptime": self.uptime_seconds,
            "cpu": self.cpu,
            "cpus": self.cpus,
            "mem": self.mem_bytes,
            "maxmem": self.maxmem_bytes,
            "lock": self.lock,
            "template": self.template,
        }


@dataclass(frozen=True, slots=True)
class VmOutcome:
    """What an action did. ``changed`` is False when the guest already was as asked."""

    vmid: int
    kind: str
    node: str
    action: str  # start, shutdown, reboot, snapshot, rollback
    changed: bool
    summary: str
    status: str | None  # the guest's status afterwards, when it could be read
    upid: str | None = None  # the (last) Proxmox task
    snapshot: str | None = None  # the snapshot taken, or rolled back to
    safety_snapshot: str | None = None  # rollback only: taken before rolling back

    def as_json(self) -> dict[str, Any]:
        return {
            "vmid": self.vmid,
            "type": self.kind,
            "node": self.node,
            "action": self.action,
            "changed": self.changed,
            "status": self.status,
            "upid": self.upid,
            "snapshot": self.snapshot,
            "safety_snapshot": self.safety_snapshot,
        }


@dataclass(frozen=True, slots=True)
class _Current:
    status: str
    lock: str | None
    qmpstatus: str | None


# -- names --------------------------------------------------------------------------------


def guest_label(vmid: int, kind: str, name: str | None = None) -> str:
    word = "CT" if kind == "lxc" else "VM"
    return f"{word} {vmid} ({name})" if name else f"{word} {vmid}"


def snapshot_name_problem(name: object) -> str | None:
    """None when ``name`` is a snapshot name Proxmox accepts, otherwise why it is not."""
    if not isinstance(name, str) or len(name) > SNAPSHOT_NAME_MAX or _SNAPSHOT_NAME.fullmatch(name) is None:
        return f"{show(name)} is not a valid snapshot name: {SNAPSHOT_NAME_RULE}"
    if name in RESERVED_SNAPSHOT_NAMES:
        return f"{show(name)} is reserved by Proxmox and cannot name a snapshot"
    return None


def check_snapshot_name(name: object) -> str:
    problem = snapshot_name_problem(name)
    if problem is not None:
        raise Refused(problem)
    assert isinstance(name, str)
    return name


def free_snapshot_name(prefix: str, taken: Iterable[str], now: datetime) -> str:
    """``<prefix>-YYYYMMDD-HHMM``, with ``-2``, ``-3``… when that is taken already."""
    base = f"{prefix}-{now:%Y%m%d-%H%M}"
    used = set(taken)
    if base not in used:
        return base
    for n in range(2, 100):
        candidate = f"{base}-{n}"
        if candidate not in used:
            return candidate
    raise Refused(f"too many snapshots named {base}-…: delete some in Proxmox first")


def parse_host(text: str) -> tuple[str, int]:
    """``PROXMOX_HOST`` (``host``, ``host:port``, ``[v6]:port``) as (host, port)."""
    value = text.strip()
    problem = "PROXMOX_HOST: give host or host:port (e.g. pve.lan:8006), without https:// or a path"
    if not value or "/" in value or "@" in value or any(c.isspace() for c in value):
        raise StartupError(problem)
    port_text = ""
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", value)
        if match is None:
            raise StartupError(problem)
        host, port_text = match.group(1), match.group(2) or ""
        _ipv6_or_fail(host, problem)
    elif value.count(":") > 1:
        host = value
        _ipv6_or_fail(host, problem)
    else:
        host, _, port_text = value.partition(":")
        if _DNS_NAME.fullmatch(host) is None:
            raise StartupError(problem)
        if value.endswith(":"):
            raise StartupError(problem)
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise StartupError(f"PROXMOX_HOST: {show(port_text)} is not a port (1 to 65535)")
        port = int(port_text)
    return host, port


def _ipv6_or_fail(host: str, problem: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise StartupError(problem) from None


# -- settings -------------------------------------------------------------------------------


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class ProxmoxSettings(Protocol):
    """The executor settings this driver reads (``wingman.settings.ExecutorSettings``)."""

    @property
    def proxmox_host(self) -> str | None: ...
    @property
    def proxmox_token(self) -> _Secret | None: ...
    @property
    def proxmox_user(self) -> str | None: ...
    @property
    def proxmox_password(self) -> _Secret | None: ...
    @property
    def proxmox_verify_ssl(self) -> bool: ...


def _secret(value: _Secret | None) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value()
    return text or None


# -- the driver -------------------------------------------------------------------------------


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
        self.host, self.port = parse_host(host)
        self._api_kwargs = _credentials(token, user, password)
        self.principal: str = self._api_kwargs.pop("principal")
        self.uses_token = "token_name" in self._api_kwargs
        self._verify: bool | str = _verification(verify_ssl, ca_bundle)
        if self._verify is False:
            log.warning("PROXMOX_VERIFY_SSL is false: the Proxmox certificate is not checked")
        if isinstance(shutdown_timeout, bool) or not isinstance(shutdown_timeout, int) or shutdown_timeout < 1:
            raise ValueError("shutdown_timeout must be a whole number of seconds, at least 1")
        self.request_timeout = request_timeout
        self.task_timeout = task_timeout
        self.shutdown_timeout = shutdown_timeout
        self.shutdown_grace = shutdown_grace
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.log_lines = log_lines
        self.now = now or (lambda: datetime.now().astimezone())
        self.locks = locks or TargetLocks[int]()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wingman-proxmox")
        self._client: ProxmoxAPI | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ProxmoxSettings, **options: Any) -> ProxmoxDriver | None:
        """The driver for these settings, or None when Proxmox is not configured at all.

        Reads ``proxmox_ca_bundle`` (``PROXMOX_CA_BUNDLE``) too when the settings have it.
        Other PROXMOX_ settings without ``PROXMOX_HOST`` are a mistake, not "off".
        """
        host = (settings.proxmox_host or "").strip()
        token = _secret(settings.proxmox_token)
        password = _secret(settings.proxmox_password)
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._forget_client()

    # -- running proxmoxer calls off the loop ---------------------------------------------

    async def _run(self, what: str, fn: Callable[[ProxmoxAPI], T]) -> T:
        """Run ``fn(api)`` in the pool; every failure becomes one of the executor's errors.

        ``what`` names the request in errors ("the start of VM 101").
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, what, fn)

    def _call(self, what: str, fn: Callable[[ProxmoxAPI], T]) -> T:
        try:
            return fn(self._api())
        except ResourceException as exc:
            raise self._api_error(what, exc) from None
        except AuthenticationError:
            self._forget_client()
            raise Unavailable(
                f"Proxmox at {self.where} refused the login of {self.principal} (401): check PROXMOX_USER and PROXMOX_PASSWORD"
            ) from None
        except requests.exceptions.SSLError as exc:
            self._forget_client()
            raise Unavailable(
                f"cannot verify the TLS certificate of Proxmox at {self.where}: {_cause(exc)};"
                " give its CA certificate with PROXMOX_CA_BUNDLE"
            ) from None
        except requests.exceptions.Timeout:
            self._forget_client()
            raise Unavailable(f"Proxmox at {self.where} did not answer within {self.request_timeout:g} s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            self._forget_client()
            raise Unavailable(f"Proxmox at {self.where} is unreachable: {_cause(exc)}") from None

    def _api_error(self, what: str, exc: ResourceException) -> ActionError:
        status = int(exc.status_code)
        message = _one_line(str(exc.content or exc.status_message or ""))
        errors = exc.errors
        if isinstance(errors, Mapping) and errors:
            message = f"{message}: " + "; ".join(f"{k}: {_one_line(str(v))}" for k, v in sorted(errors.items()))
        if status == 401:
            self._forget_client()
            setting = "PROXMOX_TOKEN" if self.uses_token else "PROXMOX_USER and PROXMOX_PASSWORD"
            return Unavailable(
                f"Proxmox at {self.where} refused the credentials of {self.principal} (401): check {setting}"
            )
        if status == 403:
            return ActionFailed(f"Proxmox refused {what} (403 {message}): {self.principal} lacks a privilege")
        if status >= 500:
            return Unavailable(f"Proxmox at {self.where} failed {what} ({status} {message})")
        return ActionFailed(f"Proxmox rejected {what} ({status} {message})")

    def _api(self) -> ProxmoxAPI:
        with self._client_lock:
            if self._client is None:
                # A ticket login (user/password) POSTs /access/ticket here, in a worker.
                self._client = ProxmoxAPI(
                    self.host,
                    port=self.port,
                    verify_ssl=self._verify,
                    timeout=self.request_timeout,
                    **self._api_kwargs,
                )
            return self._client

    def _forget_client(self) -> None:
        with self._client_lock:
            self._client = None

    # -- lookups ----------------------------------------------------------------------------

    async def _guests(self) -> list[VmStatus]:
        raw = await self._run("the cluster resource list", lambda api: api.cluster.resources.get(type="vm"))
        if not isinstance(raw, list):
            raise Unavailable(f"Proxmox at {self.where} answered the resource list with something that is not a list")
        guests = [g for g in (_guest_of(entry) for entry in raw) if g is not None]
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

    async def _current(self, guest: VmStatus) -> _Current:
        path = (guest.kind, str(guest.vmid), "status", "current")
        raw = await self._run(f"the status of {guest.label}", lambda api: api.nodes(guest.node)(path).get())
        if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
            raise Unavailable(f"Proxmox at {self.where} answered the status of {guest.label} with no status")
        lock = raw.get("lock")
        qmp = raw.get("qmpstatus")
        return _Current(
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
        raw = await self._run(f"the snapshot list of {guest.label}", lambda api: api.nodes(guest.node)(path).get())
        if not isinstance(raw, list):
            raise Unavailable(f"Proxmox at {self.where} answered the snapshot list of {guest.label} with no list")
        names = [e.get("name") for e in raw if isinstance(e, dict)]
        # "current" is the guest's present state, listed as if it were a snapshot.
        return [n for n in names if isinstance(n, str) and n != "current"]

    @staticmethod
    def _refuse_locked(guest: VmStatus, current: _Current, allowed: frozenset[str] = frozenset()) -> None:
        if current.lock is not None and current.lock not in allowed:
            raise Busy(f"{guest.label} is locked by Proxmox ({current.lock}); try again when that has finished")

    # -- tasks ------------------------------------------------------------------------------------

    async def _post(self, guest: VmStatus, what: str, segments: tuple[str, ...], **params: Any) -> str:
        """POST to /nodes/{node}/{kind}/{vmid}/<segments>; the task id it answers."""
        path = (guest.kind, str(guest.vmid), *segments)
        upid = await self._run(what, lambda api: api.nodes(guest.node)(path).post(**params))
        if not isinstance(upid, str) or _UPID.fullmatch(upid) is None:
            raise ActionFailed(f"Proxmox answered {what} without a task id; check {guest.label} in Proxmox")
        return upid

    async def _wait(self, guest: VmStatus, upid: str, what: str, timeout: float, progress: Progress) -> None:
        """Wait for task ``upid``: return when it stopped with "OK"; raise TaskFailed otherwise."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        next_report = started + self.progress_interval
        errors = 0
        details = {"vmid": guest.vmid, "node": guest.node, "upid": upid}
        await emit(progress, "waiting", {**details, "task": what, "seconds": 0})
        while True:
            try:
                state = await self._run(
                    f"the status of task {upid}", lambda api: api.nodes(guest.node).tasks(upid).status.get()
                )
                errors = 0
            except Unavailable as exc:
                # The task runs on in Proxmox whatever happens to this connection.
                errors += 1
                if errors >= MAX_POLL_ERRORS or loop.time() >= deadline:
                    raise Unavailable(
                        f"lost track of {what} (task {upid}); it may still finish: {exc.reason}"
                    ) from None
                state = None
            if isinstance(state, dict) and state.get("status") == "stopped":
                exitstatus = state.get("exitstatus")
                if exitstatus == "OK":
                    await emit(
                        progress, "task-done", {**details, "task": what, "seconds": round(loop.time() - started, 1)}
                    )
                    return
                tail = await self._log_tail(guest, upid)
                said = _one_line(str(exitstatus)) if exitstatus is not None else "no exit status"
                reason = f"{what} failed: Proxmox task ended with {said!r}"
                if tail:
                    reason += f"; last log line: {tail[-1]}"
                raise TaskFailed(
                    reason, upid=upid, exitstatus=str(exitstatus) if exitstatus is not None else None, last_logs=tail
                )
            now = loop.time()
            if now >= deadline:
                tail = await self._log_tail(guest, upid)
                raise TaskFailed(
                    f"{what} did not finish within {timeout:g} s; Proxmox task {upid} may still be running",
                    upid=upid,
                    exitstatus=None,
                    last_logs=tail,
                )
            if now >= next_report:
                next_report = now + self.progress_interval
                await emit(progress, "waiting", {**details, "task": what, "seconds": round(now - started, 1)})
            await asyncio.sleep(max(0.0, min(self.poll_interval, deadline - now)))

    async def _log_tail(self, guest: VmStatus, upid: str) -> list[str]:
        """The last ``log_lines`` lines of a task's log; [] when it cannot be read."""

        def read(api: ProxmoxAPI) -> list[str]:
            tail: deque[str] = deque(maxlen=self.log_lines)
            start = 0
            for _ in range(LOG_PAGES_MAX):
                page = api.nodes(guest.node).tasks(upid).log.get(start=start, limit=LOG_PAGE)
                if not isinstance(page, list) or not page:
                    break
                lines = [e for e in page if isinstance(e, dict)]
                # Past the end Proxmox answers one line "no content".
                if start > 0 and len(lines) == 1 and lines[0].get("t") == "no content":
                    break
                tail.extend(_one_line(str(e.get("t", ""))) for e in lines)
                if len(page) < LOG_PAGE:
                    break
                start += len(page)
            return list(tail)

        try:
            return await self._run(f"the log of task {upid}", read)
        except ActionError as exc:
            log.warning("could not read the log of Proxmox task %s: %s", upid, exc.reason)
            return []

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
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} (start)", label=guest.label):
            _refuse_template(guest)
            current = await self._current(guest)
            if current.status == "running":
                paused = " (paused)" if current.qmpstatus == "paused" else ""
                return _outcome(
                    guest, "start", False, f"{guest.label} is already running{paused}; nothing to do", "running"
                )
            # A hibernated guest carries the lock "suspended"; starting it is how it resumes.
            self._refuse_locked(guest, current, allowed=frozenset({"suspended"}))
            await emit(progress, "starting", {"vmid": guest.vmid, "node": guest.node})
            what = f"the start of {guest.label}"
            upid = await self._post(guest, what, ("status", "start"))
            await self._wait(guest, upid, what, self.task_timeout, progress)
            after = await self._status_after(guest)
            return _outcome(guest, "start", True, f"{guest.label} started on {guest.node}", after, upid=upid)

    async def shutdown(
        self, vmid: object, visible: Visible, *, actor: str = "wingman", progress: Progress = no_progress
    ) -> VmOutcome:
        """A clean shutdown through the guest (ACPI or the container's init); never a forced stop."""
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} (shutdown)", label=guest.label):
            _refuse_template(guest)
            current = await self._current(guest)
            if current.status == "stopped":
                return _outcome(guest, "shutdown", False, f"{guest.label} is already stopped; nothing to do", "stopped")
            self._refuse_locked(guest, current)
            await emit(
                progress, "shutting-down", {"vmid": guest.vmid, "node": guest.node, "timeout": self.shutdown_timeout}
            )
            what = f"the shutdown of {guest.label}"
            # Deliberately no forceStop: a guest that ignores the request is left running.
            upid = await self._post(guest, what, ("status", "shutdown"), timeout=self.shutdown_timeout)
            try:
                await self._wait(guest, upid, what, self.shutdown_timeout + self.shutdown_grace, progress)
            except TaskFailed as exc:
                after = await self._status_after(guest)
                if after == "stopped":
                    raise
                still = "is still running" if after == "running" else f"is {after or 'in an unknown state'}"
                said = f" (Proxmox: {exc.exitstatus})" if exc.exitstatus else ""
                raise TaskFailed(
                    f"{guest.label} did not shut down within {self.shutdown_timeout} s and {still}{said};"
                    " Wingman never forces a stop: shut it down from inside, or stop it in Proxmox if you accept the risk",
                    upid=exc.upid,
                    exitstatus=exc.exitstatus,
                    last_logs=exc.last_logs,
                ) from None
            after = await self._status_after(guest)
            return _outcome(guest, "shutdown", True, f"{guest.label} shut down cleanly", after, upid=upid)

    async def reboot(
        self, vmid: object, visible: Visible, *, actor: str = "wingman", progress: Progress = no_progress
    ) -> VmOutcome:
        """A clean reboot through the guest; a stopped guest is refused (start it instead)."""
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} (reboot)", label=guest.label):
            _refuse_template(guest)
            current = await self._current(guest)
            if current.status != "running":
                raise Refused(f"{guest.label} is {current.status}, not running; use /vm start to start it")
            self._refuse_locked(guest, current)
            await emit(progress, "rebooting", {"vmid": guest.vmid, "node": guest.node})
            what = f"the reboot of {guest.label}"
            upid = await self._post(guest, what, ("status", "reboot"), timeout=self.shutdown_timeout)
            await self._wait(guest, upid, what, self.shutdown_timeout + self.task_timeout, progress)
            after = await self._status_after(guest)
            return _outcome(guest, "reboot", True, f"{guest.label} rebooted", after, upid=upid)

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
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} (snapshot)", label=guest.label):
            _refuse_template(guest)
            current = await self._current(guest)
            self._refuse_locked(guest, current)
            taken = await self._snapshot_names(guest)
            if name is None:
                name = free_snapshot_name(DEFAULT_SNAPSHOT_PREFIX, taken, self.now())
            elif name in taken:
                raise Refused(f"{guest.label} already has a snapshot named {name!r}")
            upid = await self._take_snapshot(guest, name, f"taken by Wingman for {actor}", progress)
            after = await self._status_after(guest)
            return _outcome(
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
        guest = await self._locate(vmid, visible)
        with self.locks.hold(guest.vmid, f"{actor} (rollback)", label=guest.label):
            _refuse_template(guest)
            current = await self._current(guest)
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
                upid = await self._post(guest, what, ("snapshot", snapshot, "rollback"))
                await self._wait(guest, upid, what, self.task_timeout, progress)
            except ActionError as exc:
                logs = getattr(exc, "last_logs", [])
                hint = ""
                if any("most recent snapshot" in line for line in logs):
                    hint = " (this storage rolls back only to its newest snapshot)"
                raise _reworded(exc, f"{exc.reason}{hint}; {kept}") from None
            after = await self._status_after(guest)
            now = f"; it is now {after}" if after else ""
            return _outcome(
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
        upid = await self._post(guest, what, ("snapshot",), snapname=name, description=description)
        await self._wait(guest, upid, what, self.task_timeout, progress)
        return upid

    # -- start-up self-check ------------------------------------------------------------------------

    def _permissions_at(self, path: str) -> Callable[[ProxmoxAPI], Any]:
        return lambda api: api.access.permissions.get(path=path, userid=self.principal)

    async def self_check(self, vmids: Iterable[int], visible: Visible | None = None) -> list[str]:
        """Problems with the allowlisted guests, one line each; [] when there are none.

        Reads the token's (or user's) effective privileges on each ``/vms/<vmid>`` and says
        which of VM.Audit, VM.PowerMgmt, VM.Snapshot, VM.Snapshot.Rollback are missing and
        what will fail without them; then names allowlisted vmids Proxmox does not list and,
        given ``visible``, those on a node that is not allowlisted. Never raises for a
        Proxmox failure: that is one line too. Meant to be called once, at start-up.
        """
        wanted = sorted({v for v in (parse_vmid(x) for x in vmids) if v is not None})
        if not wanted:
            return []
        try:
            missing_by_vm: dict[int, list[str]] = {}
            for vmid in wanted:
                path = f"/vms/{vmid}"
                perms = await self._run("the permission check", self._permissions_at(path))
                held = perms.get(path) if isinstance(perms, dict) else None
                have = set(held) if isinstance(held, dict) else set()
                missing = [p for p in REQUIRED_PRIVILEGES if p not in have]
                if missing:
                    missing_by_vm[vmid] = missing
            guests = {g.vmid: g for g in await self._guests()}
        except ActionError as exc:
            return [f"Proxmox self-check could not run: {exc.reason}"]

        lines: list[str] = []
        grouped: dict[tuple[str, ...], list[int]] = {}
        for vmid, missing in missing_by_vm.items():
            grouped.setdefault(tuple(missing), []).append(vmid)
        for missing_tuple, ids in grouped.items():
            fails = "; ".join(f"{REQUIRED_PRIVILEGES[p]} will fail" for p in missing_tuple)
            which = "VM" if len(ids) == 1 else "VMs"
            lines.append(
                f"Proxmox: {self.principal} lacks {', '.join(missing_tuple)} on {which} "
                f"{', '.join(map(str, ids))}: {fails}"
            )
        for vmid in wanted:
            guest = guests.get(vmid)
            if guest is None:
                if "VM.Audit" not in missing_by_vm.get(vmid, []):
                    lines.append(f"Proxmox: VM {vmid} is allowlisted but Proxmox lists no such guest")
            elif visible is not None and not visible(vmid, guest.node):
                lines.append(f"Proxmox: {guest.label} is on node {guest.node}, which is not allowlisted")
        return lines


# -- helpers ---------------------------------------------------------------------------------


def _reworded(exc: ActionError, reason: str) -> ActionError:
    """The same kind of error (with the same task details) saying ``reason``."""
    if isinstance(exc, TaskFailed):
        return TaskFailed(reason, upid=exc.upid, exitstatus=exc.exitstatus, last_logs=exc.last_logs)
    return type(exc)(reason)


def _credentials(token: str | None, user: str | None, password: str | None) -> dict[str, Any]:
    """proxmoxer's keyword arguments for these credentials, plus "principal" (who we are)."""
    if token:
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise StartupError("PROXMOX_TOKEN: write it as user@realm!tokenid=secret, e.g. wingman@pve!bot=<uuid>")
        if password:
            raise StartupError("PROXMOX_PASSWORD: set PROXMOX_TOKEN or PROXMOX_USER/PROXMOX_PASSWORD, not both")
        if user and user != match["user"]:
            raise StartupError(f"PROXMOX_USER: {show(user)} is not the user of PROXMOX_TOKEN ({match['user']})")
        return {
            "user": match["user"],
            "token_name": match["name"],
            "token_value": match["secret"],
            "principal": f"{match['user']}!{match['name']}",
        }
    if not user and not password:
        raise StartupError("PROXMOX_TOKEN: is not set; give an API token (or PROXMOX_USER and PROXMOX_PASSWORD)")
    if not user:
        raise StartupError("PROXMOX_USER: is not set, but PROXMOX_PASSWORD is")
    if not password:
        raise StartupError("PROXMOX_PASSWORD: is not set, but PROXMOX_USER is")
    if _USERID.fullmatch(user) is None:
        raise StartupError(f"PROXMOX_USER: {show(user)} is not a Proxmox user id; write user@realm, e.g. root@pam")
    return {"user": user, "password": password, "principal": user}


def _verification(verify_ssl: bool, ca_bundle: str | Path | None) -> bool | str:
    """What requests' ``verify`` gets: the CA bundle's path, True, or False."""
    if ca_bundle is None or str(ca_bundle) == "":
        return bool(verify_ssl)
    if not verify_ssl:
        raise StartupError("PROXMOX_CA_BUNDLE: is set while PROXMOX_VERIFY_SSL is false; remove one of them")
    path = Path(ca_bundle)
    if not path.is_file():
        raise StartupError(f"PROXMOX_CA_BUNDLE: {path} is not a file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise StartupError(f"PROXMOX_CA_BUNDLE: {path} holds no usable PEM certificate ({_cause(exc)})") from None
    return str(path)


def _guest_of(entry: object) -> VmStatus | None:
    """A guest from one /cluster/resources entry; None for anything else or anything malformed."""
    if not isinstance(entry, dict) or entry.get("type") not in GUEST_KINDS:
        return None
    vmid = entry.get("vmid")
    node = entry.get("node")
    if isinstance(vmid, bool) or not isinstance(vmid, int) or parse_vmid(vmid) is None:
        return None
    if node_name_problem(node) is not None:
        return None
    assert isinstance(node, str)
    name = entry.get("name")
    lock = entry.get("lock")
    status = entry.get("status")
    return VmStatus(
        vmid=vmid,
        name=_one_line(name, 63) if isinstance(name, str) else "",
        kind=str(entry["type"]),
        node=node,
        status=_one_line(status, 20) if isinstance(status, str) and status else "unknown",
        uptime_seconds=_number(entry.get("uptime"), int),
        cpu=_number(entry.get("cpu"), float),
        cpus=_number(entry.get("maxcpu"), float),
        mem_bytes=_number(entry.get("mem"), int),
        maxmem_bytes=_number(entry.get("maxmem"), int),
        lock=_one_line(lock, 40) if isinstance(lock, str) and lock else None,
        template=entry.get("template") in (1, True, "1"),
    )


def _number(value: object, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return kind(value)


def _refuse_template(guest: VmStatus) -> None:
    if guest.template:
        raise Refused(f"{guest.label} is a template; templates cannot be started, stopped or snapshotted")


def _outcome(guest: VmStatus, action: str, changed: bool, summary: str, status: str | None, **extra: Any) -> VmOutcome:
    return VmOutcome(
        vmid=guest.vmid,
        kind=guest.kind,
        node=guest.node,
        action=action,
        changed=changed,
        summary=summary,
        status=status,
        **extra,
    )


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f}"


def _cause(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 error, on one line, without URLs."""
    text = str(exc)
    for pattern in (r"\[SSL[^\]]*\][^(')\"]*", r"\[Errno -?\d+\][^(')\"]*"):
        match = re.search(pattern, text)
        if match:
            return _one_line(match.group(0), 160)
    if "Connection refused" in text:
        return "connection refused"
    return _one_line(re.sub(r"https?://\S+", "", text), 160) or type(exc).__name__


__all__ = [
    "DEFAULT_PORT",
    "REQUIRED_PRIVILEGES",
    "SNAPSHOT_NAME_RULE",
    "ProxmoxDriver",
    "ProxmoxSettings",
    "TaskFailed",
    "Visible",
    "VmOutcome",
    "VmStatus",
    "check_snapshot_name",
    "free_snapshot_name",
    "guest_label",
    "parse_host",
    "snapshot_name_problem",
]
