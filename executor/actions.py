"""The action handlers: the closed catalogue's actions that this executor can run.

Each handler takes an ``ActionContext`` (what handlers use of the executor: policy, drivers,
deployer, approvals, audit, the clock; not the executor itself, which imports this module)
and a ``Call`` (who, the verified arguments, the approval it runs under) and returns a
``Result``: a one-line summary for the chat and structured data for the client to format. Policy has already allowed the call; each handler that
reaches Docker or Proxmox decides it again right before calling the driver (``_guard``),
and handlers still check their own arguments. Actions of the catalogue without a handler here answer that they are
not available yet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from audit import AuditStore
from audit.verify import VerifyReport
from executor.approvals import Approval, Approvals
from executor.deploy import DEFAULT_HEALTH_TIMEOUT, Deployer, DeployResult, check_image_reference
from executor.docker_driver import LOG_LINES_DEFAULT, LOG_LINES_MAX, DockerDriver, Visible, labels_of
from executor.people import People
from executor.pinning import ImagePin
from executor.progress import Progress, format_duration, no_progress
from executor.errors import ActionError, ActionFailed, Refused, Unavailable
from executor.stack_update import plan_update, run_update
from executor.stacks import compose_file_note, restart_stack
from executor.proxmox import ProxmoxDriver, VmOutcome, snapshot_name_problem
from executor.updates import UpdateWatch
from policy import Policy, Verdict, allowed_actions, container_visible, decide, effective_entry, vm_visible
from policy.names import STACK_PREFIX, container_name_problem, project_name_problem, stack_target

AUDIT_TAIL_DEFAULT, AUDIT_TAIL_MAX = 10, 50


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What a handler may use of the executor, and nothing more (the executor builds it).

    ``docker``, ``deployer`` and ``proxmox`` are None when that part is not configured;
    ``verify`` verifies the whole audit trail off the event loop.
    """

    policy: Policy
    audit: AuditStore
    approvals: Approvals
    verify: Callable[[], Awaitable[VerifyReport]]
    clock: Callable[[], float]
    docker: DockerDriver | None = None
    deployer: Deployer | None = None
    proxmox: ProxmoxDriver | None = None
    updates: UpdateWatch | None = None
    people: People | None = None  # the display names last seen, for showing entries by name


@dataclass(frozen=True, slots=True)
class Call:
    user_id: int
    args: dict[str, Any]
    approval: Approval | None = None
    progress: Progress = no_progress

    @property
    def actor(self) -> str:
        return f"tg:{self.user_id}"

    @property
    def approved_by(self) -> str | None:
        return self.approval.decided_by if self.approval is not None else None


@dataclass(frozen=True, slots=True)
class Result:
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ActionContext, Call], Awaitable[Result]]


async def whoami(context: ActionContext, call: Call) -> Result:
    role = context.policy.role_of(call.user_id)
    label = role.name.lower() if role is not None else None
    return Result(f"you are tg:{call.user_id}, {label}", {"user_id": call.user_id, "role": label})


async def help_(context: ActionContext, call: Call) -> Result:
    entries = allowed_actions(context.policy, call.user_id)
    listed = [
        {"action": e.name, "usage": e.usage, "description": e.description, "tier": int(e.tier)} for e in entries
    ]
    return Result(f"{len(listed)} commands available to you", {"commands": listed})


async def pending(context: ActionContext, call: Call) -> Result:
    waiting = await context.approvals.pending(context.clock())
    return Result(f"{len(waiting)} requests waiting for approval", {"approvals": [a.as_json() for a in waiting]})


