"""The scheduled jobs: each a coroutine over an explicit context and ``now``.

A job does its work and returns a :class:`JobResult`: ``ok`` or ``alert``, a one-line
summary for the audit, the text for the chat (or nothing to say) and figures. It does not
audit its own run, post, or guard against its own failure: the runner
(``scheduler.runner``) does that the same way for every job, so a job stays a plain
function that tests call with any ``now``.

Jobs that read or move the audit chain (verification, the watchdog, retention) take
``JobContext.chain_lock`` so they never overlap: a verification never races an export.

What a job needs of the daemon it runs in reaches it in :class:`JobContext`: the audit
store and keys, and plain callables for the rest (post to the chat, verify the chain,
expire approvals, prune operational rows). The executor builds it
(``executor.scheduling``); this package imports nothing of the executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import AuditEntry, AuditError, AuditStore, Tampered, export_older_than, write_checkpoint
from audit.canonical import format_ts
from audit.checkpoints import CHECKPOINT_INTERVAL, Checkpoint, newest_checkpoint
from audit.errors import CheckpointError
from audit.signing import SigningKey
from audit.verify import VerifyReport
from scheduler.config import Every, ScheduleConfig
from scheduler.reports import APPROVAL_LOOKBACK, ReportCollector, chain_line, counts, duration, local, pending_updates_text, people_in, render
from scheduler.weekly import WeeklyTally
from scheduler.runs import ALERT, LOOKBACK, OK, REALERT, history_predates, last_run, verification_overdue

# What the daemon hands the jobs besides its audit store: each a plain callable.
Post = Callable[[str, dict[str, Any], float], Awaitable[object]]  # (kind, payload, now): to the team chat
VerifyChain = Callable[[datetime], Awaitable[VerifyReport]]  # the whole chain, off the event loop
Prune = Callable[[datetime, bool], Awaitable[dict[str, int]]]  # (now, dry_run): rows removed, by kind


@dataclass(slots=True, kw_only=True)
class JobContext:
    """What every job may use, handed in by the daemon that runs the scheduler: its audit
    store, keys and export directory, its database engine (the audit log's runs), its clock,
    the callables below, and the schedule's configuration."""

    audit: AuditStore
    audit_key: SigningKey
    trusted_audit_keys: Mapping[str, Ed25519PublicKey]
    export_path: Path
    engine: AsyncEngine
    config: ScheduleConfig
    clock: Callable[[], float]
    post: Post
    verify_chain: VerifyChain
    verified: Callable[[datetime], None]  # a verification found the chain intact at this time
    expire_approvals: Callable[[], Awaitable[Sized]]  # those past their time; returns them
    prune: Prune
    # The update check (executor.updates): posts its own event (kind "updates") and returns
    # the run's result; None where the daemon has no Docker engine to check.
    check_updates: Callable[[datetime], Awaitable[JobResult]] | None = None
    # Updates announced and not deployed, for the weekly report to recall: each as in the
    # "updates" event (executor.protocol) plus "announced_at"; None: no update checks here.
    pending_updates: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None
    # The display names last seen of the people given ("tg:4" → "@olga"), for the reports;
    # None: people are shown by id.
    names: Callable[[Iterable[str]], Awaitable[Mapping[str, str]]] | None = None
    chain_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Checkpoints are written one at a time; the newest this process signed is kept in
    # memory too, so deleting the files does not make it sign a rewritten chain.
    checkpoint_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    checkpointed_seq: int = 0
    last_checkpoint: Checkpoint | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)


@dataclass(frozen=True, slots=True)
class JobResult:
    status: str  # ok | alert
    summary: str  # one line: the audit entry's outcome
    text: str | None = None  # for the chat; None: nothing worth a message
    params: dict[str, Any] = field(default_factory=dict)  # figures for the audit entry (no floats)
    then_run: tuple[str, ...] = ()  # job ids to run right after this one
    witness: str | None = None  # a checkpoint line for people to keep: the chat shows it to copy
    extra: dict[str, Any] = field(default_factory=dict)  # more for the chat's notification (the weekly figures)


log = logging.getLogger(__name__)
Job = Callable[[JobContext, datetime], Awaitable[JobResult]]
FREQUENT_CHECKPOINT = "checkpoint-frequent"  # the job the append trigger runs every N entries
Schedule = Callable[[ScheduleConfig, tzinfo], BaseTrigger | None]  # None: the job is off


