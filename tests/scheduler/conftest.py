"""Scheduler fixtures: a real executor daemon (the executor tests' harness) and a scheduler
built on it, not started unless a test starts it; plus helpers to read what reached the
chat and the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from sqlalchemy import select

from audit.schema import ROW_COLUMNS, audit_log
from audit.store import AuditEntry
from executor.scheduling import build_scheduler
from scheduler import ScheduleConfig, Scheduler
from tests.harness import Harness

MakeScheduler = Callable[..., Awaitable[tuple[Harness, Scheduler]]]


@pytest.fixture
async def make_scheduler(make_harness: Callable[..., Awaitable[Harness]]) -> AsyncIterator[MakeScheduler]:
    """``await make_scheduler(config=..., **harness settings)``: a daemon and its scheduler."""
    made: list[Scheduler] = []

    async def make(config: ScheduleConfig | None = None, **settings: Any) -> tuple[Harness, Scheduler]:
        harness = await make_harness(**settings)
        assert harness.daemon is not None
        scheduler = build_scheduler(harness.executor, harness.daemon._engine, config or ScheduleConfig(timezone="UTC"))
        made.append(scheduler)
        return harness, scheduler

    yield make
    for scheduler in made:
        await scheduler.shutdown(timeout=5)


async def chat_texts(harness: Harness) -> list[tuple[str, str]]:
    """(kind, text) of every notification not yet acknowledged, as the bot would get them;
    acknowledges them, so each call returns only what arrived since the last."""
    bot = harness.client()
    events = await bot.poll(wait=0)
    await bot.ack([e["id"] for e in events])
    return [(e["kind"], e["payload"].get("text", "")) for e in events]


async def audit_entries(harness: Harness, action_prefix: str = "scheduler.") -> list[AuditEntry]:
    assert harness.daemon is not None
    query = select(*ROW_COLUMNS).where(audit_log.c.action.startswith(action_prefix)).order_by(audit_log.c.seq)
    async with harness.daemon._engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [AuditEntry.from_row(tuple(row)) for row in rows]


class JobEvents:
    """APScheduler's run events for one scheduler, awaited without sleeping."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.seen: list[JobExecutionEvent] = []
        self._changed = asyncio.Event()
        scheduler.aps.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def _on_event(self, event: JobExecutionEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    def of(self, job_id: str) -> list[JobExecutionEvent]:
        return [e for e in self.seen if e.job_id == job_id]

    async def wait_for(self, job_id: str, count: int = 1, timeout: float = 20) -> list[JobExecutionEvent]:
        async def until_seen() -> None:
            while len(self.of(job_id)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until_seen(), timeout)
        return self.of(job_id)
