"""A Proxmox VE API test double: an HTTPS server speaking ``/api2/json`` for the driver tests.

No Proxmox cluster is reachable from the test machines, so the driver's tests run the real
driver (proxmoxer, requests, real TLS) against this server::

    tls = make_tls(tmp_path)                               # a CA and a cert for 127.0.0.1
    async with ProxmoxDouble(tls) as pve:
        pve.add_token("wingman@pve", "bot", "s3cret")
        pve.add_guest(101, node="pve1", kind="qemu", name="web", status="running")
        driver = ProxmoxDriver(pve.host, token="wingman@pve!bot=s3cret", ca_bundle=tls.ca_cert)
        ...
        assert [c.path for c in pve.calls if c.method == "POST"] == [...]

What it serves (the endpoints the driver uses, and the power ones it must not use, so a
test can see it never did): ``GET /version``, ``POST /access/ticket``, ``GET
/access/permissions``, ``GET /cluster/resources``, ``GET /nodes``, and for ``qemu`` and
``lxc`` guests ``GET …/status/current``, ``POST …/status/{start,shutdown,reboot,stop}``,
``GET|POST …/snapshot``, ``POST …/snapshot/{snapname}/rollback``, ``GET
/nodes/{node}/tasks/{upid}/{status,log}``. Another path answers 501, as Proxmox does.

Honesty rules (the double is only useful if code that passes here works against Proxmox):

- Parameters are checked the way PVE's JSONSchema checks them, with the parameter lists,
  types, enums, patterns and limits copied below (``ENDPOINTS``) from Proxmox's generated API
  description (pve-docs ``apidata.js``): a parameter an endpoint does not define, a missing
  one, a wrong type, a value out of range are a 400 "Parameter verification failed." with
  PVE's ``errors`` map. Path parameters (node, vmid, snapname) are checked too. The formats
  used (pve-node, pve-vmid, pve-configid) follow pve-common's checks; pve-configid is
  ``/^[a-z][a-z0-9_-]+$/i`` there, so a one-character snapshot name is refused.
- Authentication as in PVE: ``Authorization: PVEAPIToken=user@realm!tokenid=secret``, or a
  ticket from ``POST /access/ticket`` sent as cookie ``PVEAuthCookie`` with header
  ``CSRFPreventionToken`` on every write; anything else is a 401. Privileges are checked
  per endpoint as the schema's ``permissions`` say (a 403 "Permission check failed"), and
  ``/cluster/resources`` lists only guests the caller has VM.Audit on.
- Every action is a task with a UPID; tasks run in the background (snapshot and rollback
  holding the guest's config lock while they run), and end with ``exitstatus`` "OK" or an error, their log ending in
  ``TASK OK`` / ``TASK ERROR: …`` as PVE's workers write it. A guest's own failures are
  modelled: already running, not running, locked, a guest that ignores the shutdown request
  (the task fails after its ``timeout``, scaled by ``time_scale``, unless forceStop), a
  snapshot name already used, a missing snapshot, storage that rolls back only to the newest
  snapshot (ZFS).
- Errors are answered as PVE's HTTP server answers them: the message in the HTTP reason
  phrase, a JSON body ``{"data": null}`` (plus ``errors`` for parameter errors).

Known simplifications: one principal's privileges are the union of its ACL entries on the
path and its parents (no roles, no pools, no token privilege separation); ``/access/ticket``
is not in the schema subset we copied, so its parameters are the documented ones without
their limits; task ids use this process's pid; no HA, no migration, no vmstate snapshots.
Tests steer it with ``add_*``, ``plan_task`` (fail or hang the next task of a type),
``fail_next`` (inject an HTTP error) and read ``calls``, ``tasks`` and ``guests``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import itertools
import json
import os
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALL_VM_PRIVILEGES = frozenset({"VM.Audit", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback"})

# -- the schema subset (copied from Proxmox's API description; see the module docstring) -----

Rule = dict[str, Any]  # one parameter: type, optional, enum, pattern, minimum, maximum, maxLength, format
Spec = dict[str, Rule]  # an endpoint's parameters by name

_NODE: Rule = {"type": "string", "format": "pve-node"}
_VMID: Rule = {"type": "integer", "format": "pve-vmid", "minimum": 100, "maximum": 999999999}
_SNAPNAME: Rule = {"type": "string", "format": "pve-configid", "maxLength": 40}
_OPT_BOOL: Rule = {"type": "boolean", "optional": True}
_OPT_TIMEOUT: Rule = {"type": "integer", "minimum": 0, "optional": True}
_USERID_PATTERN = r"[^\s:/]+@[A-Za-z][A-Za-z0-9\.\-_]+(?:![A-Za-z][A-Za-z0-9\.\-_]+)?"

QEMU_START: Spec = {
    "node": _NODE,
    "vmid": _VMID,
    "force-cpu": {"type": "string", "optional": True},
    "machine": {"type": "string", "optional": True},
    "migratedfrom": {**_NODE, "optional": True},
    "migration_network": {"type": "string", "optional": True},
    "migration_type": {"type": "string", "enum": ["secure", "insecure"], "optional": True},
    "nets-host-mtu": {"type": "string", "pattern": r"net\d+=\d+(,net\d+=\d+)*", "optional": True},
    "skiplock": _OPT_BOOL,
    "stateuri": {"type": "string", "maxLength": 128, "optional": True},
    "targetstorage": {"type": "string", "optional": True},
    "timeout": _OPT_TIMEOUT,
    "with-conntrack-state": _OPT_BOOL,
}
LXC_START: Spec = {"node": _NODE, "vmid": _VMID, "debug": _OPT_BOOL, "skiplock": _OPT_BOOL}
QEMU_SHUTDOWN: Spec = {
    "node": _NODE,
    "vmid": _VMID,
    "forceStop": _OPT_BOOL,
    "keepActive": _OPT_BOOL,
    "skiplock": _OPT_BOOL,
    "timeout": _OPT_TIMEOUT,
}
LXC_SHUTDOWN: Spec = {"node": _NODE, "vmid": _VMID, "forceStop": _OPT_BOOL, "timeout": _OPT_TIMEOUT}
REBOOT: Spec = {"node": _NODE, "vmid": _VMID, "timeout": _OPT_TIMEOUT}
QEMU_STOP: Spec = {
    "node": _NODE,
    "vmid": _VMID,
    "keepActive": _OPT_BOOL,
    "migratedfrom": {**_NODE, "optional": True},
    "overrule-shutdown": _OPT_BOOL,
    "skiplock": _OPT_BOOL,
    "timeout": _OPT_TIMEOUT,
}
LXC_STOP: Spec = {"node": _NODE, "vmid": _VMID, "overrule-shutdown": _OPT_BOOL, "skiplock": _OPT_BOOL}
GUEST_ONLY: Spec = {"node": _NODE, "vmid": _VMID}
QEMU_SNAPSHOT: Spec = {
    "node": _NODE,
    "vmid": _VMID,
    "snapname": _SNAPNAME,
    "description": {"type": "string", "optional": True},
    "vmstate": _OPT_BOOL,
}
LXC_SNAPSHOT: Spec = {
    "node": _NODE,
    "vmid": _VMID,
    "snapname": _SNAPNAME,
    "description": {"type": "string", "optional": True},
}
ROLLBACK: Spec = {"node": _NODE, "vmid": _VMID, "snapname": _SNAPNAME, "start": _OPT_BOOL}

# (method, path template) -> the parameters that endpoint defines (additionalProperties: 0).
ENDPOINTS: dict[tuple[str, str], Spec] = {
    ("GET", "/version"): {},
    ("POST", "/access/ticket"): {
        "username": {"type": "string"},
        "password": {"type": "string"},
        "realm": {"type": "string", "optional": True},
        "otp": {"type": "string", "optional": True},
        "path": {"type": "string", "optional": True},
        "privs": {"type": "string", "optional": True},
        "new-format": _OPT_BOOL,
        "tfa-challenge": {"type": "string", "optional": True},
    },
    ("GET", "/access/permissions"): {
        "path": {"type": "string", "optional": True},
        "userid": {"type": "string", "pattern": _USERID_PATTERN, "optional": True},
    },
    ("GET", "/cluster/resources"): {
        "type": {"type": "string", "enum": ["vm", "storage", "node", "sdn"], "optional": True},
    },
    ("GET", "/nodes"): {},
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"): GUEST_ONLY,
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): GUEST_ONLY,
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"): QEMU_START,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): LXC_START,
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"): QEMU_SHUTDOWN,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"): LXC_SHUTDOWN,
    ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot"): REBOOT,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot"): REBOOT,
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"): QEMU_STOP,
    ("POST", "/nodes/{node}/lxc/{vmid}/status/stop"): LXC_STOP,
    ("GET", "/nodes/{node}/qemu/{vmid}/snapshot"): GUEST_ONLY,
    ("GET", "/nodes/{node}/lxc/{vmid}/snapshot"): GUEST_ONLY,
    ("POST", "/nodes/{node}/qemu/{vmid}/snapshot"): QEMU_SNAPSHOT,
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot"): LXC_SNAPSHOT,
    ("POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback"): ROLLBACK,
    ("POST", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"): ROLLBACK,
    ("GET", "/nodes/{node}/tasks/{upid}/status"): {"node": _NODE, "upid": {"type": "string"}},
    ("GET", "/nodes/{node}/tasks/{upid}/log"): {
        "node": _NODE,
        "upid": {"type": "string"},
        "download": _OPT_BOOL,
        "limit": {"type": "integer", "minimum": 0, "optional": True},
        "start": {"type": "integer", "minimum": 0, "optional": True},
    },
}

# The privilege each guest endpoint checks on /vms/{vmid} (the schema's "permissions");
# several mean any one of them will do.
_GUEST_PRIVILEGE = {
    "status/current": ("VM.Audit",),
    "status/start": ("VM.PowerMgmt",),
    "status/shutdown": ("VM.PowerMgmt",),
    "status/reboot": ("VM.PowerMgmt",),
    "status/stop": ("VM.PowerMgmt",),
    "GET snapshot": ("VM.Audit",),
    "POST snapshot": ("VM.Snapshot",),
    "rollback": ("VM.Snapshot", "VM.Snapshot.Rollback"),
}

_FORMATS: dict[str, Callable[[str], str | None]] = {}


def _format(name: str) -> Callable[[Callable[[str], str | None]], Callable[[str], str | None]]:
    def register(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
        _FORMATS[name] = check
        return check

    return register


@_format("pve-node")
def _check_node(value: str) -> str | None:
    if re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", value) is None:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return "invalid format - value does not look like a valid node name\n"
    return None


@_format("pve-vmid")
def _check_vmid(value: str) -> str | None:
    if re.fullmatch(r"[1-9][0-9]+", value) is None:
        return "invalid format - value does not look like a valid VM ID\n"
    return None


@_format("pve-configid")
def _check_configid(value: str) -> str | None:
    if re.fullmatch(r"[a-z][a-z0-9_-]+", value, re.IGNORECASE) is None:
        return f"invalid format - invalid configuration ID '{value}'\n"
    return None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check_parameters(
    spec: Mapping[str, Mapping[str, Any]], given: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """PVE's parameter verification: (typed values, errors by parameter name)."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in given:
        if name not in spec:
            errors[name] = "property is not defined in schema and the schema does not allow additional properties"
    for name, rule in spec.items():
        if name not in given:
            if not rule.get("optional"):
                errors[name] = "property is missing and it is not optional"
            continue
        raw = given[name]
        kind = rule["type"]
        value: Any
        if kind == "integer":
            if re.fullmatch(r"-?\d+", raw) is None:
                errors[name] = f"type check ('integer') failed - got '{raw}'"
                continue
            value = int(raw)
        elif kind == "number":
            if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw) is None:
                errors[name] = f"type check ('number') failed - got '{raw}'"
                continue
            value = float(raw)
        elif kind == "boolean":
            if raw.lower() in _TRUE:
                value = True
            elif raw.lower() in _FALSE:
                value = False
            else:
                errors[name] = f"type check ('boolean') failed - got '{raw}'"
                continue
        else:
            value = raw
        if kind in ("integer", "number"):
            if "minimum" in rule and value < rule["minimum"]:
                errors[name] = f"value must have a minimum value of {rule['minimum']}"
                continue
            if "maximum" in rule and value > rule["maximum"]:
                errors[name] = f"value must have a maximum value of {rule['maximum']}"
                continue
        if kind == "string":
            if "maxLength" in rule and len(value) > rule["maxLength"]:
                errors[name] = f"value may only be {rule['maxLength']} characters long"
                continue
            if "enum" in rule and value not in rule["enum"]:
                errors[name] = f"value '{value}' does not have a value in the enumeration '{', '.join(rule['enum'])}'"
                continue
            if "pattern" in rule and re.fullmatch(rule["pattern"], value) is None:
                errors[name] = "value does not match the regex pattern"
                continue
        if "format" in rule:
            problem = _FORMATS[rule["format"]](raw)
            if problem is not None:
                errors[name] = problem
                continue
        values[name] = value
    return values, errors