@dataclass(frozen=True, slots=True)
class JobSpec:
    id: str  # the APScheduler job id; the audit action is ``scheduler.<id>``
    title: str  # for people
    run: Job
    schedule: Schedule
    quiet: bool = False  # audited only when it alerts or fails (frequent housekeeping)


# -- verification ---------------------------------------------------------------------------


async def verify(ctx: JobContext, now: datetime) -> JobResult:
    """The whole chain (exports and database) against the newest checkpoint."""
    async with ctx.chain_lock:
        try:
            report = await ctx.verify_chain(now)  # in a thread: requests are answered meanwhile
        except AuditError as exc:
            # Nothing can be concluded (unreadable database, checkpoint by an unknown key):
            # that is not a success, and someone must look.
            text = f"⚠️ Audit chain could NOT be checked\n{exc}\nRun `wingman audit verify` on the host to see more."
            return JobResult(ALERT, f"could not verify: {exc}", text)
    params: dict[str, Any] = {
        "entries": report.entries,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "exported": report.exported,
        "checkpoint_seq": report.checkpoint.seq if report.checkpoint is not None else None,
        "ms": int(report.seconds * 1000),
    }
    if not report.ok:
        params.update(broken_seq=report.broken_seq, reason=report.reason)
        return JobResult(ALERT, report.summary(), verify_alert_text(report), params)
    ctx.verified(now)  # for /v1/metrics, which does not search the log for it
    if report.warnings:
        params["warnings"] = report.warnings
        text = "\n".join(["⚠️ Audit chain intact, but checkpoints are overdue", *report.warnings, verify_ok_text(report)])
        return JobResult(ALERT, f"{report.summary()}; warning: {'; '.join(report.warnings)}", text, params)
    return JobResult(OK, report.summary(), verify_ok_text(report), params)


def verify_ok_text(report: VerifyReport) -> str:
    if report.entries == 0:
        span = "the chain is empty"
    elif report.first_seq is not None:
        span = f"{report.entries} entries, seq {report.first_seq}..{report.last_seq}"
    else:
        span = f"{report.entries} entries, head at seq {report.last_seq}"
    lines = ["✅ Audit chain intact", span]
    extra = []
    if report.exported:
        extra.append(f"{report.exported} from exports")
    if report.checkpoint is not None:
        extra.append(f"checkpoint seq {report.checkpoint.seq} matches")
    else:
        extra.append("no signed checkpoint yet")
    lines.append(" · ".join(extra))
    lines.append(f"⏱ {report.seconds:.2f} s")
    return "\n".join(lines)


def verify_alert_text(report: VerifyReport) -> str:
    checked = f"{report.entries} entries before it checked out" if report.entries else "nothing before it checked out"
    return "\n".join(
        [
            "🚨 AUDIT CHAIN BROKEN",
            f"First broken entry: seq {report.broken_seq}",
            f"Reason: {report.reason}",
            f"({checked}, {report.seconds:.2f} s)",
            "Do not trust the audit log past this point; `wingman audit verify` shows the same offline.",
        ]
    )


async def watchdog(ctx: JobContext, now: datetime) -> JobResult:
    """Alert when no verification found the chain intact for too long, then verify now."""
    max_age = timedelta(hours=ctx.config.verify_max_age_hours)
    async with ctx.chain_lock:  # a verification still running has its say first
        last_ok = await last_run(ctx.engine, "verify", since=now - LOOKBACK, decisions=(OK,))
        last_alert = await last_run(ctx.engine, "verify-watchdog", since=now - REALERT, decisions=(ALERT,))
        old_enough = await history_predates(ctx.engine, now - max_age)
    overdue = verification_overdue(
        now=now,
        max_age=max_age,
        last_ok=last_ok.at if last_ok else None,
        last_alert=last_alert.at if last_alert else None,
        history_old_enough=old_enough,
    )
    if not overdue:
        return JobResult(OK, "verification is current")
    tz = ctx.config.tz
    if last_ok is not None:
        since = f"since {local(format_ts(last_ok.at), tz, '%Y-%m-%d %H:%M')} ({duration(now - last_ok.at)} ago)"
    else:
        since = f"in the last {LOOKBACK.days} days"
    text = "\n".join(
        [
            "⚠️ Audit chain not verified",
            f"No verification found the chain intact {since}.",
            f"The nightly check ({ctx.config.verify_at}) did not run or did not pass.",
            "Running a verification now.",
        ]
    )
    params = {"last_ok": format_ts(last_ok.at) if last_ok else None}
    return JobResult(ALERT, f"no successful verification {since}", text, params, then_run=("verify",))


