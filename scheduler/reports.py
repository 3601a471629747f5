"""The daily and weekly audit reports: collected from audit entries, rendered as chat text.

Pure: entries in (oldest first), an :class:`AuditReport` out, text out of that. No clock
reads and no I/O, so every figure is unit-tested exactly. The job feeds entries from a
little before the window (``APPROVAL_LOOKBACK``) so that an approval decided inside the
window but requested before it still gets its waiting time; only entries inside
``[since, until)`` are counted.

What counts as what, in the executor's audit vocabulary:

- a *person* is an actor ``tg:<id>``; ``system``, ``unverified``, ``uid:…`` are other actors;
  the scheduler's own bookkeeping (actor ``scheduler``) is shown as one total, not counted;
- *refused and denied attempts* are decisions ``denied`` (policy), ``refused`` (a bad token,
  an action or a vote refused) and ``bad_request``;
- an *approval* starts with decision ``needs_approval`` (``params.approval`` is its id) and
  ends with ``approval.approve``/``approved``, ``approval.reject``/``rejected``,
  ``approval.cancel``/``cancelled`` or ``approval.expire``/``expired`` (a late tap on an
  expired request is audited as refused with the reason ``this request has expired``);
- *deploys* are ``deploy`` and ``rollback`` entries that ran: ``executed`` or ``failed`` (a
  failed deploy's outcome says which image it rolled back to).

People are shown by the display names the executor last saw (``executor.people``, handed
in as ``names``: ``{"tg:4": "@olga"}``), as in the chat: the id beside a name where two
people look alike or a name reads like an id, the id alone where no name is known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from audit.canonical import format_ts, parse_ts
from audit.store import AuditEntry
from scheduler.runs import ACTOR, FINISHED, action_of

REFUSALS = ("denied", "refused", "bad_request")
CLOSINGS = {
    ("approval.approve", "approved"): "approved",
    ("approval.reject", "rejected"): "rejected",
    ("approval.cancel", "cancelled"): "cancelled",
    ("approval.expire", "expired"): "expired",
}
EXPIRED_ON_TAP = "this request has expired"
DEPLOY_ACTIONS = ("deploy", "rollback")
# The longest an approval can wait (WINGMAN_APPROVAL_TTL_SECONDS is at most 7 days).
APPROVAL_LOOKBACK = timedelta(days=7)
STALE_AFTER = timedelta(hours=26)
LIST_LIMIT = 10  # lines per list, so a report stays one readable message
TOP = 6  # names per count line
REASON_CHARS = 100


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    """Identical refused attempts (who, what, why), counted."""

    actor: str
    action: str
    target: str | None
    decision: str
    reason: str
    count: int
    first: str  # ts of the first one


@dataclass(slots=True)
class ApprovalWait:
    """One approval: who asked for what, how it ended, how long it waited."""

    id: str
    action: str
    target: str | None
    requester: str
    requested: str | None  # ts; None when the request is older than the lookback
    closed: str | None = None  # ts of the decision; None: still open at the report's end
    outcome: str | None = None  # approved | rejected | cancelled | expired
    by: list[str] = field(default_factory=list)  # approvers (or who rejected/cancelled)

    def waited(self, until: str) -> timedelta | None:
        if self.requested is None:
            return None
        return parse_ts(self.closed or until) - parse_ts(self.requested)


@dataclass(frozen=True, slots=True)
class DeployEvent:
    ts: str
    actor: str
    action: str
    target: str | None
    decision: str
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Verification:
    ts: str
    decision: str  # ok | alert | error
    outcome: str | None


@dataclass(frozen=True, slots=True)
class AuditReport:
    title: str
    since: str
    until: str
    entries: int  # counted entries (not the scheduler's)
    scheduler_entries: int
    by_decision: Counter[str]
    by_action: Counter[str]
    by_person: Counter[str]
    other_actors: Counter[str]
    refused: int
    refusals: list[RefusalGroup]
    approvals: list[ApprovalWait]
    deploys_ok: int
    rollbacks_ok: int
    deploy_problems: list[DeployEvent]  # failed deploys and rollbacks, and manual rollbacks
    verification: Verification | None
    head_seq: int | None


class ReportCollector:
    """Feed entries oldest first with :meth:`add`, then :meth:`report`; memory grows with
    the refusals and approvals in the window, not with its entries."""

    def __init__(self, since: datetime, until: datetime) -> None:
        self.since = format_ts(since)
        self.until = format_ts(until)
        self.entries = 0
        self.scheduler_entries = 0
        self.by_decision: Counter[str] = Counter()
        self.by_action: Counter[str] = Counter()
        self.by_person: Counter[str] = Counter()
        self.other_actors: Counter[str] = Counter()
        self._refusals: dict[tuple[str, str, str | None, str, str], list[str]] = {}  # key -> [ts, ...]
        self._approvals: dict[str, ApprovalWait] = {}
        self._shown: set[str] = set()  # approvals requested or closed inside the window
        self.deploys_ok = 0
        self.rollbacks_ok = 0
        self.deploy_problems: list[DeployEvent] = []
        self.verification: Verification | None = None

    def add(self, entry: AuditEntry) -> None:
        ts = entry.ts
        if not isinstance(ts, str) or ts >= self.until:
            return
        inside = ts >= self.since
        if entry.actor == ACTOR:
            if entry.action == action_of("verify") and entry.decision in FINISHED:
                self.verification = Verification(ts, entry.decision, entry.outcome)
            if inside:
                self.scheduler_entries += 1
            return
        self._track_approval(entry, inside)
        if not inside:
            return
        self.entries += 1
        self.by_decision[entry.decision] += 1
        self.by_action[entry.action] += 1
        (self.by_person if entry.actor.startswith("tg:") else self.other_actors)[entry.actor] += 1
        if entry.decision in REFUSALS:
            key = (entry.actor, entry.action, entry.target, entry.decision, _one_line(entry.outcome or ""))
            self._refusals.setdefault(key, []).append(ts)
        if entry.action in DEPLOY_ACTIONS and entry.decision in ("executed", "failed"):
            if entry.decision == "executed":
                if entry.action == "deploy":
                    self.deploys_ok += 1
                else:
                    self.rollbacks_ok += 1
            if entry.decision == "failed" or entry.action == "rollback":
                self.deploy_problems.append(
                    DeployEvent(ts, entry.actor, entry.action, entry.target, entry.decision, entry.outcome)
                )

    def _track_approval(self, entry: AuditEntry, inside: bool) -> None:
        approval_id = entry.params.get("approval") if isinstance(entry.params, dict) else None
        if not isinstance(approval_id, str):
            return
        if entry.decision == "needs_approval":
            self._approvals[approval_id] = ApprovalWait(
                approval_id, entry.action, entry.target, entry.actor, entry.ts
            )
            if inside:
                self._shown.add(approval_id)
            return
        closing = CLOSINGS.get((entry.action, entry.decision))
        if closing is None and entry.decision == "refused" and (entry.outcome or "").startswith(EXPIRED_ON_TAP):
            closing = "expired"
        counted = entry.action == "approval.approve" and entry.decision == "counted"
        if closing is None and not counted:
            return
        wait = self._approvals.get(approval_id)
        if wait is None:
            # Requested before the lookback: still listed, without a waiting time.
            wait = self._approvals[approval_id] = ApprovalWait(approval_id, "?", entry.target, "?", None)
        if wait.closed is not None:
            return  # the first closing counts; later taps were refused anyway
        if entry.actor.startswith("tg:") and entry.actor not in wait.by:
            wait.by.append(entry.actor)
        if closing is not None:
            wait.closed, wait.outcome = entry.ts, closing
            if inside:
                self._shown.add(approval_id)

    def report(self, *, title: str, head_seq: int | None = None) -> AuditReport:
        groups = [
            RefusalGroup(actor, action, target, decision, reason, len(times), times[0])
            for (actor, action, target, decision, reason), times in self._refusals.items()
        ]
        groups.sort(key=lambda g: (-g.count, g.first))
        approvals = [self._approvals[i] for i in self._shown]
        approvals.sort(key=lambda a: (a.requested or "", a.id))
        return AuditReport(
            title=title,
            since=self.since,
            until=self.until,
            entries=self.entries,
            scheduler_entries=self.scheduler_entries,
            by_decision=self.by_decision,
            by_action=self.by_action,
            by_person=self.by_person,
            other_actors=self.other_actors,
            refused=sum(g.count for g in groups),
            refusals=groups,
            approvals=approvals,
            deploys_ok=self.deploys_ok,
            rollbacks_ok=self.rollbacks_ok,
            deploy_problems=self.deploy_problems,
            verification=self.verification,
            head_seq=head_seq,
        )


def collect(
    entries: Iterable[AuditEntry], since: datetime, until: datetime, *, title: str, head_seq: int | None = None
) -> AuditReport:
    """The report over ``[since, until)`` of ``entries`` (oldest first)."""
    collector = ReportCollector(since, until)
    for entry in entries:
        collector.add(entry)
    return collector.report(title=title, head_seq=head_seq)


# -- rendering ----------------------------------------------------------------------------


def people_shown(names: Mapping[str, str] | None) -> dict[str, str]:
    """``{"tg:4": "@olga", "tg:3": "Sam (tg:3)", "tg:5": "sam (tg:5)"}``: how each person
    with a known name is shown in plain text (the bot shows the chat's text escaped)."""
    known = {actor: name for actor, name in (names or {}).items() if name}
    alike = Counter(name.casefold() for name in known.values())
    return {
        actor: f"{name} ({actor})" if alike[name.casefold()] > 1 or name.casefold().startswith("tg:") else name
        for actor, name in known.items()
    }


def people_in(report: AuditReport) -> set[str]:
    """The people the rendered report names (for looking up their display names)."""
    found = set(report.by_person) | {g.actor for g in report.refusals} | {d.actor for d in report.deploy_problems}
    for wait in report.approvals:
        found |= {wait.requester, *wait.by}
    return {actor for actor in found if actor.startswith("tg:")}


def render(report: AuditReport, tz: tzinfo, names: Mapping[str, str] | None = None) -> str:
    """Plain text for the chat: short lines, the figures first, then what needs a look."""
    shown = people_shown(names)

    def who(actor: str) -> str:
        return shown.get(actor, actor)

    lines = [
        f"📊 Wingman {report.title.lower()} audit report",
        f"{local(report.since, tz, '%Y-%m-%d %H:%M')} → {local(report.until, tz, '%Y-%m-%d %H:%M')} ({zone_name(tz)})",
        "",
        chain_line(report, tz),
        f"📈 {report.entries} entries" + (f" (+{report.scheduler_entries} by the scheduler)" if report.scheduler_entries else ""),
    ]
    if report.entries:
        lines.append("Decisions: " + counts(report.by_decision))
        lines.append("Actions: " + counts(report.by_action))
        by_person = Counter({who(actor): n for actor, n in report.by_person.items()})
        lines.append("People: " + (counts(by_person) if by_person else "none"))
        if report.other_actors:
            lines.append("Others: " + counts(report.other_actors))

    lines += ["", f"⛔ Refused or denied: {report.refused}"]
    for group in report.refusals[:LIST_LIMIT]:
        what = group.action + (f" {group.target}" if group.target else "")
        times = f" ×{group.count}" if group.count > 1 else ""
        why = f": {_short(group.reason)}" if group.reason else ""
        lines.append(f"• {local(group.first, tz)} {who(group.actor)} {what}{times} ({group.decision}){why}")
    if len(report.refusals) > LIST_LIMIT:
        lines.append(f"… and {sum(g.count for g in report.refusals[LIST_LIMIT:])} more attempts")

    lines += ["", approvals_line(report)]
    for wait in report.approvals[:LIST_LIMIT]:
        lines.append("• " + approval_text(wait, report.until, who))
    if len(report.approvals) > LIST_LIMIT:
        lines.append(f"… and {len(report.approvals) - LIST_LIMIT} more approvals")

    failed = sum(1 for d in report.deploy_problems if d.decision == "failed")
    lines += ["", f"🚀 Deploys: {report.deploys_ok} ok · {failed} failed · {report.rollbacks_ok} rolled back by hand"]
    for event in report.deploy_problems[:LIST_LIMIT]:
        what = event.action + (f" {event.target}" if event.target else "")
        result = "failed" if event.decision == "failed" else "done"
        detail = f": {_short(event.outcome)}" if event.outcome else ""
        lines.append(f"• {local(event.ts, tz)} {what} by {who(event.actor)} {result}{detail}")
    if len(report.deploy_problems) > LIST_LIMIT:
        lines.append(f"… and {len(report.deploy_problems) - LIST_LIMIT} more deploys")
    return "\n".join(lines)


def chain_line(report: AuditReport, tz: tzinfo) -> str:
    head = f" (head seq {report.head_seq})" if report.head_seq is not None else ""
    found = report.verification
    if found is None:
        return f"🔗 Chain: ⚠️ no scheduled verification on record{head}"
    when = local(found.ts, tz)
    if found.decision == "ok":
        late = parse_ts(report.until) - parse_ts(found.ts) > STALE_AFTER
        mark = "⚠️ last verified intact" if late else "✅ verified intact"
        return f"🔗 Chain: {mark} {when}{head}"
    if found.decision == "alert":
        return f"🔗 Chain: 🚨 {when}: {_short(found.outcome or 'alert')}{head}"
    return f"🔗 Chain: ❌ verification failed to run {when}: {_short(found.outcome or 'error')}{head}"


def approvals_line(report: AuditReport) -> str:
    ends = Counter(w.outcome or "open" for w in report.approvals)
    decided = [w.waited(report.until) for w in report.approvals if w.outcome in ("approved", "rejected")]
    known = [d for d in decided if d is not None]
    parts = [f"{ends[k]} {k}" for k in ("approved", "rejected", "cancelled", "expired", "open") if ends[k]]
    line = f"✋ Approvals: {len(report.approvals)}"
    if parts:
        line += " (" + ", ".join(parts) + ")"
    if known:
        average = sum(known, timedelta()) / len(known)
        line += f", decided after {duration(average)} on average"
    return line


def approval_text(wait: ApprovalWait, until: str, who: Callable[[str], str] = str) -> str:
    what = wait.action + (f" {wait.target}" if wait.target else "")
    waited = wait.waited(until)
    after = duration(waited) if waited is not None else "?"
    by = f" by {', '.join(who(b) for b in wait.by)}" if wait.by and wait.outcome in ("approved", "rejected") else ""
    if wait.outcome is None:
        return f"{what} for {who(wait.requester)}: no decision yet ({after} so far)"
    return f"{what} for {who(wait.requester)}: {wait.outcome}{by} after {after}"


# -- small formatting helpers, shared with the jobs ---------------------------------------


def counts(counter: Counter[str], top: int = TOP) -> str:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    text = " · ".join(f"{name} {n}" for name, n in ranked[:top])
    rest = ranked[top:]
    if rest:
        text += f" · +{len(rest)} more ({sum(n for _, n in rest)})"
    return text


def duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def local(ts: str, tz: tzinfo, pattern: str = "%m-%d %H:%M") -> str:
    """An audit timestamp in the configured zone (the raw text if it does not parse)."""
    try:
        return parse_ts(ts).astimezone(tz).strftime(pattern)
    except (TypeError, ValueError):
        return ts


def zone_name(tz: tzinfo) -> str:
    key = getattr(tz, "key", None)
    return str(key) if key else str(tz)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str | None, limit: int = REASON_CHARS) -> str:
    line = _one_line(text or "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pending_updates_text(pending: list[dict[str, Any]], tz: tzinfo) -> str:
    """Updates announced and not deployed, for the weekly report (each as in the ``updates``
    event, plus ``announced_at``, epoch seconds), oldest announcement first."""
    lines = [f"Updates announced and not deployed yet: {len(pending)}"]
    for update in pending[:LIST_LIMIT]:
        current, new = update.get("current_tag"), update.get("new_tag")
        change = f"{current} → {new}" if current != new else f"{new} (new image)"
        announced = update.get("announced_at")
        when = ""
        if isinstance(announced, (int, float)) and not isinstance(announced, bool) and announced > 0:
            when = ", announced " + local(format_ts(datetime.fromtimestamp(announced, timezone.utc)), tz)
        lines.append(f"  {_one_line(str(update.get('target')))}: {_one_line(str(change))}{when}")
    if len(pending) > LIST_LIMIT:
        lines.append(f"  … and {len(pending) - LIST_LIMIT} more (/updates lists them)")
    return "\n".join(lines)