# -- TLS made by the test ----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # give this to the driver as its CA bundle
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def make_tls(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A new CA and a server certificate it signed for ``host`` (an IP address), as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wingman test Proxmox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


# -- state ----------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    name: str
    description: str
    snaptime: int
    parent: str | None


@dataclass
class Guest:
    vmid: int
    kind: str  # qemu or lxc
    node: str
    name: str
    status: str = "stopped"
    lock: str | None = None
    template: bool = False
    maxcpu: int = 2
    maxmem: int = 4 * 2**30
    started_at: float | None = None
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    parent: str | None = None  # the snapshot the present state descends from
    ignores_shutdown: bool = False  # the guest does not react to ACPI / its init ignores SIGPWR
    newest_snapshot_rollback_only: bool = False  # ZFS: only the newest snapshot can be rolled back to

    @property
    def uptime(self) -> int:
        return int(time.monotonic() - self.started_at) if self.status == "running" and self.started_at else 0

    def resource(self) -> dict[str, Any]:
        running = self.status == "running"
        entry: dict[str, Any] = {
            "id": f"{self.kind}/{self.vmid}",
            "type": self.kind,
            "vmid": self.vmid,
            "node": self.node,
            "name": self.name,
            "status": self.status,
            "uptime": self.uptime,
            "cpu": 0.04 if running else 0,
            "maxcpu": self.maxcpu,
            "mem": self.maxmem // 4 if running else 0,
            "maxmem": self.maxmem,
            "disk": 0,
            "maxdisk": 32 * 2**30,
            "template": int(self.template),
        }
        if self.lock:
            entry["lock"] = self.lock
        return entry


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    pid: int
    pstart: int
    status: str = "running"
    exitstatus: str | None = None
    log: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "upid": self.upid,
            "node": self.node,
            "type": self.type,
            "id": self.id,
            "user": self.user,
            "starttime": self.starttime,
            "pid": self.pid,
            "pstart": self.pstart,
            "status": self.status,
        }
        if self.exitstatus is not None:
            data["exitstatus"] = self.exitstatus
        return data


