"""Start-up recovery: finish every deploy a crash interrupted, and put aside containers back.

The executor runs :func:`recover` once at start-up, before it serves anyone (see
``executor.server``). A deployment recorded but not finished (the executor died
mid-deploy) is brought to an end with the service running: a new container that proves
healthy through the deployer's health gate is kept, otherwise the old container gets its
name back and is started again. No container is left under a temporary name
(``<name>-wingman-old-<deployment id>``) unless the engine refuses; then a line says so and
the next start tries again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from docker.api.client import APIClient
from docker.errors import APIError, NotFound

from executor.deploy import Deployer, made_by
from executor.deployments import Deployment
from executor.docker_driver import ImageRef, Visible, aside_name, labels_of, explain_api_error, parse_aside_name, parse_docker_time, short_id
from executor.errors import ActionError
from executor.health_gate import has_healthcheck, health_gate
from policy.names import show

RECOVERY_HOLDER = "wingman (recovery)"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What start-up recovery did (``done``) and what it refused to touch (``alerts``), a line each."""

    done: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


async def recover(
    deployer: Deployer,
    visible: Visible,
    *,
    timeout: float | None = None,
    running_window: float | None = None,
) -> Recovery:
    """Finish every deploy a crash interrupted; put aside containers back.

    Run at start-up before requests are served. A service whose new container proves
    healthy keeps it; otherwise it goes back to the old container and image. Nothing is
    left under a temporary name unless the engine refuses (then a line says so and the
    next start tries again).

    The database is not trusted to name what may be touched: recovery acts only on a
    service that ``visible`` (the policy as it is NOW) allows, on an "old" container that
    is the service itself or was set aside by this very deployment (its aside name and
    recorded id), and on a "new" container that carries this deployment's
    :data:`DEPLOYMENT_LABEL`. Anything else is left as it is and reported in ``alerts``.
    """
    timeout, window = deployer.limits(timeout, running_window)
    report = Recovery()
    for record in await deployer.store.unfinished():
        if deployer.driver.locks.holder(record.service) is not None:
            continue  # a deploy in progress in this process, not an interrupted one
        if not visible(record.service, labels_of(record.prev_container)):
            report.alerts.append(
                f"deployment {record.id} names {show(record.service)}, which is not allowlisted now; nothing was touched"
            )
            continue
        try:
            with deployer.driver.locks.hold(record.service, RECOVERY_HOLDER):
                await _recover_one(deployer, record, timeout, window, report)
        except (APIError, ActionError) as exc:
            reason = explain_api_error(exc) if isinstance(exc, APIError) else str(exc)
            report.done.append(f"{record.service}: could not finish interrupted {record.action} {record.id}: {reason}")
    try:
        await _sweep_aside(deployer, visible, report)
    except (APIError, ActionError) as exc:
        reason = explain_api_error(exc) if isinstance(exc, APIError) else str(exc)
        report.done.append(f"could not look for containers left aside by deploys: {reason}")
    return report

