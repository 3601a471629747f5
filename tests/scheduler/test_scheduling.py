"""APScheduler behaviour that matters to an operator, on a started scheduler in the test's
event loop: a missed run happens once, a failing job is reported and the schedule goes on,
shutdown waits for a running job. Synchronised on events set by the jobs, never by sleeping."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from audit import AuditStore
from executor.scheduling import job_context
from scheduler import JobContext, JobResult, JobSpec, ScheduleConfig, Scheduler
from tests.audit.helpers import Clock
from tests.harness import Harness
from tests.scheduler.conftest import JobEvents, MakeScheduler, audit_entries, chat_texts

UTC = timezone.utc


def a_minute_ago() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def daily_at(moment: datetime) -> Any:
    """A daily trigger whose most recent fire time is ``moment`` (to the minute)."""

    def schedule(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
        return CronTrigger(hour=moment.hour, minute=moment.minute, timezone=UTC)

    return schedule


class Counting:
    """A job that counts its runs and can be told to wait or to fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.ran = asyncio.Event()
        self.release: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self, ctx: JobContext, now: datetime) -> JobResult:
        self.runs += 1
        self.ran.set()
        if self.release is not None:
            await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return JobResult("ok", f"run {self.runs}", f"counted {self.runs}")


def custom(harness: Harness, *specs: JobSpec) -> Scheduler:
    assert harness.daemon is not None
    return Scheduler(job_context(harness.executor, harness.daemon._engine, ScheduleConfig(timezone="UTC")), specs)


async def test_a_run_missed_for_days_happens_exactly_once(make_scheduler: MakeScheduler) -> None:
    harness, _ = await make_scheduler()
    job = Counting()
    last_due = a_minute_ago()
    scheduler = custom(harness, JobSpec("count", "counting", job, daily_at(last_due)))
    # The host slept through three nights and one more run: four run times are past due.
    scheduler.aps.modify_job("count", next_run_time=last_due.replace(second=0, microsecond=0) - timedelta(days=3))
    events = JobEvents(scheduler)
    scheduler.start()
    await asyncio.wait_for(job.ran.wait(), 20)
    [event] = await events.wait_for("count")
    assert job.runs == 1
    assert event.scheduled_run_time == last_due.replace(second=0, microsecond=0)  # the newest missed one
    upcoming = scheduler.next_runs()["count"]
    assert upcoming is not None and upcoming > datetime.now(UTC)  # next: tomorrow
    await scheduler.shutdown()
    assert job.runs == 1


async def test_the_nightly_verification_missed_while_asleep_runs_once_on_waking(make_scheduler: MakeScheduler) -> None:
    last_due = a_minute_ago()
    config = ScheduleConfig(timezone="UTC", verify_at=f"{last_due:%H:%M}")
    harness, scheduler = await make_scheduler(config)
    scheduler.aps.modify_job("verify", next_run_time=last_due.replace(second=0, microsecond=0) - timedelta(days=5))
    events = JobEvents(scheduler)
    scheduler.start()
    await events.wait_for("verify")
    assert [e.decision for e in await audit_entries(harness, "scheduler.verify")] == ["started", "ok"]
    assert [kind for kind, _ in await chat_texts(harness) if kind == "scheduler.verify"] == ["scheduler.verify"]


async def test_a_failing_job_is_reported_and_the_schedule_goes_on(make_scheduler: MakeScheduler) -> None:
    harness, _ = await make_scheduler()
    broken, healthy = Counting(), Counting()
    broken.fail_with = RuntimeError("the disk is on fire")
    due = a_minute_ago()
    scheduler = custom(
        harness,
        JobSpec("broken", "broken job", broken, daily_at(due)),
        JobSpec("healthy", "healthy job", healthy, daily_at(due)),
    )
    for job_id in ("broken", "healthy"):
        scheduler.aps.modify_job(job_id, next_run_time=due)
    events = JobEvents(scheduler)
    scheduler.start()
    await events.wait_for("broken")
    await events.wait_for("healthy")
    messages = dict(await chat_texts(harness))
    failure = messages["scheduler.broken"].splitlines()
    assert failure[0] == "❌ Scheduled job failed: broken job"
    assert failure[1] == "RuntimeError: the disk is on fire"
    assert failure[2].startswith("Next run: ") and failure[2].endswith("Details are in the executor's log.")
    assert messages["scheduler.healthy"] == "counted 1"
    started, error = await audit_entries(harness, "scheduler.broken")
    assert (started.decision, error.decision, error.outcome) == ("started", "error", "RuntimeError: the disk is on fire")
    # Still running: the failed job runs again at its next time, and fails the same way.
    scheduler.aps.modify_job("broken", next_run_time=datetime.now(UTC))
    await events.wait_for("broken", count=2)
    assert broken.runs == 2 and scheduler.running


