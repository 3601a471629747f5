"""The scheduler as the executor runs it: what its jobs receive from the executor.

``scheduler`` imports nothing of the executor; its jobs get a ``JobContext`` of the audit
store and keys and of plain callables. This is the one place that wires those to the
executor's parts: the outbox posts to the chat, ``Executor.verify_audit`` verifies the
chain, ``Executor.expire_due`` expires approvals, ``executor.retention`` prunes the
executor's own tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from audit.verify import VerifyReport
from executor.actions import container_labels
from executor.retention import prune_operational
from executor.service import Executor
from policy import container_visible
from scheduler import JobContext, JobResult, ScheduleConfig, Scheduler
from scheduler.runs import ALERT, OK


def job_context(executor: Executor, engine: AsyncEngine, config: ScheduleConfig) -> JobContext:
    """The jobs' context on ``executor`` and its database ``engine``."""

    async def post(kind: str, payload: dict[str, Any], now: float) -> None:
        await executor.outbox.add(kind, payload, now=now)

    async def verify_chain(now: datetime) -> VerifyReport:
        return await executor.verify_audit(now=now)

    async def prune(now: datetime, dry_run: bool) -> dict[str, int]:
        return await prune_operational(engine, config, now, dry_run=dry_run)

    async def check_updates(now: datetime) -> JobResult:
        if executor.updates is None:
            return JobResult(OK, "no update check: Docker is not configured")
        report, new = await executor.updates.announce(
            lambda name, labels: container_visible(executor.policy, name, labels), now.timestamp()
        )
        params = {
            "checked": report.checked, "found": len(report.updates), "announced": [u.id for u in new],
            "problems": report.problems, "registry_requests": report.requests,
        }  # fmt: skip
        summary = f"{len(report.updates)} updates ({len(new)} new) for {report.checked} containers"
        if report.problems:
            summary += f"; {len(report.problems)} problems: " + "; ".join(report.problems)
        return JobResult(ALERT if report.problems else OK, summary[:1000], None, params)

    async def pending_updates() -> list[dict[str, Any]]:
        if executor.updates is None:
            return []
        context = executor.action_context()
        recalled = []
        for stored in await executor.updates.pending():
            target = stored.update.target
            # The allowlist may have narrowed since; a stack: entry allows by the container's labels.
            if container_visible(executor.policy, target, await container_labels(context, target)):
                recalled.append({**stored.update.as_json(), "announced_at": int(stored.announced_at or 0)})
        return recalled

    return JobContext(
        audit=executor.audit,
        audit_key=executor.audit_key,
        trusted_audit_keys=executor.trusted_audit_keys,
        export_path=executor.export_path,
        engine=engine,
        config=config,
        clock=executor.clock,
        post=post,
        verify_chain=verify_chain,
        verified=executor.last_verified.record,
        expire_approvals=executor.expire_due,
        prune=prune,
        check_updates=check_updates,
        pending_updates=pending_updates,
        names=executor.people.names,
    )


def build_scheduler(executor: Executor, engine: AsyncEngine, config: ScheduleConfig) -> Scheduler:
    """The executor's scheduler with every job on its trigger; start it with ``start()``."""
    return Scheduler(job_context(executor, engine, config))
