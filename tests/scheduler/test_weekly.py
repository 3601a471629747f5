"""The weekly report's figures over the seeded week of test_reports: every day checked."""

from __future__ import annotations

from datetime import timezone
from zoneinfo import ZoneInfo

from audit.canonical import format_ts
from scheduler.reports import collect
from scheduler.weekly import WeeklyTally
from tests.scheduler.test_reports import SINCE, UNTIL, seeded_week


def figures(tz=timezone.utc) -> dict:
    entries = seeded_week()
    tally = WeeklyTally(SINCE, UNTIL, tz)
    for entry in entries:
        tally.add(entry)
    report = collect(entries, SINCE, UNTIL, title="Weekly")
    return tally.figures(report.approvals, "🔗 Chain: ✅ verified intact")


def test_each_day_counts_requests_by_outcome_deploys_rollbacks_and_approval_waits() -> None:
    found = figures()
    assert (found["since"], found["until"]) == (format_ts(SINCE), format_ts(UNTIL))
    assert found["chain"] == "🔗 Chain: ✅ verified intact" and found["timezone"] == "UTC"
    rows = [
        (d["date"], d["done"], d["refused"], d["failed"], d["rolled_back"], d["deploys"], d["rollbacks"], d["approval_waits"])
        for d in found["days"]
    ]
    assert rows == [
        # date        done refused failed rolled_back deploys rollbacks waits (s)
        ("2026-03-02", 2, 0, 0, 0, 1, 0, [2400]),  # a1 requested before the window, approved after 40 min
        ("2026-03-03", 2, 0, 0, 0, 1, 0, [720]),  # the requester's own tap is no request and no approval
        ("2026-03-04", 0, 3, 0, 0, 0, 0, []),  # one rejected approval, two denied restarts
        ("2026-03-05", 0, 1, 0, 0, 0, 0, []),  # an expired approval
        ("2026-03-06", 0, 1, 0, 1, 1, 1, []),  # a failed deploy rolled back; a refused token
        ("2026-03-07", 1, 0, 0, 0, 0, 1, []),  # /rollback by hand
        ("2026-03-08", 0, 0, 0, 0, 0, 0, []),
        ("2026-03-09", 1, 0, 0, 0, 0, 0, []),  # 07:59 counts, 08:00 is next week's
    ]


def test_days_are_the_configured_zones_calendar_days() -> None:
    # In Tokyo (UTC+9) the window runs from Monday 17:00 to the next Monday 17:00.
    found = figures(ZoneInfo("Asia/Tokyo"))
    assert [d["date"] for d in found["days"]] == [f"2026-03-{n:02d}" for n in range(2, 10)]
    by_date = {d["date"]: d for d in found["days"]}
    assert by_date["2026-03-09"]["done"] == 1 and by_date["2026-03-09"]["approval_waits"] == []
    assert sum(d["done"] for d in found["days"]) == 6 and sum(d["refused"] for d in found["days"]) == 5