# -- checkpoint -----------------------------------------------------------------------------


async def sign_head(ctx: JobContext, now: datetime, *, only_if_new: bool = False) -> Checkpoint | None:
    """Sign the chain head into a checkpoint file, unless the chain no longer agrees with the
    newest checkpoint (``Tampered``): the executor must not vouch for a rewrite of what it
    vouched for before. With ``only_if_new``, None when nothing was added since the last one."""
    async with ctx.checkpoint_lock:
        head = await ctx.audit.head()
        if only_if_new and head.seq <= ctx.checkpointed_seq:
            return None
        try:
            on_disk = await asyncio.to_thread(newest_checkpoint, ctx.export_path, ctx.trusted_audit_keys)
        except CheckpointError:
            on_disk = None  # signed by an earlier audit key, or unreadable: verification says so
        known = [c for c in (on_disk, ctx.last_checkpoint) if c is not None]
        for other in (c for c in known if c.origin != head.origin):
            raise Tampered(other.seq, f"checkpoint {other.name} belongs to chain {other.origin}, this database is {head.origin}")
        previous = max(known, key=lambda c: c.seq, default=None)
        if previous is not None:
            if head.seq < previous.seq:
                raise Tampered(
                    head.seq + 1, f"the chain head is at seq {head.seq} but checkpoint {previous.name} vouches for seq {previous.seq}"
                )
            recorded = await ctx.audit.entry_hash(previous.seq)
            # None: moved out by retention (its signed export vouches) or deleted (verification finds it).
            if recorded is not None and recorded != previous.entry_hash:
                raise Tampered(previous.seq, f"seq {previous.seq} differs from checkpoint {previous.name} (the chain was rewritten)")
        # A small file, but fsynced twice: off the event loop.
        written = await asyncio.to_thread(write_checkpoint, head, ctx.export_path, ctx.audit_key, now)
        ctx.checkpointed_seq = max(ctx.checkpointed_seq, written.seq)
        ctx.last_checkpoint = written
        return written


def _not_written(exc: AuditError | Tampered) -> JobResult:
    if isinstance(exc, Tampered):
        reason = f"broken at seq {exc.seq}: {exc.reason}"
        text = (
            f"🚨 Audit checkpoint NOT written: the chain no longer matches its last checkpoint\n{reason}\n"
            "Run `wingman audit verify` on the host."
        )
    else:
        reason = str(exc)
        text = f"🚨 Audit checkpoint NOT written\n{exc}\nWithout checkpoints a deleted tail of the audit log would go unnoticed."
    return JobResult(ALERT, f"checkpoint not written: {reason}", text)


async def checkpoint(ctx: JobContext, now: datetime) -> JobResult:
    """The daily checkpoint, posted to the chat as a witness line people can paste back."""
    try:
        written = await sign_head(ctx, now)
    except (AuditError, Tampered) as exc:
        return _not_written(exc)
    assert written is not None
    short = written.entry_hash[:12]
    params = {"seq": written.seq, "entry_hash": written.entry_hash, "file": written.name}
    return JobResult(
        OK, f"checkpoint at seq {written.seq} ({short})", f"🔏 Audit checkpoint: seq {written.seq} · {short}…", params,
        witness=written.witness_line(),
    )  # fmt: skip


async def frequent_checkpoint(ctx: JobContext, now: datetime) -> JobResult:
    """A checkpoint when entries were added since the last one (hourly, and every
    ``checkpoint_every`` entries when the scheduler's append trigger asks)."""
    try:
        written = await sign_head(ctx, now, only_if_new=True)
    except (AuditError, Tampered) as exc:
        return _not_written(exc)
    if written is None:
        return JobResult(OK, "nothing added since the last checkpoint")
    return JobResult(OK, f"checkpoint at seq {written.seq}", params={"seq": written.seq, "file": written.name})


