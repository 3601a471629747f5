"""APScheduler wiring: the jobs on their triggers, and the one runner every run goes through.

Every job is added with an explicit id, ``replace_existing``, ``coalesce=True``,
``max_instances=1`` and a misfire grace of hours: a host asleep at 02:30 runs the
verification once when it wakes, not zero times (the grace) and not once per missed day
(coalescing); a run still going when the next is due is not doubled.

The runner audits each run (``started``, then ``ok``/``alert``/``error``; see
``scheduler.runs``), posts the job's text to the team chat (``JobContext.post``: the executor's outbox),
and contains failures: a job that raises is audited and reported to the chat, and the
scheduler carries on with its next run.

Shutdown is a designed path: stop starting runs, let running ones finish (bounded), cancel
what is left, then stop APScheduler, all before the daemon closes its database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from audit.canonical import format_ts
from audit.checkpoints import newest_checkpoint_seq
from scheduler.jobs import FREQUENT_CHECKPOINT, JOBS, JobContext, JobResult, JobSpec
from scheduler.reports import zone_name
from scheduler.runs import ACTOR, ERROR, OK, STARTED, action_of

log = logging.getLogger("wingman.scheduler")
SHUTDOWN_GRACE = 30.0
CANCEL_GRACE = 5.0
REASON_CHARS = 300


class Scheduler:
    """The executor's scheduled jobs; see the module docstring. Not started when made."""

    def __init__(self, context: JobContext, jobs: Sequence[JobSpec] = JOBS) -> None:
        self.context = context
        config = context.config
        self.tz = config.tz
        self.jobs = {spec.id: spec for spec in jobs}
        grace = config.misfire_grace_hours * 3600
        self.aps: Any = AsyncIOScheduler(timezone=self.tz)
        for spec in jobs:
            trigger = spec.schedule(config, self.tz)
            if trigger is None:
                continue  # switched off by its setting (run_job still runs it on demand)
            self.aps.add_job(
                self._scheduled,
                trigger=trigger,
                args=(spec.id,),
                id=spec.id,
                name=spec.title,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=grace,
            )
        self._running: set[asyncio.Task[Any]] = set()
        self._checkpointing: asyncio.Task[Any] | None = None
        self._first_append = True
        self._retry_at = 0
        self._stop_listening: Any = None

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start firing jobs; call from inside the executor's running event loop."""
        ctx = self.context
        if FREQUENT_CHECKPOINT in self.jobs:
            ctx.checkpointed_seq = max(ctx.checkpointed_seq, newest_checkpoint_seq(ctx.export_path))
            self._stop_listening = ctx.audit.on_append(self._appended)
        self.aps.start()
        upcoming = (f"{job_id} {when:%Y-%m-%d %H:%M}" for job_id, when in self.next_runs().items() if when is not None)
        log.info("scheduler started (%s); next runs: %s", zone_name(self.tz), ", ".join(upcoming))

    @property
    def running(self) -> bool:
        return bool(self.aps.running)

    async def shutdown(self, timeout: float = SHUTDOWN_GRACE) -> None:
        """Start no new run, wait up to ``timeout`` for running ones, cancel the rest, stop."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if not self.aps.running:
            return
        self.aps.pause()
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CANCEL_GRACE)
        self.aps.shutdown(wait=False)
        # AsyncIOScheduler shuts down on the loop's next turn; let it, so that nothing of it
        # is left scheduled when this returns.
        await asyncio.sleep(0)

    @property
    def checkpointing(self) -> asyncio.Task[Any] | None:
        """The checkpoint run the append trigger started last (done or not), if any."""
        return self._checkpointing

    def next_runs(self) -> dict[str, datetime | None]:
        """Each job's next run time (in the schedule's zone); None for a paused job."""
        return {job.id: getattr(job, "next_run_time", None) for job in self.aps.get_jobs()}

    # -- running --------------------------------------------------------------------------

    def _appended(self, seq: int) -> None:
        """The audit store's append listener: start a checkpoint every ``checkpoint_every``
        entries, and at the first append after a start that finds entries no checkpoint
        covers (a crash). Never waits: the append path goes on at once."""
        ctx = self.context
        every = ctx.config.checkpoint_every
        uncovered_at_start = self._first_append and seq - 1 > ctx.checkpointed_seq
        self._first_append = False
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        # A run that failed (and alerted) is tried again after another N entries, not at once.
        if uncovered_at_start or seq >= max(ctx.checkpointed_seq + every, self._retry_at):
            self._retry_at = seq + every
            task = asyncio.create_task(self._scheduled(FREQUENT_CHECKPOINT), name=FREQUENT_CHECKPOINT)
            self._running.add(task)  # shutdown waits for it even before it first runs
            self._checkpointing = task

    async def _scheduled(self, job_id: str) -> None:
        """What APScheduler calls: a run, tracked so that shutdown can wait for it."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.run_job(job_id)
        finally:
            if task is not None:
                self._running.discard(task)

    async def run_job(self, job_id: str, *, now: datetime | None = None) -> JobResult | None:
        """Run one job now, as a scheduled run would (audited, posted, failures contained).

        ``now`` defaults to the executor's clock. Returns the job's result, or None when it
        failed (the failure has been audited and reported to the chat).
        """
        spec = self.jobs[job_id]
        ctx = self.context
        moment = now or ctx.now()
        audit = ctx.audit
        action = action_of(job_id)
        try:
            if not spec.quiet:
                await audit.append(actor=ACTOR, action=action, decision=STARTED, params={"now": format_ts(moment)})
            result = await spec.run(ctx, moment)
            if not spec.quiet or result.status != OK:
                await audit.append(
                    actor=ACTOR, action=action, decision=result.status, outcome=result.summary, params=result.params
                )
            if result.text is not None:
                # ``status`` (ok | alert) tells the bot whether the message may wait for the
                # end of quiet hours: only good news does (``bot.quiet``).
                payload = {
                    "text": result.text, "status": result.status, **({"witness": result.witness} if result.witness else {}),
                    **result.extra,
                }  # fmt: skip
                await ctx.post(action, payload, ctx.clock())
        except asyncio.CancelledError:
            await self._record_cancelled(action)
            raise
        except Exception as exc:
            await self._report_failure(spec, exc)
            return None
        for follow_up in result.then_run:
            self.run_soon(follow_up)
        return result

    def run_soon(self, job_id: str) -> None:
        """Have a job run at once as a scheduled run (only once the scheduler has started)."""
        if self.aps.running:
            self.aps.modify_job(job_id, next_run_time=datetime.now(self.tz))

    async def _report_failure(self, spec: JobSpec, exc: Exception) -> None:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:REASON_CHARS]
        log.error("scheduled job %s failed: %s", spec.id, reason, exc_info=exc)
        ctx = self.context
        when = self.next_runs().get(spec.id) if self.aps.running else None
        next_line = f"Next run: {when:%Y-%m-%d %H:%M}." if when is not None else "It runs again at its next time."
        text = "\n".join([f"❌ Scheduled job failed: {spec.title}", reason, f"{next_line} Details are in the executor's log."])
        try:
            await ctx.audit.append(actor=ACTOR, action=action_of(spec.id), decision=ERROR, outcome=reason)
        except Exception:
            log.exception("could not audit the failure of scheduled job %s", spec.id)
        try:
            await ctx.post(action_of(spec.id), {"text": text, "status": ERROR}, ctx.clock())
        except Exception:
            log.exception("could not report the failure of scheduled job %s to the chat", spec.id)

    async def _record_cancelled(self, action: str) -> None:
        try:
            await asyncio.wait_for(
                self.context.audit.append(
                    actor=ACTOR, action=action, decision=ERROR, outcome="cancelled: the executor stopped during the run"
                ),
                CANCEL_GRACE,
            )
        except Exception:
            log.warning("could not audit the cancelled run of %s", action)
