"""The schedule's settings: one-line errors naming the setting, and jobs firing at the
configured times in the configured zone (APScheduler's triggers driven directly, no waiting)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler import JOBS, JobContext, ScheduleConfig, ScheduleConfigError, Scheduler

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
SPECS = {spec.id: spec for spec in JOBS}


def next_fire(job_id: str, config: ScheduleConfig, after: datetime) -> datetime:
    trigger = SPECS[job_id].schedule(config, config.tz)
    fire = trigger.get_next_fire_time(None, after)
    assert fire is not None
    return fire


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"verify_at": "25:00"}, 'WINGMAN_VERIFY_AT: "25:00" is not a time (HH:MM)'),
        ({"checkpoint_at": "00:60"}, 'WINGMAN_CHECKPOINT_AT: "00:60" is not a time (HH:MM)'),
        ({"retention_at": "3am"}, 'WINGMAN_RETENTION_AT: "3am" is not a time (HH:MM)'),
        ({"report_at": ""}, 'WINGMAN_REPORT_AT: "" is not a time (HH:MM)'),
        ({"weekly_report_day": "funday"}, 'WINGMAN_WEEKLY_REPORT_DAY: "funday" is not a day of the week (mon, tue, … sun)'),
        ({"timezone": "Mars/Olympus"}, 'WINGMAN_TIMEZONE: "Mars/Olympus" is not a time zone (e.g. Europe/Berlin, UTC)'),
        ({"retention_audit_days": 0}, "RETENTION_AUDIT_DAYS: 0 is not a whole number of 1 or more"),
        ({"retention_failed_days": -3}, "RETENTION_FAILED_DAYS: -3 is not a whole number of 1 or more"),
        ({"retention_executions_days": True}, "RETENTION_EXECUTIONS_DAYS: True is not a whole number of 1 or more"),
        ({"retention_notifications_days": "30"}, "RETENTION_NOTIFICATIONS_DAYS: '30' is not a whole number of 1 or more"),
        ({"retention_dry_run": "yes"}, "RETENTION_DRY_RUN: 'yes' is not true or false"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleConfigError) as caught:
        ScheduleConfig(**values)
    assert str(caught.value) == message


def test_accepted_spellings() -> None:
    config = ScheduleConfig(verify_at="2:05", weekly_report_day="Friday", timezone="Europe/Berlin")
    assert (config.at("verify_at").hour, config.at("verify_at").minute) == (2, 5)
    assert config.weekday == "fri"
    assert config.tz == BERLIN


def test_default_times_in_utc() -> None:
    config = ScheduleConfig(timezone="UTC")
    monday_1am = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday
    assert next_fire("verify", config, monday_1am) == datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    assert next_fire("checkpoint", config, monday_1am) == datetime(2026, 3, 3, 0, 5, tzinfo=UTC)
    assert next_fire("retention", config, monday_1am) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert next_fire("daily-report", config, monday_1am) == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert next_fire("weekly-report", config, monday_1am) == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    tuesday = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert next_fire("weekly-report", config, tuesday) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert next_fire("daily-report", config, tuesday) == datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    for job_id, every in (("approval-expiry", timedelta(minutes=1)), ("verify-watchdog", timedelta(hours=1))):
        trigger = SPECS[job_id].schedule(config, config.tz)
        assert trigger.get_next_fire_time(monday_1am, monday_1am) == monday_1am + every


def test_configured_times_are_wall_clock_in_the_configured_zone() -> None:
    config = ScheduleConfig(verify_at="04:15", report_at="07:45", weekly_report_day="sun", timezone="Europe/Berlin")
    winter = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # a Saturday; Berlin is UTC+1
    assert next_fire("verify", config, winter) == datetime(2026, 1, 11, 4, 15, tzinfo=BERLIN)
    assert next_fire("verify", config, winter).astimezone(UTC) == datetime(2026, 1, 11, 3, 15, tzinfo=UTC)
    assert next_fire("weekly-report", config, winter).astimezone(UTC) == datetime(2026, 1, 11, 6, 45, tzinfo=UTC)
    summer = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)  # UTC+2
    assert next_fire("verify", config, summer).astimezone(UTC) == datetime(2026, 7, 11, 2, 15, tzinfo=UTC)


def test_the_nightly_verification_still_runs_on_the_night_the_clocks_go_forward() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: the run is not skipped (it happens at
    # the instant 02:30 would have been, 03:30 summer time), so the watchdog stays quiet.
    config = ScheduleConfig(timezone="Europe/Berlin")
    first = next_fire("verify", config, datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN))
    assert first.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    second = SPECS["verify"].schedule(config, config.tz).get_next_fire_time(first, first)
    assert second is not None and second - first < timedelta(hours=26)


def config_only(config: ScheduleConfig) -> JobContext:
    """A context with the schedule's config and none of the daemon's parts."""
    parts = {f.name: None for f in dataclasses.fields(JobContext) if f.init and f.name != "config" and f.default is f.default_factory is dataclasses.MISSING}
    return JobContext(config=config, **parts)


def test_every_job_has_an_explicit_id_coalesces_and_never_doubles() -> None:
    config = ScheduleConfig(timezone="UTC")
    # Only the config is read while jobs are added: no daemon needed.
    scheduler = Scheduler(config_only(config))
    jobs = {job.id: job for job in scheduler.aps.get_jobs()}
    assert set(jobs) == {"verify", "verify-watchdog", "checkpoint", "checkpoint-frequent", "retention", "daily-report", "weekly-report", "approval-expiry", "updates"}
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 23 * 3600
    # Built twice (a restart in the same process): replaced, not duplicated.
    again = Scheduler(config_only(config))
    assert len(again.aps.get_jobs()) == len(jobs)


@pytest.mark.parametrize(
    ("value", "seconds_or_times"),
    [("every 6h", 6 * 3600), ("Every 30m", 1800), ("every 1d", 86400), ("06:00, 18:30", ("06:00", "18:30"))],
)
def test_the_update_check_runs_every_so_often_or_at_times(value: str, seconds_or_times: object) -> None:
    config = ScheduleConfig(timezone="UTC", update_check_at=value)
    job = {job.id: job for job in Scheduler(config_only(config)).aps.get_jobs()}["updates"]
    if isinstance(seconds_or_times, int):
        assert job.trigger.interval.total_seconds() == seconds_or_times
    else:
        assert [f"{t.hour:02d}:{t.minute:02d}" for t in config.update_check] == list(seconds_or_times)  # type: ignore[union-attr]
        assert len(job.trigger.triggers) == 2


def test_an_update_check_set_off_is_not_scheduled() -> None:
    config = ScheduleConfig(timezone="UTC", update_check_at="off")
    assert "updates" not in {job.id for job in Scheduler(config_only(config)).aps.get_jobs()}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("every 2m", 'WINGMAN_UPDATE_CHECK_AT: "every 2m" is too often: every 5m at the most'),
        ("hourly", 'WINGMAN_UPDATE_CHECK_AT: "hourly" is not a schedule: give "every 6h", times like "06:00,18:00", or "off"'),
        ("25:00", 'WINGMAN_UPDATE_CHECK_AT: "25:00" is not a schedule: give "every 6h", times like "06:00,18:00", or "off"'),
        ("", 'WINGMAN_UPDATE_CHECK_AT: "" is not a schedule: give "every 6h", times like "06:00,18:00", or "off"'),
    ],
)
def test_a_bad_update_check_schedule_is_one_line(value: str, reason: str) -> None:
    with pytest.raises(ScheduleConfigError) as caught:
        ScheduleConfig(update_check_at=value)
    assert str(caught.value) == reason