# -- retention ------------------------------------------------------------------------------


async def retention(ctx: JobContext, now: datetime) -> JobResult:
    """Export and prune audit entries past retention, then prune operational rows.

    If the audit export fails, nothing at all is pruned this run: one clear failure to fix,
    and the next run does everything.
    """
    config = ctx.config
    dry = config.retention_dry_run
    days = config.retention_audit_days
    async with ctx.chain_lock:
        try:
            exported = await export_older_than(
                ctx.audit,
                ctx.export_path,
                ctx.audit_key,
                now - timedelta(days=days),
                now,
                ctx.trusted_audit_keys,
                dry_run=dry,
            )
        except (AuditError, Tampered) as exc:
            reason = f"broken at seq {exc.seq}: {exc.reason}" if isinstance(exc, Tampered) else str(exc)
            text = f"🚨 Retention stopped: the audit export failed\n{reason}\nNothing was exported or pruned."
            return JobResult(ALERT, f"audit export failed, nothing pruned: {reason}", text, {"dry_run": dry})
        removed = await ctx.prune(now, dry)

    if exported.exported:
        span = f"seq {exported.first_seq}..{exported.last_seq}"
        audit_line = (
            f"Audit: {exported.exported} entries older than {days} days would be exported ({span})"
            if dry
            else f"Audit: {exported.exported} entries older than {days} days exported ({span}) and removed"
        )
    else:
        audit_line = f"Audit: nothing older than {days} days"
    nonzero = Counter({name: n for name, n in removed.items() if n})
    if nonzero:
        rows_line = ("Would remove: " if dry else "Removed: ") + counts(nonzero, top=len(nonzero))
    else:
        rows_line = "Nothing else past retention"
    title = "🧹 Retention dry run: nothing was changed" if dry else "🧹 Retention"
    message = "\n".join([title, audit_line, rows_line]) if dry or exported.exported or nonzero else None
    if dry:
        summary = f"dry run: {exported.exported} audit entries and {sum(removed.values())} rows would be removed"
    else:
        summary = f"{exported.exported} audit entries exported, {sum(removed.values())} rows removed"
    params: dict[str, Any] = {
        "dry_run": dry,
        "exported": exported.exported,
        "first_seq": exported.first_seq,
        "last_seq": exported.last_seq,
        "removed_entries": exported.removed,
        "manifest": exported.manifest.name if exported.manifest is not None else None,
        "rows": removed,
    }
    return JobResult(OK, summary, message, params)


# -- reports --------------------------------------------------------------------------------


async def report(ctx: JobContext, now: datetime, *, days: int, title: str, figures: bool = False) -> JobResult:
    """The audit report over the ``days`` before ``now``, streamed from the audit store;
    with ``figures``, also the per-day figures the bot draws (``scheduler.weekly``)."""
    since = now - timedelta(days=days)
    collector = ReportCollector(since, now)
    tally = WeeklyTally(since, now, ctx.config.tz) if figures else None
    async with ctx.audit.snapshot() as snapshot:
        # Entries are in seq order, and time order but for clock jumps: start at the last
        # entry before the lookback and let the collector check each entry's time.
        start = await snapshot.rows_before(format_ts(since - APPROVAL_LOOKBACK)) or 0
        async for batch in snapshot.batches(after_seq=start):
            for row in batch:
                try:
                    entry = AuditEntry.from_row(row)
                except (TypeError, ValueError):
                    continue  # an edited row: verification reports it, the report skips it
                collector.add(entry)
                if tally is not None:
                    tally.add(entry)
        head_seq = snapshot.head.seq
    result = collector.report(title=title, head_seq=head_seq)
    failed = sum(1 for d in result.deploy_problems if d.decision == "failed")
    params = {
        "days": days,
        "entries": result.entries,
        "refused": result.refused,
        "approvals": len(result.approvals),
        "deploys_ok": result.deploys_ok,
        "deploys_failed": failed,
    }
    summary = f"{title.lower()} report: {result.entries} entries, {result.refused} refused, {len(result.approvals)} approvals, {failed} failed deploys"
    extra = {"weekly": tally.figures(result.approvals, chain_line(result, ctx.config.tz))} if tally is not None else {}
    names = None
    if ctx.names is not None:
        try:
            names = await ctx.names(people_in(result))
        except Exception as exc:  # noqa: BLE001 - display only: the report goes out with ids
            log.error("the report cannot show people by name: %s", exc)
    return JobResult(OK, summary, render(result, ctx.config.tz, names), params, extra=extra)


