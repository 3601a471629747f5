"""The Proxmox driver's values and names: guests, outcomes, snapshot names.

Pure: nothing here talks to Proxmox. ``guest_of`` turns one ``/cluster/resources`` entry into
a :class:`VmStatus` (or None for anything malformed), so what the API answers is checked
before the driver acts on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from executor.errors import Refused
from executor.progress import format_duration
from policy.names import node_name_problem, parse_vmid, show

# The caller's allowlist check: may this vmid on this node be seen and acted on?
Visible = Callable[[int, str], bool]

GUEST_KINDS = ("qemu", "lxc")

# Snapshot names are Proxmox "pve-configid"s with maxLength 40 (the API schema). Proxmox's
# own check is /^[a-z][a-z0-9_-]+$/i: a letter and AT LEAST one more character, so a
# one-letter name is refused by Proxmox and therefore here.
SNAPSHOT_NAME_MAX = 40
_SNAPSHOT_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]+")
RESERVED_SNAPSHOT_NAMES = frozenset({"current", "vzdump"})  # refused by the snapshot API
SNAPSHOT_NAME_RULE = "snapshot names are 2 to 40 characters: a letter, then letters, digits, '_' and '-'"
DEFAULT_SNAPSHOT_PREFIX = "wingman"
SAFETY_SNAPSHOT_PREFIX = "wingman-pre-rollback"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

# VmStatus.as_json: the fields under the names Proxmox's own API gives them.
_STATUS_JSON_NAMES = {"kind": "type", "uptime_seconds": "uptime", "mem_bytes": "mem", "maxmem_bytes": "maxmem"}


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
        """The fields in order, under the names Proxmox's own API gives them."""
        return {_STATUS_JSON_NAMES.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}


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
        """The fields in order, ``kind`` as "type" (the word Proxmox uses), without the summary."""
        return {("type" if f.name == "kind" else f.name): getattr(self, f.name) for f in fields(self) if f.name != "summary"}


@dataclass(frozen=True, slots=True)
class Current:
    """A guest's ``status/current``: what an action checks before it acts."""

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


def guest_of(entry: object) -> VmStatus | None:
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
        name=one_line(name, 63) if isinstance(name, str) else "",
        kind=str(entry["type"]),
        node=node,
        status=one_line(status, 20) if isinstance(status, str) and status else "unknown",
        uptime_seconds=_number(entry.get("uptime"), int),
        cpu=_number(entry.get("cpu"), float),
        cpus=_number(entry.get("maxcpu"), float),
        mem_bytes=_number(entry.get("mem"), int),
        maxmem_bytes=_number(entry.get("maxmem"), int),
        lock=one_line(lock, 40) if isinstance(lock, str) and lock else None,
        template=entry.get("template") in (1, True, "1"),
    )


def _number(value: object, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return kind(value)


def refuse_template(guest: VmStatus) -> None:
    if guest.template:
        raise Refused(f"{guest.label} is a template; templates cannot be started, stopped or snapshotted")


def outcome(guest: VmStatus, action: str, changed: bool, summary: str, status: str | None, **extra: Any) -> VmOutcome:
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


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f}"


