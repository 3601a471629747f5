"""The weekly report's figures: per day, requests by outcome, deploys and rollbacks, and
how long approvals waited. The executor computes them; the bot draws them
(``bot.pictures``): images are no business of the process that holds the Docker socket,
and a picture drawn from figures is drawn the same whichever executor sent them, so the
bot can put several hosts' figures side by side.

Pure like ``scheduler.reports``: feed entries oldest first to :meth:`WeeklyTally.add`,
then :meth:`WeeklyTally.figures`; no clock reads, no I/O. Days are calendar days in the
schedule's time zone; the window ``[since, until)`` usually touches eight of them (a
week from Monday 08:00 to Monday 08:00), and each is listed, empty or not.

What counts as what, in the audit's vocabulary (people's and other clients' requests;
the scheduler's bookkeeping, votes and the outbox are not requests):

- ``done``: a request that ran (``executed``);
- ``refused``: refused before it ran (``denied``, ``refused``, ``bad_request``), or its
  approval was rejected or expired;
- ``failed``: it ran and failed; ``rolled_back``: a deploy or rollback that failed and
  was rolled back to the previous image (the outcome says ``rolled back to``);
- ``deploys``: deploys that ran (done or failed); ``rollbacks``: ``/rollback`` runs and
  the automatic rollbacks of failed deploys;
- ``approval_waits``: seconds from request to approval, for each approval approved that
  day (the median is the bot's to take, so that several hosts' waits merge exactly).

The JSON shape (``as_json``), sent in the ``scheduler.weekly-report`` notification's
``payload.weekly``::

    {"since": ts, "until": ts, "timezone": "Europe/Berlin", "chain": "one line",
     "days": [{"date": "2026-11-30", "done": n, "refused": n, "failed": n,
               "rolled_back": n, "deploys": n, "rollbacks": n, "approval_waits": [s, ...]}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from audit.canonical import format_ts, parse_ts
from audit.store import AuditEntry
from scheduler.reports import ApprovalWait
from scheduler.runs import ACTOR

OUTCOMES = ("done", "refused", "failed", "rolled_back")
REFUSED = ("denied", "refused", "bad_request")
CLOSED_REFUSED = {("approval.reject", "rejected"), ("approval.expire", "expired")}
NOT_REQUESTS = ("approval.", "outbox.")
ROLLED_BACK = "rolled back to"


@dataclass(slots=True)
class Day:
    date: date
    done: int = 0
    refused: int = 0
    failed: int = 0
    rolled_back: int = 0
    deploys: int = 0
    rollbacks: int = 0
    approval_waits: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            **{name: getattr(self, name) for name in (*OUTCOMES, "deploys", "rollbacks")},
            "approval_waits": list(self.approval_waits),
        }


class WeeklyTally:
    """Per-day counts over ``[since, until)``; memory grows with the days, not the entries."""

    def __init__(self, since: datetime, until: datetime, tz: tzinfo) -> None:
        self.since, self.until, self.tz = format_ts(since), format_ts(until), tz
        first = since.astimezone(tz).date()
        last = (until - timedelta(microseconds=1)).astimezone(tz).date()
        self.days = {first + timedelta(days=n): Day(first + timedelta(days=n)) for n in range((last - first).days + 1)}

    def _day(self, ts: str) -> Day | None:
        if not (self.since <= ts < self.until):
            return None
        return self.days.get(parse_ts(ts).astimezone(self.tz).date())

    def add(self, entry: AuditEntry) -> None:
        if not isinstance(entry.ts, str) or entry.actor == ACTOR:
            return
        day = self._day(entry.ts)
        if day is None:
            return
        if (entry.action, entry.decision) in CLOSED_REFUSED:
            day.refused += 1
            return
        if entry.action.startswith(NOT_REQUESTS):
            return
        outcome = entry.outcome or ""
        if entry.decision == "executed":
            day.done += 1
        elif entry.decision in REFUSED:
            day.refused += 1
        elif entry.decision == "failed":
            if entry.action in ("deploy", "rollback") and ROLLED_BACK in outcome:
                day.rolled_back += 1
            else:
                day.failed += 1
        if entry.decision in ("executed", "failed"):
            if entry.action == "deploy":
                day.deploys += 1
            if entry.action == "rollback" or (entry.decision == "failed" and ROLLED_BACK in outcome):
                day.rollbacks += 1

    def figures(self, approvals: list[ApprovalWait], chain: str) -> dict[str, Any]:
        """The figures as JSON; ``approvals`` are the report's (``AuditReport.approvals``),
        ``chain`` its one line about the chain."""
        for wait in approvals:
            if wait.outcome != "approved" or wait.closed is None or wait.requested is None:
                continue
            day = self._day(wait.closed)
            if day is not None:
                day.approval_waits.append(max(0, int((parse_ts(wait.closed) - parse_ts(wait.requested)).total_seconds())))
        return {
            "since": self.since,
            "until": self.until,
            "timezone": str(getattr(self.tz, "key", None) or self.tz),
            "chain": chain,
            "days": [day.as_json() for day in self.days.values()],
        }