@dataclass(frozen=True)
class TaskPlan:
    """How the next task of one type goes instead of its normal course."""

    outcome: str  # "fail" (ends with exitstatus) or "hang" (never ends)
    exitstatus: str = ""
    log: tuple[str, ...] = ()

    @classmethod
    def failing(cls, exitstatus: str, *log: str) -> TaskPlan:
        return cls("fail", exitstatus, log)

    @classmethod
    def hanging(cls, *log: str) -> TaskPlan:
        return cls("hang", "", log)


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str  # below /api2/json
    params: dict[str, str]  # query and body together, as sent
    principal: str | None  # who was authenticated (None: nobody)
    status: int  # the HTTP status answered


@dataclass
class _Fault:
    status: int
    reason: str
    method: str | None
    path: re.Pattern[str] | None
    count: int


class _Answer(Exception):
    """Ends a request with an error answer."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


class _TaskError(Exception):
    """Ends a task with this exit status (PVE's worker `die`)."""


# -- the server -------------------------------------------------------------------------------------


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"), template)
    for method, template in ENDPOINTS
]


class ProxmoxDouble:
    """The server. Use as ``async with ProxmoxDouble(tls) as pve``; ``pve.host`` is its host:port."""

    def __init__(self, tls: TlsFiles, *, task_seconds: float = 0.05, time_scale: float = 0.01) -> None:
        self.tls = tls
        self.task_seconds = task_seconds  # how long a normal task runs
        self.time_scale = time_scale  # real seconds per Proxmox-side timeout second (guest waits)
        self.guests: dict[int, Guest] = {}
        self.nodes: set[str] = set()
        self.tokens: dict[str, str] = {}  # "user@realm!tokenid" -> secret
        self.passwords: dict[str, str] = {}  # "user@realm" -> password
        self.acl: dict[str, dict[str, set[str]]] = {}  # principal -> path -> privileges
        self.tasks: dict[str, Task] = {}
        self.calls: list[RecordedCall] = []
        self._plans: dict[str, list[TaskPlan]] = {}
        self._faults: list[_Fault] = []
        self._key = secrets.token_bytes(32)
        self._pids = itertools.count(4000)
        self._workers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- set-up --------------------------------------------------------------------------------

    def add_token(self, user: str, token_id: str, secret: str, privileges: Mapping[str, set[str]] | None = None) -> str:
        """An API token; by default with every VM privilege on ``/``. Returns its full id."""
        principal = f"{user}!{token_id}"
        self.tokens[principal] = secret
        self.acl[principal] = {p: set(v) for p, v in (privileges or {"/": set(ALL_VM_PRIVILEGES)}).items()}
        return principal

    def add_user(self, user: str, password: str, privileges: Mapping[str, set[str]] | None = None) -> None:
        self.passwords[user] = password
        self.acl[user] = {p: set(v) for p, v in (privileges or {"/": set(ALL_VM_PRIVILEGES)}).items()}

    def add_guest(
        self, vmid: int, *, node: str, kind: str = "qemu", name: str = "", status: str = "stopped", **options: Any
    ) -> Guest:
        guest = Guest(vmid=vmid, kind=kind, node=node, name=name or f"guest{vmid}", status=status, **options)
        if status == "running":
            guest.started_at = time.monotonic() - 3600
        self.guests[vmid] = guest
        self.nodes.add(node)
        return guest

    def add_snapshot(self, vmid: int, name: str, description: str = "") -> None:
        guest = self.guests[vmid]
        guest.snapshots[name] = Snapshot(name, description, int(time.time()), guest.parent)
        guest.parent = name

    def plan_task(self, task_type: str, plan: TaskPlan) -> None:
        """The next task of ``task_type`` (qmstart, vzshutdown, qmsnapshot, …) goes as planned."""
        self._plans.setdefault(task_type, []).append(plan)

    def fail_next(
        self,
        status: int = 500,
        reason: str = "internal error",
        *,
        method: str | None = None,
        path: str | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` matching requests (path: a regex on the path below /api2/json) with an error."""
        self._faults.append(_Fault(status, reason, method, re.compile(path) if path else None, count))

    def posts(self) -> list[str]:
        """The paths of the POSTs that were accepted, in order (the call log's actions)."""
        return [c.path for c in self.calls if c.method == "POST" and c.status == 200 and c.path != "/access/ticket"]

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/api2/json/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self.tls.server_context()).start()
        return self

    async def stop(self) -> None:
        for worker in list(self._workers):
            worker.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- request handling -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        params: dict[str, str] = dict(request.query)
        if request.method in ("POST", "PUT") and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                params.update({k: _as_text(v) for k, v in body.items()})
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        principal: str | None = None
        try:
            principal = self._authenticate(request, path)
            self._inject_fault(request.method, path)
            data = await self._dispatch(request.method, path, params, principal)
        except _Answer as answer:
            self.calls.append(RecordedCall(request.method, path, params, principal, answer.status))
            answered: dict[str, Any] = {"data": None}
            if answer.errors:
                answered["errors"] = answer.errors
            return web.json_response(answered, status=answer.status, reason=answer.reason)
        self.calls.append(RecordedCall(request.method, path, params, principal, 200))
        return web.json_response({"data": data})

    def _inject_fault(self, method: str, path: str) -> None:
        for fault in self._faults:
            if fault.count > 0 and fault.method in (None, method) and (fault.path is None or fault.path.search(path)):
                fault.count -= 1
                raise _Answer(fault.status, fault.reason)

    def _authenticate(self, request: web.Request, path: str) -> str | None:
        if path == "/access/ticket":
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("PVEAPIToken="):
            match = re.fullmatch(r"PVEAPIToken=([^=\s]+)=(\S+)", header)
            if match is None or not hmac.compare_digest(self.tokens.get(match[1], "\0"), match[2]):
                raise _Answer(401, "authentication failure")
            return match[1]
        ticket = request.cookies.get("PVEAuthCookie")
        if ticket:
            user = self._verify_ticket(ticket)
            if user is None:
                raise _Answer(401, "authentication failure")
            if request.method != "GET":
                csrf = request.headers.get("CSRFPreventionToken", "")
                if not hmac.compare_digest(csrf, self._csrf(user)):
                    raise _Answer(401, "Permission denied - invalid csrf token")
            return user
        raise _Answer(401, "No ticket")

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def _verify_ticket(self, ticket: str) -> str | None:
        parts = ticket.split(":")
        if len(parts) != 5 or parts[0] != "PVE" or parts[3] != "":
            return None
        body = ":".join(parts[:3])
        if not hmac.compare_digest(self._sign(body), parts[4]) or parts[1] not in self.passwords:
            return None
        return parts[1]

    def _csrf(self, user: str) -> str:
        return self._sign(f"csrf:{user}")

    def _privileges(self, principal: str, path: str) -> set[str]:
        """What ``principal`` holds on ``path``: its ACL entries there and on every parent."""
        entries = self.acl.get(principal, {})
        parts = [p for p in path.split("/") if p]
        held = set(entries.get("/", set()))
        for depth in range(1, len(parts) + 1):
            held |= entries.get("/" + "/".join(parts[:depth]), set())
        return held

    def _require(self, principal: str, vmid: int, privileges: tuple[str, ...]) -> None:
        if not self._privileges(principal, f"/vms/{vmid}") & set(privileges):
            raise _Answer(403, f"Permission check failed (/vms/{vmid}, {'|'.join(privileges)})")

    async def _dispatch(self, method: str, path: str, params: dict[str, str], principal: str | None) -> Any:
        for route_method, pattern, template in _ROUTES:
            match = pattern.match(path)
            if match is None or route_method != method:
                continue
            given = dict(params)
            for key, value in match.groupdict().items():
                if key in given:
                    raise _Answer(400, "Parameter verification failed.", {key: "duplicate parameter"})
                given[key] = value
            values, errors = check_parameters(ENDPOINTS[(method, template)], given)
            if errors:
                raise _Answer(400, "Parameter verification failed.", errors)
            return await self._endpoint(method, template, values, principal)
        raise _Answer(501, f"Method '{method} {path}' not implemented")

    async def _endpoint(self, method: str, template: str, p: dict[str, Any], principal: str | None) -> Any:
        if template == "/access/ticket":
            return self._ticket(p)
        assert principal is not None
        if template == "/version":
            return {"version": "8.3.0", "release": "8.3", "repoid": "c1689ccb1065a83b"}
        if template == "/access/permissions":
            return self._permissions(principal, p)
        if template == "/cluster/resources":
            if p.get("type", "vm") != "vm":
                return []
            return [
                g.resource()
                for g in sorted(self.guests.values(), key=lambda g: g.vmid)
                if "VM.Audit" in self._privileges(principal, f"/vms/{g.vmid}")
            ]
        if template == "/nodes":
            return [{"node": n, "status": "online"} for n in sorted(self.nodes)]
        if template.startswith("/nodes/{node}/tasks/"):
            return self._task_endpoint(template, p, principal)
        kind = "qemu" if "/qemu/" in template else "lxc"
        guest = self._guest(p["node"], kind, p["vmid"])
        tail = template.split("{vmid}/", 1)[1]
        key = {"snapshot": f"{method} snapshot", "snapshot/{snapname}/rollback": "rollback"}.get(tail, tail)
        self._require(principal, guest.vmid, _GUEST_PRIVILEGE[key])
        if tail == "status/current":
            return self._current(guest)
        if tail == "snapshot" and method == "GET":
            return self._snapshot_list(guest)
        return self._guest_action(guest, tail, p, principal)

    def _ticket(self, p: dict[str, Any]) -> dict[str, Any]:
        user = p["username"]
        if "realm" in p and "@" not in user:
            user = f"{user}@{p['realm']}"
        if not hmac.compare_digest(self.passwords.get(user, "\0"), p["password"]):
            raise _Answer(401, "authentication failure")
        body = f"PVE:{user}:{int(time.time()):08X}"
        return {
            "username": user,
            "ticket": f"{body}::{self._sign(body)}",
            "CSRFPreventionToken": self._csrf(user),
            "cap": {},
        }

    def _permissions(self, principal: str, p: dict[str, Any]) -> dict[str, dict[str, int]]:
        userid = p.get("userid", principal)
        own = userid == principal or userid.split("!", 1)[0] == principal
        if not own and "Sys.Audit" not in self._privileges(principal, "/access"):
            raise _Answer(403, "Permission check failed (/access, Sys.Audit)")
        if "path" in p:
            return {p["path"]: {priv: 1 for priv in sorted(self._privileges(userid, p["path"]))}}
        return {path: {priv: 1 for priv in sorted(privs)} for path, privs in self.acl.get(userid, {}).items()}

    def _guest(self, node: str, kind: str, vmid: int) -> Guest:
        if node not in self.nodes:
            raise _Answer(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}")
        guest = self.guests.get(vmid)
        if guest is None or guest.node != node or guest.kind != kind:
            folder = "qemu-server" if kind == "qemu" else "lxc"
            raise _Answer(500, f"Configuration file 'nodes/{node}/{folder}/{vmid}.conf' does not exist")
        return guest

    @staticmethod
    def _current(guest: Guest) -> dict[str, Any]:
        data = {
            "vmid": guest.vmid,
            "name": guest.name,
            "status": guest.status,
            "uptime": guest.uptime,
            "cpus": guest.maxcpu,
            "maxmem": guest.maxmem,
            "ha": {"managed": 0},
        }
        if guest.kind == "qemu":
            data["qmpstatus"] = guest.status
        if guest.lock:
            data["lock"] = guest.lock
        if guest.template:
            data["template"] = 1
        return data

    @staticmethod
    def _snapshot_list(guest: Guest) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = []
        for snap in guest.snapshots.values():
            entry: dict[str, Any] = {"name": snap.name, "description": snap.description, "snaptime": snap.snaptime}
            if snap.parent:
                entry["parent"] = snap.parent
            listed.append(entry)
        current: dict[str, Any] = {
            "name": "current",
            "description": "You are here!",
            "running": int(guest.status == "running"),
        }
        if guest.parent:
            current["parent"] = guest.parent
        return [*listed, current]

    def _task_endpoint(self, template: str, p: dict[str, Any], principal: str) -> Any:
        task = self.tasks.get(p["upid"])
        if task is None or task.node != p["node"]:
            raise _Answer(500, "unable to parse worker upid")
        if task.user != principal and "Sys.Audit" not in self._privileges(principal, f"/nodes/{task.node}"):
            raise _Answer(403, f"Permission check failed (/nodes/{task.node}, Sys.Audit)")
        if template.endswith("/status"):
            return task.as_json()
        start, limit = p.get("start", 0), p.get("limit", 50)
        lines = task.log[start : start + limit] if limit else task.log[start:]
        if not lines:
            return [{"n": start + 1, "t": "no content"}]
        return [{"n": start + i + 1, "t": text} for i, text in enumerate(lines)]

    # -- tasks ---------------------------------------------------------------------------------------------

    def _guest_action(self, guest: Guest, tail: str, p: dict[str, Any], principal: str) -> str:
        prefix = "qm" if guest.kind == "qemu" else "vz"
        word = "VM" if guest.kind == "qemu" else "CT"
        if tail == "status/start":
            return self._spawn(guest, f"{prefix}start", principal, self._do_start(guest, p))
        if tail == "status/shutdown":
            return self._spawn(guest, f"{prefix}shutdown", principal, self._do_shutdown(guest, p))
        if tail == "status/reboot":
            if guest.status != "running":
                raise _Answer(500, f"{word} {guest.vmid} not running")
            return self._spawn(guest, f"{prefix}reboot", principal, self._do_reboot(guest, p))
        if tail == "status/stop":
            return self._spawn(guest, f"{prefix}stop", principal, self._do_stop(guest))
        if tail == "snapshot":
            if p["snapname"] == "current" or (guest.kind == "lxc" and p["snapname"] == "vzdump"):
                raise _Answer(500, f"unable to use snapshot name '{p['snapname']}' (reserved name)")
            return self._spawn(guest, f"{prefix}snapshot", principal, self._do_snapshot(guest, p))
        if tail == "snapshot/{snapname}/rollback":
            return self._spawn(guest, f"{prefix}rollback", principal, self._do_rollback(guest, p))
        raise _Answer(501, f"Method 'POST {tail}' not implemented")

    def _spawn(self, guest: Guest, task_type: str, principal: str, work: Any) -> str:
        now = int(time.time())
        pid = next(self._pids)
        upid = f"UPID:{guest.node}:{pid:08X}:{os.getpid() & 0xFFFFFFFF:08X}:{now:08X}:{task_type}:{guest.vmid}:{principal}:"
        task = Task(upid, guest.node, task_type, str(guest.vmid), principal, now, pid, os.getpid())
        self.tasks[upid] = task
        plans = self._plans.get(task_type)
        plan = plans.pop(0) if plans else None
        worker = asyncio.get_running_loop().create_task(self._run_task(task, work, plan))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)
        return upid

    async def _run_task(self, task: Task, work: Any, plan: TaskPlan | None) -> None:
        try:
            if plan is not None:
                work.close()
                task.log.extend(plan.log)
                if plan.outcome == "hang":
                    await asyncio.Event().wait()
                await asyncio.sleep(self.task_seconds)
                raise _TaskError(plan.exitstatus)
            await work
        except _TaskError as exc:
            task.log.append(f"TASK ERROR: {exc}")
            task.status, task.exitstatus = "stopped", str(exc)
            return
        task.log.append("TASK OK")
        task.status, task.exitstatus = "stopped", "OK"

    @staticmethod
    def _check_lock(guest: Guest, allowed: tuple[str, ...] = ()) -> None:
        if guest.lock and guest.lock not in allowed:
            word = "VM" if guest.kind == "qemu" else "CT"
            raise _TaskError(f"{word} is locked ({guest.lock})")

    async def _do_start(self, guest: Guest, p: dict[str, Any]) -> None:
        word = "VM" if guest.kind == "qemu" else "CT"
        if guest.status == "running":
            raise _TaskError(f"{word} {guest.vmid} already running")
        if not p.get("skiplock"):
            self._check_lock(guest, ("suspended",))
        await asyncio.sleep(self.task_seconds)
        guest.status, guest.started_at, guest.lock = "running", time.monotonic(), None

    async def _do_shutdown(self, guest: Guest, p: dict[str, Any]) -> None:
        word = "VM" if guest.kind == "qemu" else "CT"
        if guest.status != "running":
            raise _TaskError(f"{word} {guest.vmid} not running")
        if not p.get("skiplock"):
            self._check_lock(guest)
        timeout = p.get("timeout", 60 if guest.kind == "lxc" else 180)
        if guest.ignores_shutdown:
            await asyncio.sleep(timeout * self.time_scale)
            if not p.get("forceStop"):
                raise _TaskError(
                    f"{word} quit/powerdown failed - got timeout" if guest.kind == "qemu" else "container did not stop"
                )
        else:
            await asyncio.sleep(self.task_seconds)
        guest.status, guest.started_at = "stopped", None

    async def _do_reboot(self, guest: Guest, p: dict[str, Any]) -> None:
        word = "VM" if guest.kind == "qemu" else "CT"
        self._check_lock(guest)
        if guest.ignores_shutdown:
            await asyncio.sleep(p.get("timeout", 180) * self.time_scale)
            raise _TaskError(f"{word} quit/powerdown failed - got timeout")
        await asyncio.sleep(self.task_seconds)
        guest.started_at = time.monotonic()

    async def _do_stop(self, guest: Guest) -> None:
        await asyncio.sleep(self.task_seconds)
        guest.status, guest.started_at = "stopped", None

    async def _do_snapshot(self, guest: Guest, p: dict[str, Any]) -> None:
        name = p["snapname"]
        self._check_lock(guest)
        if name in guest.snapshots:
            raise _TaskError(f"snapshot name '{name}' already used")
        guest.lock = "snapshot"
        try:
            await asyncio.sleep(self.task_seconds)
            self.add_snapshot(guest.vmid, name, p.get("description", ""))
        finally:
            guest.lock = None

    async def _do_rollback(self, guest: Guest, p: dict[str, Any]) -> None:
        name = p["snapname"]
        self._check_lock(guest)
        if name not in guest.snapshots:
            raise _TaskError(f"snapshot '{name}' does not exist")
        if guest.newest_snapshot_rollback_only and name != list(guest.snapshots)[-1]:
            raise _TaskError(
                f"can't rollback, '{name}' is not most recent snapshot on 'local-zfs:vm-{guest.vmid}-disk-0'"
            )
        guest.lock = "rollback"
        try:
            await asyncio.sleep(self.task_seconds)
            # The present state is thrown away and the guest is left stopped (no RAM in snapshots).
            guest.status, guest.started_at, guest.parent = "stopped", None, name
        finally:
            guest.lock = None
        if p.get("start"):
            guest.status, guest.started_at = "running", time.monotonic()


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)
