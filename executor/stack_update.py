"""``/update <project>``: the updates the update check finds for a stack's services, applied as ONE unit.

Three steps, each at its own time:

1. :func:`plan_update`, when the request is made: the stack is read (its services in
   dependency order, :mod:`executor.stacks`), the update check (:mod:`executor.updates`)
   runs for the stack's containers only, and each update is bound to its image
   (:meth:`Deployer.pin`, as a single deploy is). The plan travels in the approval's
   signed arguments (``args.plan``), so the approval message shows exactly what will run:
   service, current → new image and digest, in order.
2. :func:`apply_update`, once approved: each service is deployed in that order through the
   deployer (health gate and all). When one fails, the deployer has already put that
   service back; every service changed before it is then rolled back to the image it ran,
   newest first, by image id. The outcome names what happened to each service.
3. :func:`recover_update`, at start-up, for an update a stop interrupted: deploy recovery
   (:mod:`executor.recovery`) has already brought each service to a consistent state; the
   services the update had changed are then put back on their previous images, so the
   stack is not left half on the new version. It reads the approval's plan and the
   deployment records; no table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from executor.deploy import Deployer
from executor.docker_driver import DeployFailed, short_id
from executor.errors import ActionError, ActionFailed, Refused
from executor.pinning import ImagePin, short_digest
from executor.progress import Progress, emit, no_progress
from executor.stacks import read_stack
from executor.updates import UpdateWatch


@dataclass(frozen=True, slots=True)
class Step:
    """One service's part of a stack update, as the approvers see it and as it runs."""

    service: str
    container: str
    current: str  # the tag it runs
    current_id: str  # its image id (what a rollback returns to)
    current_digest: str
    image: str  # the update's reference: repo:tag@digest
    new_digest: str
    pinned: dict[str, str]  # ImagePin.as_json()

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "container": self.container, "current": self.current,
            "current_id": self.current_id, "current_digest": self.current_digest, "image": self.image,
            "new_digest": self.new_digest, "pinned": self.pinned,
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: object) -> Step:
        keys = ("service", "container", "current", "current_id", "current_digest", "image", "new_digest", "pinned")
        if not isinstance(value, dict) or set(value) != set(keys):
            raise Refused("the request's update plan is malformed; ask again")
        if not all(isinstance(value[k], str) for k in keys[:-1]):
            raise Refused("the request's update plan is malformed; ask again")
        ImagePin.from_json(value["pinned"])  # refuses a malformed pin
        return cls(**value)


def steps_of(args: dict[str, Any]) -> list[Step]:
    plan = args.get("plan")
    if not isinstance(plan, list) or not plan:
        raise Refused("this request was not bound to an update plan when it was made; ask again")
    return [Step.from_json(step) for step in plan]


async def plan_update(deployer: Deployer, updates: UpdateWatch, project: str, now: float) -> list[Step]:
    """The stack's updates, in dependency order, each bound to its image; Refused when there are none."""
    stack = await read_stack(deployer.driver, project)
    members = {m.name: service for service, found in stack.services.items() for m in found}
    report = await updates.check(lambda name, labels: name in members, now)
    by_container: dict[str, Any] = {}
    for update in report.updates:
        # One update per container: the newest tag the check offers (it sorts them by tag).
        by_container[update.target] = update
    if not by_container:
        problems = f" ({'; '.join(report.problems)})" if report.problems else ""
        raise Refused(f"the update check found no updates for stack {project}{problems}")
    steps = []
    for service in stack.order:
        for member in stack.services[service]:
            update = by_container.get(member.name)
            if update is None:
                continue
            pin = await deployer.pin(update.reference)
            info = await deployer.driver.inspect(member.name)
            steps.append(
                Step(
                    service=service, container=member.name, current=update.image, current_id=str(info["Image"]),
                    current_digest=update.current_digest, image=update.reference, new_digest=update.new_digest,
                    pinned=pin.as_json(),
                )  # fmt: skip
            )
    return steps


@dataclass(slots=True)
class ServiceResult:
    service: str
    container: str
    outcome: str  # updated | failed | rolled back | not updated | rollback failed
    line: str

    def as_json(self) -> dict[str, str]:
        return {"service": self.service, "container": self.container, "outcome": self.outcome, "line": self.line}


