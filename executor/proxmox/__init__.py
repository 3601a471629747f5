"""The Proxmox VE driver (``ProxmoxDriver``): status, start, shutdown, reboot, snapshot and rollback of guests.

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

The driver's parts, one job a file: ``settings`` (PROXMOX_HOST, credentials, TLS),
``connection`` (proxmoxer calls off the loop, failures worded), ``tasks`` (UPID, waiting,
task logs), ``values`` (guests, outcomes, snapshot names), ``selfcheck`` (start-up
privileges), ``driver`` (the actions).
"""


from executor.proxmox.driver import ProxmoxDriver
from executor.proxmox.selfcheck import REQUIRED_PRIVILEGES
from executor.proxmox.settings import DEFAULT_PORT, ProxmoxSettings, parse_host
from executor.proxmox.tasks import TaskFailed
from executor.proxmox.values import (
    SNAPSHOT_NAME_RULE,
    Visible,
    VmOutcome,
    VmStatus,
    check_snapshot_name,
    free_snapshot_name,
    guest_label,
    snapshot_name_problem,
)

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
