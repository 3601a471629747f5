"""The audit report over a seeded week: every figure checked, and the text the chat gets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from audit.canonical import format_ts
from audit.store import AuditEntry
from scheduler.reports import AuditReport, collect, duration, people_in, render

UTC = timezone.utc
SINCE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # Monday 08:00
UNTIL = SINCE + timedelta(days=7)


class Log:
    """Entries as the executor writes them, numbered as they are added."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def add(
        self,
        at: datetime,
        actor: str,
        action: str,
        decision: str,
        target: str | None = None,
        outcome: str | None = None,
        **params: Any,
    ) -> None:
        seq = len(self.entries) + 1
        self.entries.append(
            AuditEntry(seq, format_ts(at), actor, action, target, params, decision, outcome, None, "0" * 64, "0" * 64)
        )


def day(n: int, hour: int, minute: int = 0) -> datetime:
    """Day ``n`` of the window (0 = Monday 2 March), at hour:minute UTC."""
    return datetime(2026, 3, 2 + n, hour, minute, tzinfo=UTC)


def seeded_week() -> list[AuditEntry]:
    log = Log()
    # Before the window: a request whose approval comes inside it, and last week's verification.
    log.add(day(0, 7, 30), "tg:4", "deploy", "needs_approval", "web", "needs one approval", approval="a1", image="app:1")
    log.add(day(0, 2, 30), "scheduler", "scheduler.verify", "started")
    log.add(day(0, 2, 31), "scheduler", "scheduler.verify", "ok", None, "ok: 10 entries")
    log.add(day(0, 5), "tg:4", "status", "executed")  # before the window: not counted
    # The window: Monday 08:00 (inclusive) to the next Monday 08:00 (exclusive).
    log.add(day(0, 8), "tg:5", "status", "executed")
    log.add(day(0, 8, 10), "tg:2", "approval.approve", "approved", "web", None, approval="a1")
    log.add(day(0, 8, 11), "tg:4", "deploy", "executed", "web", "deployed app:1", approval="a1")
    log.add(day(1, 9), "tg:4", "restart", "allowed", "web")
    log.add(day(1, 9), "tg:4", "restart", "executed", "web", "restarted web")
    log.add(day(1, 10), "tg:4", "deploy", "needs_approval", "web", "needs one approval", approval="a2", image="app:2")
    log.add(day(1, 10, 5), "tg:4", "approval.approve", "refused", "web", "you cannot approve your own request", approval="a2")
    log.add(day(1, 10, 12), "tg:2", "approval.approve", "approved", "web", None, approval="a2")
    log.add(day(1, 10, 13), "tg:4", "deploy", "executed", "web", "deployed app:2", approval="a2")
    log.add(day(2, 9), "tg:4", "stop", "needs_approval", "db", "needs one approval", approval="a3")
    log.add(day(2, 10), "tg:3", "approval.reject", "rejected", "db", None, approval="a3")
    log.add(day(2, 11), "tg:666", "restart", "denied", "db", "you are not a known user")
    log.add(day(2, 11, 1), "tg:666", "restart", "denied", "db", "you are not a known user")
    log.add(day(3, 12), "tg:4", "rollback", "needs_approval", "web", "needs one approval", approval="a4")
    log.add(day(3, 12, 15), "system", "approval.expire", "expired", "web", None, approval="a4")
    log.add(day(4, 14), "tg:5", "deploy", "failed", "api", "deploy of api to api:3 failed: unhealthy; rolled back to api:2, running")
    log.add(day(4, 15), "unverified", "request", "refused", None, "the token has expired")
    log.add(day(5, 9), "tg:4", "rollback", "executed", "web", "rolled web back to app:1")
    log.add(day(7, 2, 30), "scheduler", "scheduler.verify", "started")
    log.add(day(7, 2, 31), "scheduler", "scheduler.verify", "ok", None, "ok: 40 entries")
    log.add(day(6, 20), "tg:4", "deploy", "needs_approval", "api", "needs one approval", approval="a5")
    log.add(day(7, 7, 59), "tg:5", "status", "executed")
    log.add(day(7, 8), "tg:5", "status", "executed")  # at the window's end: next week's
    return log.entries


def weekly() -> AuditReport:
    return collect(seeded_week(), SINCE, UNTIL, title="Weekly", head_seq=27)