def _count(value: Any, default: int, maximum: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise Refused(f"{name} must be a whole number from 1 to {maximum}")
    return value


def _position(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refused(f"{name} must be an entry's number (a whole number from 0)")
    return value


async def audit_tail(context: ActionContext, call: Call) -> Result:
    """A page of the trail: the newest ``n`` entries, or the ``n`` just before seq ``before``
    (older) or just after seq ``after`` (newer); with the display names of the people in it."""
    n = _count(call.args.get("n"), AUDIT_TAIL_DEFAULT, AUDIT_TAIL_MAX, "n")
    before, after = _position(call.args.get("before"), "before"), _position(call.args.get("after"), "after")
    if before is not None and after is not None:
        raise Refused("give before or after, not both")
    page = await context.audit.page(n, before=before, after=after)
    listed = [
        {
            "seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
            "decision": e.decision, "outcome": e.outcome,
        }
        for e in page.entries
    ]  # fmt: skip
    names = await context.people.names(e.actor for e in page.entries) if context.people is not None else {}
    data = {"entries": listed, "older": page.older, "newer": page.newer, "n": n, "names": names}
    which = "older" if before is not None else "newer" if after is not None else "newest"
    return Result(f"{len(listed)} {which} audit entries", data)


async def verify(context: ActionContext, call: Call) -> Result:
    report: VerifyReport = await context.verify()
    data = {
        "ok": report.ok,
        "entries": report.entries,
        "last_seq": report.last_seq,
        "broken_seq": report.broken_seq,
        "reason": report.reason,
        "summary": report.summary(),
        "warnings": report.warnings,
    }
    return Result(report.summary(), data)


# -- Docker -------------------------------------------------------------------------------


def _guard(context: ActionContext, call: Call, action: str) -> None:
    """Decide the call again right before a driver is called, under the policy held now.

    The request was decided when it came in (and an approved one again when it started);
    this keeps every path to Docker or Proxmox behind the same check, whoever calls it.
    """
    decision = decide(context.policy, user_id=call.user_id, action=action, target=call.args.get("target"))
    if decision.verdict is Verdict.DENY:
        raise Refused(decision.reason)


async def _guard_docker(context: ActionContext, call: Call, action: str) -> None:
    """``_guard`` for a container action, with the target's labels as the engine has them now.

    The labels are read only when the allowlist has ``stack:`` entries (they can allow a
    container by its Compose project); a missing container has none.
    """
    target = call.args.get("target")
    labels = await container_labels(context, target)
    decision = decide(context.policy, user_id=call.user_id, action=action, target=target, labels=labels)
    if decision.verdict is Verdict.DENY:
        raise Refused(decision.reason)


def _uses_stacks(policy: Policy) -> bool:
    return any(entry.startswith(STACK_PREFIX) for entry in policy.containers)


async def container_labels(context: ActionContext, target: object) -> dict[str, str] | None:
    """The labels of the container named exactly ``target`` when policy may need them; None otherwise.

    None when the allowlist has no ``stack:`` entry, Docker is not configured, the target
    is no container name or no such container exists (then only its name can allow it).
    """
    if not _uses_stacks(context.policy) or context.docker is None:
        return None
    if not isinstance(target, str) or container_name_problem(target) is not None:
        return None
    try:
        return labels_of(await context.docker.inspect(target))
    except Refused:
        return None


async def resolve_target(context: ActionContext, action: str, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The arguments with a bare stack name written ``stack:<project>``, and the target container's labels.

    Decided when the request comes in, before policy: a name is the container of that
    name when there is one; otherwise, for the actions that take a stack (``/status``,
    ``/restart``), the Compose project of that name when ``stack:<name>`` is allowlisted;
    otherwise it stays as it was (and policy refuses it like any name it does not allow).
    """
    target = args.get("target")
    entry = effective_entry(context.policy, action)
    if entry is None or not entry.takes_stack or not isinstance(target, str) or target.startswith(STACK_PREFIX):
        return args, await container_labels(context, target)
    if entry.stack_only and project_name_problem(target) is None:
        return {**args, "target": STACK_PREFIX + target}, None
    labels = await container_labels(context, target)  # None here: no container of that name
    allowed_stack = STACK_PREFIX + target in context.policy.containers and project_name_problem(target) is None
    if labels is None and allowed_stack and context.docker is not None:
        return {**args, "target": STACK_PREFIX + target}, None
    return args, labels


def _docker(context: ActionContext) -> DockerDriver:
    if context.docker is None:
        raise Unavailable("Docker is not configured on this executor")
    return context.docker


def _deployer(context: ActionContext) -> Deployer:
    if context.deployer is None:
        raise Unavailable("Docker is not configured on this executor")
    return context.deployer


def _target(call: Call) -> str:
    target = call.args.get("target")
    if not isinstance(target, str):
        raise Refused("name the container, e.g. /restart web")
    return target


async def status(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "status")
    target = call.args.get("target")
    if target is not None and not isinstance(target, str):
        raise Refused("name the container, e.g. /status web")
    visible: Visible = lambda name, labels: container_visible(context.policy, name, labels)  # noqa: E731
    project = stack_target(target)
    if project is not None:
        # The stack itself is allowed (policy said so): every container Compose labelled with it is shown.
        found = await _docker(context).status(lambda name, labels: True, project=project)
        if not found:
            raise Refused(f"there is no Compose stack named {project} on this host")
    else:
        found = await _docker(context).status(visible, target)
    listed = [
        {
            "name": c.name, "state": c.state, "health": c.health, "image": c.image, "image_id": c.image_id,
            "uptime": format_duration(c.uptime_seconds) if c.uptime_seconds is not None else None,
            "restart_count": c.restart_count, "exit_code": c.exit_code, "summary": c.summary(),
            "project": c.project, "service": c.service,
        }
        for c in found
    ]  # fmt: skip
    data: dict[str, Any] = {"containers": listed}
    if project is not None:
        data["project"] = project
    return Result(f"{len(listed)} containers", data)


async def logs(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "logs")
    lines = _count(call.args.get("lines"), LOG_LINES_DEFAULT, 10**6, "lines")
    found = await _docker(context).logs(_target(call), min(lines, LOG_LINES_MAX))
    capped = found.capped or lines > LOG_LINES_MAX
    note = f" (capped at {LOG_LINES_MAX})" if capped else ""
    return Result(f"{len(found.lines)} log lines of {found.name}{note}", {"name": found.name, "lines": found.lines, "capped": capped})


async def restart(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "restart")
    project = stack_target(call.args.get("target"))
    if project is not None:
        timeout = context.deployer.health_timeout if context.deployer is not None else DEFAULT_HEALTH_TIMEOUT
        done = await restart_stack(_docker(context), project, actor=call.actor, health_timeout=timeout, progress=call.progress)
        data = {"project": project, "order": done.order, "order_from": done.order_from, "services": [s.as_json() for s in done.services]}
        if not done.ok:
            raise ActionFailed(done.summary("restart failed"))
        return Result(done.summary("restarted"), data)
    outcome = await _docker(context).restart(_target(call), actor=call.actor, progress=call.progress)
    return Result(outcome.summary, {"changed": outcome.changed, "status": outcome.status.summary()})


async def start(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "start")
    outcome = await _docker(context).start(_target(call), actor=call.actor, progress=call.progress)
    return Result(outcome.summary, {"changed": outcome.changed, "status": outcome.status.summary()})


async def stop(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "stop")
    outcome = await _docker(context).stop(_target(call), actor=call.actor, progress=call.progress)
    return Result(outcome.summary, {"changed": outcome.changed, "status": outcome.status.summary()})


async def _deployed(context: ActionContext, result: DeployResult) -> Result:
    note = ""
    if context.docker is not None:
        try:
            labels = labels_of(await context.docker.inspect(result.service))
            note = await asyncio.to_thread(compose_file_note, labels, result.current.tag)
        except ActionError:
            note = ""  # the deploy is done; the note is a courtesy
    return Result(
        result.summary + note,
        {
            "deployment": result.deployment_id,
            "previous": {"tag": result.previous.tag, "id": result.previous.id},
            "current": {"tag": result.current.tag, "id": result.current.id},
            "seconds": round(result.seconds, 1),
            "verdict": result.verdict,
            **({"compose_note": note.removeprefix("; ")} if note else {}),
        },
    )


def _pinned(call: Call) -> ImagePin:
    """The image the request was bound to when it was made (see :func:`pin_image`)."""
    if "pinned" not in call.args:
        raise Refused("this request was not bound to an image when it was made; ask again")
    return ImagePin.from_json(call.args["pinned"])


async def deploy(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "deploy")
    image = call.args.get("image")
    if not isinstance(image, str):
        raise Refused("name the image, e.g. /deploy web nginx:1.27")
    deployer = _deployer(context)
    result = await deployer.deploy(
        _target(call), image, requested_by=call.actor, approved_by=call.approved_by, pin=_pinned(call),
        progress=call.progress,
    )  # fmt: skip
    return await _deployed(context, result)


async def rollback(context: ActionContext, call: Call) -> Result:
    await _guard_docker(context, call, "rollback")
    deployer = _deployer(context)
    result = await deployer.rollback(
        _target(call), requested_by=call.actor, approved_by=call.approved_by, pin=_pinned(call), progress=call.progress
    )
    return await _deployed(context, result)


async def pin_image(context: ActionContext, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """Deploy and rollback: the arguments with the image resolved NOW, as ``pinned``.

    Done when the request is made, before any approver is asked, so that the approval is
    bound (and its message shows) the image itself, not a name that may move; Refused
    when the image cannot be resolved. The Docker calls run in the driver's threads.
    """
    if action == "update":
        return await _plan_update(context, args)
    if action not in ("deploy", "rollback") or context.deployer is None:
        return args
    if action == "deploy":
        pin = await context.deployer.pin(args["image"])
    else:
        target = args.get("target")
        if not isinstance(target, str):
            raise Refused("name the container, e.g. /rollback web")
        pin = await context.deployer.pin_rollback(target)
    return {**args, "pinned": pin.as_json()}


async def _plan_update(context: ActionContext, args: dict[str, Any]) -> dict[str, Any]:
    """``/update <project>``: the arguments with the stack's update plan, bound to its images, as ``plan``."""
    project = stack_target(args.get("target"))
    if project is None:
        raise Refused("name the stack, e.g. /update immich")
    if context.deployer is None or context.updates is None:
        raise Unavailable("Docker is not configured on this executor")
    steps = await plan_update(context.deployer, context.updates, project, context.clock())
    return {**args, "plan": [step.as_json() for step in steps]}


async def update(context: ActionContext, call: Call) -> Result:
    """An approved ``/update <project>``: the plan it was bound to, applied as one (see executor.stack_update)."""
    await _guard_docker(context, call, "update")
    project = stack_target(call.args.get("target"))
    if project is None:
        raise Refused("name the stack, e.g. /update immich")
    summary, data = await run_update(
        _deployer(context), project, call.args, requested_by=call.actor, approved_by=call.approved_by, progress=call.progress
    )
    return Result(summary, data)


# -- updates ---------------------------------------------------------------------------------

_UPDATE_ID = re.compile(r"[0-9a-f]{12}")


async def updates(context: ActionContext, call: Call) -> Result:
    """``/updates``: check the registries now and list every update; with ``id``: that one update.

    The result is the scheduled announcement's shape (``executor.protocol``, "Updates");
    the check runs through the engine and the registries, the lookup by id only reads the
    executor's database (what a Deploy button needs to make its request).
    """
    _guard(context, call, "updates")
    if context.updates is None:
        raise Unavailable("Docker is not configured on this executor")
    # Labels too: a container allowed by its Compose stack (stack:<project>) is watched as well.
    visible: Visible = lambda name, labels: container_visible(context.policy, name, labels)  # noqa: E731
    wanted = call.args.get("id")
    if wanted is not None:
        if not isinstance(wanted, str) or not _UPDATE_ID.fullmatch(wanted):
            raise Refused("args.id must be an update's id: 12 lower-case hex digits")
        found = await context.updates.get(wanted)
        if found is None or not visible(found.update.target, await container_labels(context, found.update.target)):
            raise Refused(f"no update {wanted} is known; run /updates again")
        data = {"updates": [found.update.as_json()], "problems": [], "checked": 0, "state": found.state}
        return Result(f"update {wanted}: {found.update.target} to {found.update.new_tag} ({found.state})", data)
    report = await context.updates.check(visible, context.clock())
    return Result(report.summary(), report.as_json())


# -- Proxmox VE ---------------------------------------------------------------------------


def _proxmox(context: ActionContext) -> ProxmoxDriver:
    if context.proxmox is None:
        raise Unavailable("Proxmox is not configured on this executor (set PROXMOX_HOST and PROXMOX_TOKEN)")
    return context.proxmox


def _vm_visible(context: ActionContext) -> Callable[[int, str], bool]:
    return lambda vmid, node: vm_visible(context.policy, vmid, node)


def _vmid(call: Call) -> int:
    target = call.args.get("target")
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    if not isinstance(target, int) or isinstance(target, bool):
        raise Refused("name the VM by its number, e.g. /vm start 101")
    return target


def _vm_result(outcome: VmOutcome) -> Result:
    return Result(outcome.summary, outcome.as_json())


async def vm_status(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.status")
    target = call.args.get("target")
    found = await _proxmox(context).status(_vm_visible(context), None if target is None else _vmid(call))
    return Result(f"{len(found)} VMs", {"vms": [{**vm.as_json(), "summary": vm.summary()} for vm in found]})


async def vm_start(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.start")
    return _vm_result(await _proxmox(context).start(_vmid(call), _vm_visible(context), actor=call.actor, progress=call.progress))


async def vm_shutdown(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.shutdown")
    return _vm_result(await _proxmox(context).shutdown(_vmid(call), _vm_visible(context), actor=call.actor, progress=call.progress))


async def vm_reboot(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.reboot")
    return _vm_result(await _proxmox(context).reboot(_vmid(call), _vm_visible(context), actor=call.actor, progress=call.progress))


async def vm_snapshot(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.snapshot")
    name = call.args.get("name")
    outcome = await _proxmox(context).snapshot(
        _vmid(call), _vm_visible(context), name, actor=call.actor, progress=call.progress
    )
    return _vm_result(outcome)


async def vm_rollback(context: ActionContext, call: Call) -> Result:
    _guard(context, call, "vm.rollback")
    snapshot = call.args.get("snapshot")
    if not isinstance(snapshot, str):
        raise Refused("name the snapshot, e.g. /vm rollback 101 before-upgrade")
    outcome = await _proxmox(context).rollback(
        _vmid(call), snapshot, _vm_visible(context), actor=call.actor, progress=call.progress
    )
    return _vm_result(outcome)


def check_arguments(action: str, args: dict[str, Any]) -> None:
    """Refuse, before anyone is asked to approve it, what the action would refuse anyway."""
    if action in ("deploy", "rollback") and "pinned" in args:
        raise Refused("args.pinned is set by the executor when it resolves the image; leave it out")
    if action == "update" and "plan" in args:
        raise Refused("args.plan is set by the executor from the update check; leave it out")
    if action == "deploy":
        if not isinstance(args.get("image"), str):
            raise Refused("name the image, e.g. /deploy web nginx:1.27")
        check_image_reference(args["image"])
    for key in ("name", "snapshot") if action in ("vm.snapshot", "vm.rollback") else ():
        value = args.get(key)
        if value is not None:
            problem = snapshot_name_problem(value) if isinstance(value, str) else "a snapshot name is text"
            if problem is not None:
                raise Refused(problem)


HANDLERS: dict[str, Handler] = {
    "vm.status": vm_status,
    "vm.start": vm_start,
    "vm.shutdown": vm_shutdown,
    "vm.reboot": vm_reboot,
    "vm.snapshot": vm_snapshot,
    "vm.rollback": vm_rollback,
    "status": status,
    "logs": logs,
    "restart": restart,
    "start": start,
    "stop": stop,
    "deploy": deploy,
    "rollback": rollback,
    "update": update,
    "whoami": whoami,
    "help": help_,
    "pending": pending,
    "updates": updates,
    "audit": audit_tail,
    "verify": verify,
}
