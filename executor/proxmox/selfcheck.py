"""The Proxmox driver's start-up self-check: privileges on each allowlisted guest, and guests missing.

Read once at start-up (``wingman check`` and the executor's start), it turns what would
otherwise fail later, in the middle of an approved action, into a line for the operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from executor.errors import ActionError
from executor.proxmox.connection import Connection
from executor.proxmox.values import Visible, VmStatus
from policy.names import parse_vmid

# What the self-check looks for on /vms/<vmid>, and what fails without each.
REQUIRED_PRIVILEGES: dict[str, str] = {
    "VM.Audit": "/vm status",
    "VM.PowerMgmt": "/vm start, shutdown and reboot",
    "VM.Snapshot": "/vm snapshot and the safety snapshot of /vm rollback",
    "VM.Snapshot.Rollback": "/vm rollback",
}


async def self_check(
    connection: Connection,
    guests: Callable[[], Awaitable[list[VmStatus]]],
    vmids: Iterable[int],
    visible: Visible | None = None,
) -> list[str]:
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
            perms = await connection.run(
                    "the permission check", lambda api: api.access.permissions.get(path=path, userid=connection.principal)
                )
            held = perms.get(path) if isinstance(perms, dict) else None
            have = set(held) if isinstance(held, dict) else set()
            missing = [p for p in REQUIRED_PRIVILEGES if p not in have]
            if missing:
                missing_by_vm[vmid] = missing
        guests = {g.vmid: g for g in await guests()}
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
            f"Proxmox: {connection.principal} lacks {', '.join(missing_tuple)} on {which} "
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
