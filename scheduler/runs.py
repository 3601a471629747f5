"""The scheduler's own runs, as the audit log records them, and reading them back.

Every job run is audited as ``actor="scheduler"``, ``action="scheduler.<job id>"``:
an entry with decision ``started``, then one with the result: ``ok``, ``alert`` (the job
ran and found something an operator must look at) or ``error`` (the job itself failed),
its one-line summary as ``outcome`` and figures in ``params``. Frequent housekeeping jobs
(the approval-expiry sweep, the verification watchdog) are audited only when they alert
or fail, so that a minute-by-minute sweep does not bury the activity it is there to serve.

The time of the last successful verification is therefore not stored anywhere else: it
is the newest ``scheduler.verify`` entry with decision ``ok``. Lookups are bounded by the
``ts`` index (``ix_audit_log_ts``), never a scan of the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.canonical import format_ts, parse_ts
from audit.schema import audit_log

ACTOR = "scheduler"
STARTED, OK, ALERT, ERROR = "started", "ok", "alert", "error"
FINISHED = (OK, ALERT, ERROR)

# How far back a lookup for the last verification goes (the ts index bounds it).
LOOKBACK = timedelta(days=8)
# A watchdog alert is repeated at most this often while verification stays overdue.
REALERT = timedelta(hours=24)


def action_of(job_id: str) -> str:
    return f"scheduler.{job_id}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run as audited: when, how it ended, its summary."""

    at: datetime
    decision: str
    outcome: str | None


async def last_run(
    engine: AsyncEngine, job_id: str, *, since: datetime, decisions: tuple[str, ...] = FINISHED
) -> RunRecord | None:
    """The newest run of ``job_id`` since ``since`` that ended with one of ``decisions``."""
    query = (
        select(audit_log.c.ts, audit_log.c.decision, audit_log.c.outcome)
        .where(
            audit_log.c.ts >= format_ts(since),
            audit_log.c.actor == ACTOR,
            audit_log.c.action == action_of(job_id),
            audit_log.c.decision.in_(decisions),
        )
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return RunRecord(_parsed(row.ts) or since, row.decision, row.outcome)


async def history_predates(engine: AsyncEngine, moment: datetime) -> bool:
    """Whether the audit history reaches back before ``moment``.

    True when an entry older than ``moment`` is in the database, or when entries already
    left it for exports (the oldest seq here is above 1): the history is older still.
    """
    async with engine.connect() as conn:
        oldest_seq = (await conn.execute(select(func.min(audit_log.c.seq)))).scalar_one_or_none()
        if oldest_seq is None:
            return False
        if oldest_seq > 1:
            return True
        older = (
            await conn.execute(select(audit_log.c.seq).where(audit_log.c.ts < format_ts(moment)).limit(1))
        ).first()
    return older is not None


def verification_overdue(
    *,
    now: datetime,
    max_age: timedelta,
    last_ok: datetime | None,
    last_alert: datetime | None,
    history_old_enough: bool,
) -> bool:
    """Whether the watchdog must alert now (pure).

    Overdue: no verification found the chain intact within ``max_age``, although the audit
    history reaches back further than that (``history_old_enough``, see
    :func:`history_predates`), so one should have. Not repeated while an alert already went
    out after the last success and less than ``REALERT`` ago.
    """
    if not history_old_enough:
        return False  # a fresh install: no nightly run was due yet
    if last_ok is not None and now - last_ok <= max_age:
        return False
    if last_alert is not None and (last_ok is None or last_alert > last_ok) and now - last_alert < REALERT:
        return False
    return True


def _parsed(ts: str) -> datetime | None:
    try:
        return parse_ts(ts)
    except (TypeError, ValueError):
        return None  # an edited row; verification reports it, this lookup just skips it