def test_counts_by_decision_action_and_person() -> None:
    report = weekly()
    assert report.entries == 20
    assert report.scheduler_entries == 2
    assert dict(report.by_decision) == {
        "executed": 6, "approved": 2, "allowed": 1, "needs_approval": 4, "refused": 2, "rejected": 1,
        "denied": 2, "expired": 1, "failed": 1,
    }  # fmt: skip
    assert dict(report.by_action) == {
        "status": 2, "approval.approve": 3, "deploy": 5, "restart": 4, "stop": 1, "approval.reject": 1,
        "rollback": 2, "approval.expire": 1, "request": 1,
    }  # fmt: skip
    assert dict(report.by_person) == {"tg:5": 3, "tg:2": 2, "tg:4": 10, "tg:3": 1, "tg:666": 2}
    assert dict(report.other_actors) == {"system": 1, "unverified": 1}


def test_refused_and_denied_attempts_say_who_what_and_why() -> None:
    report = weekly()
    assert report.refused == 4
    assert [(g.actor, g.action, g.target, g.decision, g.reason, g.count) for g in report.refusals] == [
        ("tg:666", "restart", "db", "denied", "you are not a known user", 2),
        ("tg:4", "approval.approve", "web", "refused", "you cannot approve your own request", 1),
        ("unverified", "request", None, "refused", "the token has expired", 1),
    ]


def test_approvals_with_their_waiting_time() -> None:
    report = weekly()
    waits = [(w.id, w.action, w.target, w.outcome, w.by, w.waited(report.until)) for w in report.approvals]
    assert waits == [
        ("a1", "deploy", "web", "approved", ["tg:2"], timedelta(minutes=40)),  # requested before the window
        ("a2", "deploy", "web", "approved", ["tg:2"], timedelta(minutes=12)),  # the requester's own tap is not a vote
        ("a3", "stop", "db", "rejected", ["tg:3"], timedelta(hours=1)),
        ("a4", "rollback", "web", "expired", [], timedelta(minutes=15)),
        ("a5", "deploy", "api", None, [], timedelta(hours=12)),  # still open at the report's end
    ]


def test_failed_and_rolled_back_deploys() -> None:
    report = weekly()
    assert (report.deploys_ok, report.rollbacks_ok) == (2, 1)
    assert [(d.action, d.target, d.decision) for d in report.deploy_problems] == [
        ("deploy", "api", "failed"),
        ("rollback", "web", "executed"),
    ]


def test_the_text_as_the_chat_shows_it() -> None:
    text = render(weekly(), ZoneInfo("Europe/Berlin"))
    assert text.splitlines() == [
        "📊 Wingman weekly audit report",
        "2026-03-02 09:00 → 2026-03-09 09:00 (Europe/Berlin)",
        "",
        "🔗 Chain: ✅ verified intact 03-09 03:31 (head seq 27)",
        "📈 20 entries (+2 by the scheduler)",
        "Decisions: executed 6 · needs_approval 4 · approved 2 · denied 2 · refused 2 · allowed 1 · +3 more (3)",
        "Actions: deploy 5 · restart 4 · approval.approve 3 · rollback 2 · status 2 · approval.expire 1 · +3 more (3)",
        "People: tg:4 10 · tg:5 3 · tg:2 2 · tg:666 2 · tg:3 1",
        "Others: system 1 · unverified 1",
        "",
        "⛔ Refused or denied: 4",
        "• 03-04 12:00 tg:666 restart db ×2 (denied): you are not a known user",
        "• 03-03 11:05 tg:4 approval.approve web (refused): you cannot approve your own request",
        "• 03-06 16:00 unverified request (refused): the token has expired",
        "",
        "✋ Approvals: 5 (2 approved, 1 rejected, 1 expired, 1 open), decided after 37m on average",
        "• deploy web for tg:4: approved by tg:2 after 40m",
        "• deploy web for tg:4: approved by tg:2 after 12m",
        "• stop db for tg:4: rejected by tg:3 after 1h 00m",
        "• rollback web for tg:4: expired after 15m",
        "• deploy api for tg:4: no decision yet (12h 00m so far)",
        "",
        "🚀 Deploys: 2 ok · 1 failed · 1 rolled back by hand",
        "• 03-06 15:00 deploy api by tg:5 failed: deploy of api to api:3 failed: unhealthy; rolled back to api:2, running",
        "• 03-07 10:00 rollback web by tg:4 done: rolled web back to app:1",
    ]