async def apply_update(
    deployer: Deployer,
    project: str,
    steps: list[Step],
    *,
    requested_by: str,
    approved_by: str | None,
    progress: Progress = no_progress,
) -> tuple[bool, list[ServiceResult]]:
    """Deploy each step in order; on a failure, roll back every service already changed. (all updated, per service)."""
    results: list[ServiceResult] = []
    changed: list[tuple[Step, ServiceResult]] = []
    with deployer.driver.locks.hold(f"stack:{project}", f"{requested_by} (update)"):
        failed = False
        for step in steps:
            if failed:
                results.append(ServiceResult(step.service, step.container, "not updated", f"{step.service}: not updated; it stays on {step.current}"))
                continue
            await emit(progress, "updating", {"service": step.service, "image": step.image})
            try:
                done = await deployer.deploy(
                    step.container, step.image, requested_by=requested_by, approved_by=approved_by,
                    pin=ImagePin.from_json(step.pinned), progress=progress,
                )  # fmt: skip
            except DeployFailed as exc:
                failed = True  # the deployer has put this service back (its message says on what)
                results.append(ServiceResult(step.service, step.container, "failed", f"{step.service}: failed, {exc}"))
                continue
            except ActionError as exc:
                failed = True
                results.append(ServiceResult(step.service, step.container, "failed", f"{step.service}: not updated: {exc}"))
                continue
            result = ServiceResult(step.service, step.container, "updated", f"{step.service}: updated to {done.current}, {done.verdict}")
            results.append(result)
            changed.append((step, result))
        if failed:
            for step, result in reversed(changed):
                await emit(progress, "rolling back", {"service": step.service})
                result.outcome, result.line = await _put_back(deployer, step, requested_by, approved_by, progress)
    return not failed, results


async def _put_back(
    deployer: Deployer, step: Step, requested_by: str, approved_by: str | None, progress: Progress
) -> tuple[str, str]:
    """Roll one updated service back to the image it ran before the stack update: (outcome, line)."""
    pin = ImagePin(step.current, "local", step.current_id)
    try:
        done = await deployer.rollback(step.container, requested_by=requested_by, approved_by=approved_by, pin=pin, progress=progress)
    except ActionError as exc:
        return "rollback failed", f"{step.service}: was updated, and putting {step.current} back failed: {exc}; look at it by hand"
    return "rolled back", f"{step.service}: was updated, rolled back to {done.current}"


def describe(project: str, ok: bool, results: list[ServiceResult]) -> str:
    head = f"stack {project} updated" if ok else f"update of stack {project} failed; every service is back on its previous image"
    if not ok and any(r.outcome == "rollback failed" for r in results):
        head = f"update of stack {project} failed, and not every service could be put back"
    return head + ": " + "; ".join(r.line for r in results)


async def run_update(
    deployer: Deployer, project: str, args: dict[str, Any], *, requested_by: str, approved_by: str | None, progress: Progress
) -> tuple[str, dict[str, Any]]:
    """The approved update: (summary, data); ActionFailed (with the same summary) when it failed."""
    steps = steps_of(args)
    ok, results = await apply_update(deployer, project, steps, requested_by=requested_by, approved_by=approved_by, progress=progress)
    summary = describe(project, ok, results)
    if not ok:
        raise ActionFailed(summary)
    return summary, {"project": project, "services": [r.as_json() for r in results]}


def plan_lines(steps: list[Step]) -> list[str]:
    """The plan as lines for logs and audit: ``1. db: app:1 (sha256:…) → app:2 (sha256:…)``."""
    return [
        f"{i}. {s.service}: {s.current} ({short_digest(s.current_digest) if s.current_digest else short_id(s.current_id)})"
        f" → {s.image.partition('@')[0]} ({short_digest(s.new_digest)})"
        for i, s in enumerate(steps, 1)
    ]


async def recover_update(
    deployer: Deployer, args: dict[str, Any], *, requester: str, since: float, refusal: str | None
) -> tuple[bool, str]:
    """After a stop mid-update: (finished, one line).

    When every service of the plan runs the image its update deployed, the update had
    finished and is kept. Otherwise every service it changed is put back on its previous
    image, so the stack is not left half on the new version, unless policy now refuses
    the update (``refusal``): then nothing is touched and the line says so.
    """
    try:
        steps = steps_of(args)
    except Refused as exc:
        return False, f"interrupted by an executor restart; its plan cannot be read ({exc}): look at the stack by hand"
    changed: list[Step] = []
    for step in steps:
        try:
            running = str((await deployer.driver.inspect(step.container))["Image"])
        except ActionError:
            running = ""
        deployed = [
            d for d in await deployer.store.history(step.container)
            if d.requested_by == requester and d.started_at >= since and d.action == "deploy" and d.state == "succeeded"
        ]  # fmt: skip
        if any(d.new_image_id == running for d in deployed):
            changed.append(step)
    if len(changed) == len(steps):
        return True, "completed across an executor restart: " + "; ".join(f"{s.service}: on {s.image.partition('@')[0]}" for s in steps)
    lines, consistent = [], True
    for step in steps:
        if step not in changed:
            lines.append(f"{step.service}: on {step.current}, as before")
        elif refusal is not None:
            consistent = False
            lines.append(f"{step.service}: was updated; not put back, as policy now refuses the update ({refusal})")
        else:
            outcome, line = await _put_back(deployer, step, "wingman (recovery)", None, no_progress)
            consistent = consistent and outcome == "rolled back"
            lines.append(line)
    head = (
        "interrupted by an executor restart; the stack is back on its previous images"
        if consistent else "interrupted by an executor restart; not every service could be put back"
    )  # fmt: skip
    return False, head + ": " + "; ".join(lines)
