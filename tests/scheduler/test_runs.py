"""When the watchdog alerts: the decision table (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scheduler.runs import verification_overdue

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("last_ok", "last_alert", "old_enough", "overdue"),
    [
        (None, None, False, False),  # a fresh install: nothing was due yet
        (None, None, True, True),  # never verified, history older than 26 h
        (NOW - 25 * H, None, True, False),  # verified 25 h ago: fine
        (NOW - 26 * H, None, True, False),  # exactly at the limit: still fine
        (NOW - 26 * H - timedelta(seconds=1), None, True, True),
        (NOW - 30 * H, NOW - 2 * H, True, False),  # already alerted after the last success
        (NOW - 60 * H, NOW - 24 * H, True, True),  # that alert was a day ago: repeat it
        (NOW - 30 * H, NOW - 40 * H, True, True),  # an alert from before the last success does not count
        (NOW - 27 * H, None, False, False),  # cannot happen, but history decides first
    ],
)
def test_verification_overdue(last_ok: datetime | None, last_alert: datetime | None, old_enough: bool, overdue: bool) -> None:
    assert (
        verification_overdue(now=NOW, max_age=26 * H, last_ok=last_ok, last_alert=last_alert, history_old_enough=old_enough)
        is overdue
    )