async def daily_report(ctx: JobContext, now: datetime) -> JobResult:
    return await report(ctx, now, days=1, title="Daily")


async def weekly_report(ctx: JobContext, now: datetime) -> JobResult:
    result = await report(ctx, now, days=7, title="Weekly", figures=True)
    return await recall_updates(ctx, now, result)


async def recall_updates(ctx: JobContext, now: datetime, result: JobResult) -> JobResult:
    """The weekly report with the updates announced and still not deployed: listed in its
    text, and in its notification (``pending_updates``) for the chat to offer their Deploy
    buttons again. A failure to read them costs the recall, never the report."""
    if ctx.pending_updates is None:
        return result
    try:
        pending = await ctx.pending_updates()
    except Exception as exc:  # noqa: BLE001 - the report goes out without the recall
        log.error("the weekly report cannot recall pending updates: %s", exc)
        return result
    if not pending:
        return result
    text = (result.text or "") + "\n" + pending_updates_text(pending, ctx.config.tz)
    return dataclasses.replace(
        result, text=text, params={**result.params, "pending_updates": len(pending)},
        extra={**result.extra, "pending_updates": pending},
    )  # fmt: skip


# -- approvals --------------------------------------------------------------------------------


async def approval_expiry(ctx: JobContext, now: datetime) -> JobResult:
    """Expire approvals past their time (the executor audits and notifies each)."""
    expired = await ctx.expire_approvals()
    return JobResult(OK, f"{len(expired)} approvals expired", params={"expired": len(expired)})


# -- updates --------------------------------------------------------------------------------------


async def update_check(ctx: JobContext, now: datetime) -> JobResult:
    """Ask the registries for updates of the allowlisted containers; the new ones go to the chat."""
    if ctx.check_updates is None:
        return JobResult(OK, "no update check: Docker is not configured")
    return await ctx.check_updates(now)


# -- the table of jobs --------------------------------------------------------------------------


def _daily(setting: str) -> Schedule:
    def schedule(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
        at = config.at(setting)
        return CronTrigger(hour=at.hour, minute=at.minute, timezone=tz)

    return schedule


def _weekly(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
    at = config.at("report_at")
    return CronTrigger(day_of_week=config.weekday, hour=at.hour, minute=at.minute, timezone=tz)


def _watchdog_interval(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
    return IntervalTrigger(minutes=config.watchdog_minutes, timezone=tz)


def _checkpoint_interval(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
    return IntervalTrigger(seconds=int(CHECKPOINT_INTERVAL.total_seconds()), timezone=tz)


def _expiry_interval(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger:
    return IntervalTrigger(seconds=config.expiry_sweep_seconds, timezone=tz)


def _update_check(config: ScheduleConfig, tz: tzinfo) -> BaseTrigger | None:
    when = config.update_check
    if when is None:
        return None
    if isinstance(when, Every):
        return IntervalTrigger(seconds=when.seconds, timezone=tz)
    return OrTrigger([CronTrigger(hour=t.hour, minute=t.minute, timezone=tz) for t in when])


JOBS: tuple[JobSpec, ...] = (
    JobSpec("verify", "audit chain verification", verify, _daily("verify_at")),
    JobSpec("verify-watchdog", "verification watchdog", watchdog, _watchdog_interval, quiet=True),
    JobSpec("checkpoint", "audit checkpoint", checkpoint, _daily("checkpoint_at")),
    JobSpec(FREQUENT_CHECKPOINT, "frequent audit checkpoint", frequent_checkpoint, _checkpoint_interval, quiet=True),
    JobSpec("retention", "retention", retention, _daily("retention_at")),
    JobSpec("daily-report", "daily audit report", daily_report, _daily("report_at")),
    JobSpec("weekly-report", "weekly audit report", weekly_report, _weekly),
    JobSpec("approval-expiry", "approval expiry", approval_expiry, _expiry_interval, quiet=True),
    JobSpec("updates", "update check", update_check, _update_check),
)
