"""What the scheduler runs when, and how long operational rows are kept.

:class:`ScheduleConfig` is built once at start-up from the executor's settings (the
settings model owns the environment; this module never reads it). Every value is checked
when the config is made: a bad one raises :class:`ScheduleConfigError` whose text is one
line naming the setting, e.g. ``WINGMAN_VERIFY_AT: "25:00" is not a time (HH:MM)``, so the
daemon can stop with exit status 2 like for any other setting.

Times are wall-clock ``HH:MM`` in ``timezone`` (an IANA name; ``None`` means the host's
own zone, as ``TZ`` or ``/etc/localtime`` say).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import time, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

# The setting each field is read from: error messages name these, and the settings model
# maps them onto the fields of the same name (minus the prefix).
ENV_NAMES: dict[str, str] = {
    "verify_at": "WINGMAN_VERIFY_AT",
    "checkpoint_at": "WINGMAN_CHECKPOINT_AT",
    "checkpoint_every": "WINGMAN_CHECKPOINT_EVERY",
    "retention_at": "WINGMAN_RETENTION_AT",
    "report_at": "WINGMAN_REPORT_AT",
    "weekly_report_day": "WINGMAN_WEEKLY_REPORT_DAY",
    "timezone": "WINGMAN_TIMEZONE",
    "retention_audit_days": "RETENTION_AUDIT_DAYS",
    "retention_executions_days": "RETENTION_EXECUTIONS_DAYS",
    "retention_failed_days": "RETENTION_FAILED_DAYS",
    "retention_other_days": "RETENTION_OTHER_DAYS",
    "retention_notifications_days": "RETENTION_NOTIFICATIONS_DAYS",
    "retention_approvals_days": "RETENTION_APPROVALS_DAYS",
    "retention_dry_run": "RETENTION_DRY_RUN",
    "update_check_at": "WINGMAN_UPDATE_CHECK_AT",
}

UPDATE_CHECK_MIN_MINUTES = 5  # registries are not polled more often than this
_EVERY = re.compile(r"every\s+(\d{1,5})\s*(m|min|h|d)", re.IGNORECASE)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


class ScheduleConfigError(ValueError):
    """A schedule or retention setting that cannot be used; ``str()`` is ``<SETTING>: <reason>``."""


def parse_time(value: str, setting: str) -> time:
    """``"HH:MM"`` (24-hour) as a time of day, or ``ScheduleConfigError`` naming ``setting``."""
    match = _TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleConfigError(f'{setting}: "{value}" is not a time (HH:MM)')
    return time(int(match[1]), int(match[2]))


def parse_weekday(value: str, setting: str) -> str:
    """A day name (``mon``, ``Monday``…) as APScheduler's three-letter form."""
    word = value.strip().lower() if isinstance(value, str) else ""
    for day, full in zip(WEEKDAYS, ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")):
        if word in (day, full):
            return day
    raise ScheduleConfigError(f'{setting}: "{value}" is not a day of the week (mon, tue, … sun)')


@dataclass(frozen=True, slots=True)
class Every:
    """A job that runs every ``seconds`` (``every 6h``)."""

    seconds: int


def parse_update_check(value: str, setting: str) -> Every | tuple[time, ...] | None:
    """``off`` (None), ``every <n>m|h|d`` (:class:`Every`) or times of day ``HH:MM[,HH:MM…]``."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if text in ("off", "never", "no", "false"):
        return None
    match = _EVERY.fullmatch(text)
    if match is not None:
        seconds = int(match[1]) * {"m": 60, "min": 60, "h": 3600, "d": 86400}[match[2].lower()]
        if seconds < UPDATE_CHECK_MIN_MINUTES * 60:
            raise ScheduleConfigError(f'{setting}: "{value}" is too often: every {UPDATE_CHECK_MIN_MINUTES}m at the most')
        return Every(seconds)
    times = [part.strip() for part in text.split(",") if part.strip()]
    if not times:
        raise ScheduleConfigError(f'{setting}: "{value}" is not a schedule: give "every 6h", times like "06:00,18:00", or "off"')
    try:
        return tuple(sorted({parse_time(t, setting) for t in times}))
    except ScheduleConfigError:
        raise ScheduleConfigError(
            f'{setting}: "{value}" is not a schedule: give "every 6h", times like "06:00,18:00", or "off"'
        ) from None


def parse_timezone(value: str | None, setting: str) -> tzinfo:
    """An IANA zone name as a tzinfo; ``None`` or empty: the host's own zone."""
    if value is None or not value.strip():
        return tzlocal.get_localzone()
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleConfigError(f'{setting}: "{value}" is not a time zone (e.g. Europe/Berlin, UTC)') from None


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When each job runs and what retention keeps; see ``ENV_NAMES`` for the settings."""

    verify_at: str = "02:30"
    checkpoint_at: str = "00:05"
    checkpoint_every: int = 1000  # entries; a checkpoint is also written hourly while entries were added
    retention_at: str = "03:00"
    report_at: str = "08:00"
    weekly_report_day: str = "mon"
    timezone: str | None = None
    retention_audit_days: int = 90
    retention_executions_days: int = 7  # deployments that succeeded
    retention_failed_days: int = 14  # deployments that failed and were rolled back (or not)
    retention_other_days: int = 30  # deployments that ended otherwise (recovered after a crash)
    retention_notifications_days: int = 30  # delivered notifications
    retention_approvals_days: int = 30  # approvals in a final state, with their votes
    retention_dry_run: bool = False
    update_check_at: str = "every 6h"  # or HH:MM[,HH:MM…], or off

    # Not settings: tuned here, with the reasons.
    # A daily job that was missed (host asleep or down) still runs once when the host is
    # back within this long; coalescing makes "once" hold however many runs were missed.
    misfire_grace_hours: int = 23
    # "The scheduler silently stopped" is a failure too: alert when no verification found
    # the chain intact for this long (a day plus slack for a slow or late run).
    verify_max_age_hours: int = 26
    expiry_sweep_seconds: int = 60
    watchdog_minutes: int = 60
    # /rollback walks back through a service's successful deploys: the newest few are
    # kept whatever their age, so retention never takes away the way back.
    keep_deploys_per_service: int = 5

    def __post_init__(self) -> None:
        for name in ("verify_at", "checkpoint_at", "retention_at", "report_at"):
            parse_time(getattr(self, name), ENV_NAMES[name])
        parse_weekday(self.weekly_report_day, ENV_NAMES["weekly_report_day"])
        parse_timezone(self.timezone, ENV_NAMES["timezone"])
        parse_update_check(self.update_check_at, ENV_NAMES["update_check_at"])
        for field in fields(self):
            if field.type != "int":
                continue
            value = getattr(self, field.name)
            setting = ENV_NAMES.get(field.name, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ScheduleConfigError(f"{setting}: {value!r} is not a whole number of 1 or more")
        if not isinstance(self.retention_dry_run, bool):
            raise ScheduleConfigError(f"RETENTION_DRY_RUN: {self.retention_dry_run!r} is not true or false")

    def at(self, name: str) -> time:
        """The time of day of ``verify_at``, ``checkpoint_at``, ``retention_at`` or ``report_at``."""
        return parse_time(getattr(self, name), ENV_NAMES[name])

    @property
    def weekday(self) -> str:
        return parse_weekday(self.weekly_report_day, ENV_NAMES["weekly_report_day"])

    @property
    def update_check(self) -> Every | tuple[time, ...] | None:
        """When the update check runs: every N seconds, at times of day, or never (None)."""
        return parse_update_check(self.update_check_at, ENV_NAMES["update_check_at"])

    @property
    def tz(self) -> tzinfo:
        return parse_timezone(self.timezone, ENV_NAMES["timezone"])