async def _recover_one(deployer: Deployer, record: Deployment, timeout: float, window: float, report: Recovery) -> None:
    name = record.service
    old_id = record.prev_container_id
    previous = ImageRef(record.prev_image_tag, record.prev_image_id)
    target = ImageRef(record.new_image_tag, record.new_image_id)
    what = f"interrupted {record.action} {record.id} to {target.tag}"

    def facts(api: APIClient) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            old: dict[str, Any] | None = api.inspect_container(old_id)
        except NotFound:
            old = None
        try:
            holder: dict[str, Any] | None = api.inspect_container(name)
            if holder is not None and holder["Name"] != f"/{name}":
                holder = None
        except NotFound:
            holder = None
        return old, holder

    old, holder = await deployer.driver.run(facts)
    if old is not None and old["Name"] not in (f"/{name}", f"/{aside_name(name, record.id)}"):
        # Not the service, and not set aside by this deployment: a record naming some
        # other container as the "old" one is not ours to rename, start or remove.
        report.alerts.append(
            f"deployment {record.id} of {name} names container {short_id(str(old['Id']))}"
            f" ({show(old['Name'].lstrip('/'))}) as the old one, but that is neither {name} nor"
            " a container this deployment set aside; nothing was touched"
        )
        return
    if holder is not None and old is not None and holder["Id"] == old["Id"]:
        holder = None  # the old container never left its name
        if record.prev_was_running and not old["State"].get("Running"):
            await deployer.driver.run(lambda api: api.start(old_id))
        line = f"{name}: {what} stopped before the old container was replaced; it runs {previous} as before"
        await deployer.store.finish(record.id, "recovered", line)
        report.done.append(line)
        return

    ours = holder is not None and made_by(holder, record.id)
    if old is None:
        if ours and holder is not None:
            if not holder["State"].get("Running"):
                await deployer.driver.run(lambda api: api.start(holder["Id"]))
            line = f"{name}: {what} had replaced the old container; it runs {target}"
            await deployer.store.finish(record.id, "succeeded", line)
            report.done.append(line)
            return
        line = f"{name}: {what} cannot be finished: the old container {short_id(old_id)} is gone; nothing was touched; look at it by hand"
        await deployer.store.finish(record.id, "rollback_failed", line)
        report.alerts.append(line)
        return

    if holder is not None and not ours:
        report.alerts.append(
            f"{name}: {what} left the old container as {old['Name'].lstrip('/')}, and a container named {name}"
            " that this deploy did not create is in the way; nothing was touched; look at it by hand"
        )
        return

    if holder is not None:
        keep_new = False
        if record.state != "rolling_back" and holder["State"].get("Running"):
            if record.state == "healthy":
                keep_new = True
            else:
                started = parse_docker_time(holder["State"].get("StartedAt"))
                ran = max(time.time() - started.timestamp(), 0.0) if started else 0.0
                verdict = await health_gate(
                    deployer.driver,
                    holder["Id"],
                    timeout=timeout,
                    window=window,
                    poll_interval=deployer.poll_interval,
                    running_for=ran,
                )
                keep_new = verdict.ok
        if keep_new:
            await deployer.driver.run(lambda api: api.remove_container(old_id, v=False, force=True))
            line = f"{name}: {what} completed on restart: the new container proved {'healthy' if has_healthcheck(holder) else 'stable'}; it runs {target}"
            await deployer.store.finish(record.id, "succeeded", line)
            report.done.append(line)
            return

    problem = await deployer.restore(name, old, record.new_container_id, record.id, record.prev_was_running)
    if problem is not None:
        report.done.append(f"{name}: could not undo {what}: {problem}; the next start tries again")
        return
    state = "running" if record.prev_was_running else "stopped, as it was"
    line = f"{name}: undid {what}: back on {previous}, {state}"
    await deployer.store.finish(record.id, "recovered", line)
    report.done.append(line)

async def _sweep_aside(deployer: Deployer, visible: Visible, report: Recovery) -> None:
    """Containers still under a temporary name whose deploy record here has ended."""

    def listing(api: APIClient) -> list[tuple[str, str, str, bool]]:
        found = []
        for entry in api.containers(all=True):
            for raw in entry.get("Names") or []:
                parsed = parse_aside_name(raw.lstrip("/"))
                if parsed is not None and raw.count("/") == 1:
                    found.append((entry["Id"], parsed[0], parsed[1], entry.get("State") == "running"))
        return found

    for container_id, service, deploy_id, _running in await deployer.driver.run(listing):
        if deployer.driver.locks.holder(service) is not None:
            continue  # set aside by a deploy that is running right now
        record = await deployer.store.get(deploy_id)
        if record is None:
            # Our deploys record themselves before renaming anything: a container set
            # aside without a record here belongs to another Wingman (or a person).
            continue
        if record.finished_at is None:
            continue  # its deployment could not be finished above (an alert says why)
        if not visible(service, labels_of(record.prev_container)):
            report.alerts.append(
                f"{aside_name(service, deploy_id)} was set aside for {show(service)}, which is not allowlisted now; nothing was touched"
            )
            continue
        if record.service != service or record.prev_container_id != container_id:
            report.alerts.append(
                f"{aside_name(service, deploy_id)} ({short_id(container_id)}) is not the container deployment"
                f" {deploy_id} set aside; nothing was touched"
            )
            continue
        with deployer.driver.locks.hold(service, RECOVERY_HOLDER):

            def settle(api: APIClient) -> str:
                try:
                    holder = api.inspect_container(service)
                    exists = holder["Name"] == f"/{service}"
                except NotFound:
                    exists = False
                if exists:
                    api.remove_container(container_id, v=False, force=True)
                    return f"{service}: removed the old container left aside by deploy {deploy_id}; {service} itself is in place"
                api.rename(container_id, service)
                was_running = record.prev_was_running
                if was_running:
                    api.start(container_id)
                return f"{service}: put the container left aside by deploy {deploy_id} back under its name" + (
                    " and started it" if was_running else ""
                )

            report.done.append(await deployer.driver.run(settle))