async def test_shutdown_waits_for_a_running_job_then_stops(make_scheduler: MakeScheduler) -> None:
    harness, _ = await make_scheduler()
    job = Counting()
    job.release = asyncio.Event()
    scheduler = custom(harness, JobSpec("slow", "slow job", job, daily_at(a_minute_ago())))
    scheduler.aps.modify_job("slow", next_run_time=datetime.now(UTC))
    scheduler.start()
    await asyncio.wait_for(job.ran.wait(), 20)
    stopping = asyncio.create_task(scheduler.shutdown(timeout=30))
    for _ in range(50):
        await asyncio.sleep(0)  # let shutdown get as far as it can without the job finishing
    assert not stopping.done()
    job.release.set()
    await asyncio.wait_for(stopping, 20)
    assert not scheduler.running
    assert [e.decision for e in await audit_entries(harness, "scheduler.slow")] == ["started", "ok"]


async def test_a_job_still_running_when_the_grace_is_over_is_cancelled_and_audited(make_scheduler: MakeScheduler) -> None:
    harness, _ = await make_scheduler()
    job = Counting()
    job.release = asyncio.Event()  # never set
    scheduler = custom(harness, JobSpec("stuck", "stuck job", job, daily_at(a_minute_ago())))
    scheduler.aps.modify_job("stuck", next_run_time=datetime.now(UTC))
    scheduler.start()
    await asyncio.wait_for(job.ran.wait(), 20)
    await scheduler.shutdown(timeout=0)
    assert not scheduler.running
    started, cancelled = await audit_entries(harness, "scheduler.stuck")
    assert (started.decision, cancelled.decision) == ("started", "error")
    assert cancelled.outcome == "cancelled: the executor stopped during the run"


async def test_the_expiry_sweep_expires_due_approvals_quietly(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    executor = harness.executor
    approval = await executor.approvals.create(
        action="deploy", target="web", args={"target": "web", "image": "app:2"}, requester="tg:4",
        context={}, tier=2, approvals_needed=1, request_id="r1", now=executor.clock() - 100, ttl=10,
    )  # fmt: skip
    result = await scheduler.run_job("approval-expiry")
    assert result is not None and result.params == {"expired": 1}
    assert (await executor.approvals.get(approval.id)).state == "expired"
    assert [kind for kind, _ in await chat_texts(harness)] == ["approval.expired"]
    assert [e.action for e in await audit_entries(harness, "approval.")] == ["approval.expire"]
    assert await audit_entries(harness, "scheduler.") == []  # a quiet job: nothing to record
    again = await scheduler.run_job("approval-expiry")
    assert again is not None and again.params == {"expired": 0}


async def test_the_weekly_report_counts_a_seeded_week(sqlite_url: str, make_scheduler: MakeScheduler) -> None:
    end = datetime.now(UTC) - timedelta(days=1)  # the week ends before the daemon's own entries
    clock = Clock(end - timedelta(days=8))
    store = await AuditStore.open(sqlite_url, clock=clock)
    try:
        await store.append(actor="tg:4", action="status", decision="executed")  # the week before: not counted
        for day in range(7):
            clock.now = end - timedelta(days=7) + timedelta(days=day, hours=1)
            await store.append(actor="tg:4", action="restart", decision="executed", target="web")
            await store.append(actor="tg:666", action="restart", decision="denied", target="db", outcome="you are not a known user")
        clock.now = end - timedelta(hours=3)
        await store.append(actor="tg:4", action="deploy", decision="needs_approval", target="web", params={"approval": "a1"})
        clock.advance(minutes=25)
        await store.append(actor="tg:2", action="approval.approve", decision="approved", target="web", params={"approval": "a1"})
        clock.advance(minutes=1)
        await store.append(actor="tg:4", action="deploy", decision="failed", target="web", outcome="unhealthy; rolled back to app:1")
    finally:
        await store.close()
    harness, scheduler = await make_scheduler(db_url=sqlite_url)
    result = await scheduler.run_job("weekly-report", now=end)
    assert result is not None and result.params == {
        "days": 7, "entries": 17, "refused": 7, "approvals": 1, "deploys_ok": 0, "deploys_failed": 1,
    }  # fmt: skip
    [(kind, text)] = await chat_texts(harness)
    assert kind == "scheduler.weekly-report"
    lines = text.splitlines()
    assert lines[0] == "📊 Wingman weekly audit report"
    assert "📈 17 entries" in lines
    assert "People: tg:4 9 · tg:666 7 · tg:2 1" in lines
    assert "• " + f"{(end - timedelta(days=7, hours=-1)):%m-%d %H:%M}" + " tg:666 restart db ×7 (denied): you are not a known user" in lines
    assert "✋ Approvals: 1 (1 approved), decided after 25m on average" in lines
    assert "🚀 Deploys: 0 ok · 1 failed · 0 rolled back by hand" in lines