def test_a_daily_window_counts_only_its_day() -> None:
    report = collect(seeded_week(), day(2, 8), day(3, 8), title="Daily")
    assert report.entries == 4  # a3 requested and rejected, two denials
    assert report.refused == 2
    assert [(w.id, w.outcome) for w in report.approvals] == [("a3", "rejected")]
    assert report.verification is not None and report.verification.ts == format_ts(day(0, 2, 31))


def test_chain_status_lines() -> None:
    log = Log()
    quiet = render(collect(log.entries, SINCE, UNTIL, title="Daily"), UTC)
    assert "🔗 Chain: ⚠️ no scheduled verification on record" in quiet.splitlines()
    assert "📈 0 entries" in quiet.splitlines()
    log.add(day(0, 2, 31), "scheduler", "scheduler.verify", "ok", None, "ok")
    stale = render(collect(log.entries, SINCE, UNTIL, title="Daily", head_seq=1), UTC)
    assert "🔗 Chain: ⚠️ last verified intact 03-02 02:31 (head seq 1)" in stale.splitlines()
    log.add(day(6, 2, 31), "scheduler", "scheduler.verify", "alert", None, "broken at seq 7: entry_hash does not match")
    broken = render(collect(log.entries, SINCE, UNTIL, title="Daily"), UTC)
    assert "🔗 Chain: 🚨 03-08 02:31: broken at seq 7: entry_hash does not match" in broken.splitlines()


def test_long_lists_are_cut_and_say_how_much_more() -> None:
    log = Log()
    for n in range(15):
        log.add(day(1, 9, n), f"tg:{700 + n}", "restart", "denied", "db", "not allowed")
    text = render(collect(log.entries, SINCE, UNTIL, title="Daily"), UTC)
    lines = text.splitlines()
    assert sum(line.startswith("• ") for line in lines) == 10
    assert "… and 5 more attempts" in lines


def test_durations() -> None:
    assert [duration(timedelta(seconds=s)) for s in (0, 59, 60, 3599, 3600, 47 * 3600 + 59 * 60, 49 * 3600)] == [
        "0s", "59s", "1m", "59m", "1h 00m", "47h 59m", "2d 1h",
    ]  # fmt: skip


def test_the_weekly_recall_of_updates_left_pending() -> None:
    from scheduler.reports import LIST_LIMIT, pending_updates_text

    announced = int(datetime(2026, 3, 3, 6, 0, tzinfo=UTC).timestamp())
    pending = [
        {"target": "web", "current_tag": "1.2.3", "new_tag": "1.2.4", "announced_at": announced},
        {"target": "db\n<x>", "current_tag": "15", "new_tag": "15", "announced_at": None},
    ]
    assert pending_updates_text(pending, ZoneInfo("Europe/Berlin")).splitlines() == [
        "Updates announced and not deployed yet: 2",
        "  web: 1.2.3 → 1.2.4, announced 03-03 07:00",
        "  db <x>: 15 (new image)",
    ]
    many = pending_updates_text([pending[0]] * (LIST_LIMIT + 3), UTC).splitlines()
    assert len(many) == 1 + LIST_LIMIT + 1 and many[-1] == "  … and 3 more (/updates lists them)"


def test_people_by_name_with_the_id_where_two_look_alike() -> None:
    """The names the executor last saw, as the chat shows people: the ids stay in the audit."""
    report = weekly()
    names = {"tg:4": "@olga_ops", "tg:2": "Sam", "tg:3": "sam", "tg:666": "<b>x</b>"}
    assert people_in(report) == {"tg:2", "tg:3", "tg:4", "tg:5", "tg:666"}
    lines = render(report, ZoneInfo("Europe/Berlin"), names).splitlines()
    assert "People: @olga_ops 10 · tg:5 3 · <b>x</b> 2 · Sam (tg:2) 2 · sam (tg:3) 1" in lines
    assert "• 03-04 12:00 <b>x</b> restart db ×2 (denied): you are not a known user" in lines
    assert "• deploy web for @olga_ops: approved by Sam (tg:2) after 40m" in lines
    assert "• stop db for @olga_ops: rejected by sam (tg:3) after 1h 00m" in lines
    assert "• 03-06 15:00 deploy api by tg:5 failed: deploy of api to api:3 failed: unhealthy; rolled back to api:2, running" in lines
