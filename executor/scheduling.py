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
from executor.retention import prune_operational
from executor.service import Executor
from scheduler import JobContext, ScheduleConfig, Scheduler


def job_context(executor: Executor, engine: AsyncEngine, config: ScheduleConfig) -> JobContext:
    """The jobs' context on ``executor`` and its database ``engine``."""

    async def post(kind: str, payload: dict[str, Any], now: float) -> None:
        await executor.outbox.add(kind, payload, now=now)

    async def verify_chain(now: datetime) -> VerifyReport:
        return await executor.verify_audit(now=now)

    async def prune(now: datetime, dry_run: bool) -> dict[str, int]:
        return await prune_operational(engine, config, now, dry_run=dry_run)

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
    )


def build_scheduler(executor: Executor, engine: AsyncEngine, config: ScheduleConfig) -> Scheduler:
    """The executor's scheduler with every job on its trigger; start it with ``start()``."""
    return Scheduler(job_context(executor, engine, config))
