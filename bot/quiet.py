"""Quiet hours: which notifications wait for the morning, and the one message they arrive in.

``WINGMAN_QUIET_HOURS=23:00-07:00`` is a window of wall-clock time in ``WINGMAN_TIMEZONE``
(an IANA name; unset: the host's zone), the same setting that places the executor's job
times; a window may run across midnight. During it, *informational* notifications (the
daily and weekly reports, the chain's nightly "intact" line, checkpoint and retention
lines, announced updates) wait, and when it ends they arrive together as ONE message per
chat, oldest first. Everything else is shown at once, always: approval requests and their
progress, container alerts, failures, rollbacks, chain alerts, and any kind this module
does not know. A kind is informational only when :data:`INFORMATIONAL` names it, so a
new kind nobody classified is never held by mistake (holding fails open: an alert must
never wait for the morning; an unclassified report at 3 a.m. is the lesser harm).

Where held messages live: in the executor's outbox, not in the bot (which stores
nothing). The outbox hands an event out until the bot acknowledges it, so the bot simply
does not acknowledge a held event until the digest that carries it was posted. To keep
held events from coming back on every poll (and from filling a poll's 100 with old news,
so that a new alert would wait behind them), the pump polls with ``after``: events past
the last one it handled. A bot restart starts from the beginning again, finds the held
events still unacknowledged, and holds them again; the executor needs to know nothing of
quiet hours. This was preferred over holding in the executor because quiet hours are a
matter of the people in the chat (one bot, possibly many executors in other zones), and
because the executor would still need the bot to merge the held events into one message.
With many executors one :class:`Held` serves every host's pump, so what all of them held
arrives in the same one message; each executor's events are acknowledged through the
pump (and client) that polled them, and a host that cannot be reached for that keeps its
events held, already posted, until it can.

An event is held when it is informational and either now or its writing time (the
outbox's ``created_at``, the executor's clock) falls inside the window: so a report
written at 03:00 that a bot down until 08:00 sees only then still arrives in the one
"held overnight" message rather than alone, and one written at 22:00 but seen at 01:00
waits too.

Pure but for the clock the caller passes in: the tests move it instead of sleeping until
07:00.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from bot.formatting import esc

Clock = Callable[[], float]  # seconds since the epoch, as time.time

# The one table of what may wait. kind -> True: held only when the payload says
# ``"status": "ok"`` (the scheduler posts alerts and failures under the same kinds as its
# good news: a broken chain comes as ``scheduler.verify`` too); False: every event of the
# kind is informational. Kinds not here are shown at once (``alert``, ``approval.*``,
# ``progress``, ``recovery``, ``proxmox.self_check``, anything new).
INFORMATIONAL: dict[str, bool] = {
    "scheduler.daily-report": True,
    "scheduler.weekly-report": True,
    "scheduler.verify": True,
    "scheduler.checkpoint": True,
    "scheduler.retention": True,
    "updates": False,  # announced updates (the scheduled check); each carries its Deploy buttons
}

_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


class QuietHoursError(ValueError):
    """A quiet-hours or time-zone setting that cannot be used; ``str()`` is ``<SETTING>: <reason>``."""


def informational(event: dict[str, Any]) -> bool:
    """Whether ``event`` may wait for the end of quiet hours (see :data:`INFORMATIONAL`)."""
    kind = event.get("kind")
    payload = event.get("payload") or {}
    if not isinstance(kind, str) or kind not in INFORMATIONAL or not isinstance(payload, dict):
        return False
    if "approval" in payload:
        return False  # an approval's message is edited in place: never held
    return not INFORMATIONAL[kind] or payload.get("status") == "ok"


def parse_timezone(value: str | None) -> tzinfo:
    """An IANA zone name as a tzinfo; None or empty: the host's own zone."""
    if value is None or not value.strip():
        return tzlocal.get_localzone()
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise QuietHoursError(f'WINGMAN_TIMEZONE: "{value}" is not a time zone (e.g. Europe/Berlin, UTC)') from None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window ``[start, end)`` of wall-clock time in ``tz``; ``start > end`` runs
    across midnight."""

    start: time
    end: time
    tz: tzinfo

    @classmethod
    def parse(cls, value: str, zone: str | None = None) -> QuietHours:
        """``"23:00-07:00"`` in the zone named ``zone``; one-line ``QuietHoursError`` otherwise."""
        tz = parse_timezone(zone)
        match = _WINDOW.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise QuietHoursError(f'WINGMAN_QUIET_HOURS: "{value}" is not a window HH:MM-HH:MM (e.g. 23:00-07:00)')
        hours = [int(match[i]) for i in (1, 3)]
        minutes = [int(match[i]) for i in (2, 4)]
        if any(h > 23 for h in hours) or any(m > 59 for m in minutes):
            raise QuietHoursError(f'WINGMAN_QUIET_HOURS: "{value}" has a time that is not HH:MM between 00:00 and 23:59')
        start, end = time(hours[0], minutes[0]), time(hours[1], minutes[1])
        if start == end:
            raise QuietHoursError(f'WINGMAN_QUIET_HOURS: "{value}" starts and ends at the same time; unset it for no quiet hours')
        return cls(start, end, tz)

    def label(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"

    def covers(self, epoch: float) -> bool:
        """Whether the moment ``epoch`` (seconds since the epoch) is inside the window."""
        at = datetime.fromtimestamp(epoch, timezone.utc).astimezone(self.tz).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end

    def seconds_left(self, epoch: float) -> float:
        """Seconds from ``epoch`` until the window ends (0 outside it)."""
        if not self.covers(epoch):
            return 0.0
        here = datetime.fromtimestamp(epoch, timezone.utc).astimezone(self.tz)
        end = datetime.combine(here.date(), self.end, tzinfo=self.tz)
        if end <= here:
            end += timedelta(days=1)
        return max(0.0, (end.astimezone(timezone.utc) - here.astimezone(timezone.utc)).total_seconds())


@dataclass(slots=True)
class Waiting:
    """One held event, with the pump that polled it: that pump's executor acknowledges it,
    and that pump shows it when it is more than text."""

    event: dict[str, Any]
    owner: Any  # bot.notifications.NotificationPump (not imported: it imports this module)
    posted: bool = False  # shown already; only its acknowledgement is left

    @property
    def host(self) -> str | None:
        return getattr(self.owner, "host", None)


@dataclass(slots=True)
class Held:
    """The events waiting for the end of quiet hours, by chat, oldest first; one for all
    the bot's pumps, so that many executors' held events arrive in one message too."""

    hours: QuietHours | None
    clock: Clock
    by_chat: dict[int, list[Waiting]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one release at a time
    _ids: set[tuple[str | None, int]] = field(default_factory=set)  # (host, id): ids repeat across executors

    def holds(self, event: dict[str, Any], chat: int, owner: Any) -> bool:
        """Hold ``event`` (for ``chat``, polled by ``owner``) when it may wait and quiet
        hours say it should; True when it is held (now or already)."""
        key = (getattr(owner, "host", None), int(event["id"]))
        if key in self._ids:
            return True  # polled again (after a failed batch, or a pump's restart): held already
        if self.hours is None or not informational(event):
            return False
        created = event.get("created_at")
        written_quietly = isinstance(created, (int, float)) and self.hours.covers(float(created))
        if not (self.quiet() or written_quietly):
            return False
        self._ids.add(key)
        self.by_chat.setdefault(chat, []).append(Waiting(event, owner))
        return True

    def holding(self, host: str | None) -> bool:
        """Whether events of ``host``'s executor are held (its polls then skip them)."""
        return any(h == host for h, _ in self._ids)

    def quiet(self) -> bool:
        return self.hours is not None and self.hours.covers(self.clock())

    def due(self) -> bool:
        """Something is held and the window is over: post the digests now."""
        return bool(self.by_chat) and not self.quiet()

    def wait(self, longest: float) -> float:
        """How long a poll may wait: no longer than until the window ends, while holding."""
        if not self.by_chat or not self.quiet():
            return longest  # outside the window, what is held goes right after each poll
        assert self.hours is not None
        return max(0.0, min(longest, self.hours.seconds_left(self.clock())))

    def release(self, chat: int, done: Iterable[Waiting]) -> None:
        gone = {id(w) for w in done}
        for waiting in (w for w in self.by_chat.get(chat, []) if id(w) in gone):
            self._ids.discard((waiting.host, int(waiting.event["id"])))
        left = [w for w in self.by_chat.get(chat, []) if id(w) not in gone]
        if left:
            self.by_chat[chat] = left
        else:
            self.by_chat.pop(chat, None)


def digest_text(hours: QuietHours | None, texts: list[str], *, more: int = 0) -> str:
    """The one message that carries the ``texts`` (HTML, oldest first; each names its host
    when the bot serves several) of notices held during quiet hours; ``more`` held events
    (a picture, a message with buttons) follow it."""
    window = f" ({hours.label()})" if hours is not None else ""
    count = len(texts) + more
    lines = [f"🌙 <b>Held during quiet hours{esc(window)}</b>: {count} message{'s' if count != 1 else ''}"]
    for text in texts:
        lines += ["", text]
    if more:
        lines += ["", "(1 more follows below)" if more == 1 else f"({more} more follow below)"]
    return "\n".join(lines)
