"""The weekly report as one picture with a short caption, drawn from the executor's figures.

The executor sends figures, not an image (``scheduler.weekly`` documents the shape); the
bot draws them here. :func:`draw` and :func:`caption` are pure functions of a list of
:class:`Week` (one per host), so a report that puts several executors side by side is
the same call with more weeks. With many executors, :class:`PictureBoard` keeps
one weekly message for all of them (as ``bot.reports`` does for text): the first host's
week posts it, each later host's week redraws it with every host so far and replaces
the photo and caption in place (``editMessageMedia``). The picture has three panels, one column per day:
requests by outcome (stacked: done, refused, failed, rolled back), deploys and rollbacks
per host, and the median wait from request to approval. The caption carries the same
figures in text, for people who read notifications on a watch. A quiet week (no request,
no deploy, no approval on any host) is said in one line instead of drawn as empty axes.

matplotlib (Agg, through its object API: no pyplot state, no display) is imported inside
:func:`draw` only. The bot calls it through :func:`render`, in a child interpreter
(``python -m bot.pictures``, figures in on stdin, the PNG out on stdout): loading
matplotlib and drawing cost about 50 MB and seconds of CPU, which a thread would leave in
the bot for good after the first weekly report; the child gives them back when it exits,
so the bot's memory stays what it was at idle and its event loop never waits on a
drawing (``tests/bot/test_pictures.py`` holds the import to that). A picture that cannot
be drawn (the child fails or takes longer than ``DRAW_TIMEOUT``) is posted as its caption
in text, saying so: nothing is lost.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InputMediaPhoto

from bot.formatting import esc
from bot.reports import PERIOD

log = logging.getLogger("wingman.bot")

WEEKLY_KIND = "scheduler.weekly-report"
WIDTH, HEIGHT, DPI = 1200, 900, 100  # pixels of the PNG
CAPTION_LIMIT = 1024  # Telegram's, for a photo's caption
DRAW_TIMEOUT = 120.0  # seconds for the child that draws (matplotlib's first import is slow)
OUTCOMES = (("done", "done", "#2e7d32"), ("refused", "refused", "#ef6c00"), ("failed", "failed", "#c62828"), ("rolled_back", "rolled back", "#6a1b9a"))
COUNTS = ("done", "refused", "failed", "rolled_back", "deploys", "rollbacks")


@dataclass(frozen=True, slots=True)
class Day:
    date: date
    done: int
    refused: int
    failed: int
    rolled_back: int
    deploys: int
    rollbacks: int
    approval_waits: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Week:
    """One host's week, as the executor counted it."""

    host: str
    since: str
    until: str
    timezone: str
    chain: str
    days: tuple[Day, ...]

    @classmethod
    def from_json(cls, data: Any, host: str) -> Week:
        """The figures of ``payload.weekly``; ValueError when they are not that shape."""
        if not isinstance(data, dict) or not isinstance(data.get("days"), list):
            raise ValueError("the weekly figures have no list of days")
        days = []
        for item in data["days"]:
            if not isinstance(item, dict):
                raise ValueError("a day of the weekly figures is not an object")
            counts = {name: item.get(name, 0) for name in COUNTS}
            waits = item.get("approval_waits", [])
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in [*counts.values(), *waits]):
                raise ValueError("a figure of the weekly report is not a count")
            days.append(Day(date.fromisoformat(str(item.get("date"))), **counts, approval_waits=tuple(waits)))
        text = {key: str(data.get(key, "")) for key in ("since", "until", "timezone", "chain")}
        return cls(host=host, days=tuple(sorted(days, key=lambda d: d.date)), **text)

    def total(self, name: str) -> int:
        return sum(getattr(day, name) for day in self.days)

    def as_json(self) -> dict[str, Any]:
        """What :meth:`from_json` reads back, with the host (for the drawing child)."""
        days = [
            {"date": d.date.isoformat(), **{name: getattr(d, name) for name in COUNTS}, "approval_waits": list(d.approval_waits)}
            for d in self.days
        ]
        return {"host": self.host, "since": self.since, "until": self.until, "timezone": self.timezone, "chain": self.chain, "days": days}


class PictureFailed(Exception):
    """The child that draws failed or took too long; ``str()`` says how, in one line."""


def is_quiet(weeks: Sequence[Week]) -> bool:
    return all(week.total(name) == 0 for week in weeks for name in COUNTS) and not any(
        day.approval_waits for week in weeks for day in week.days
    )


def dates(weeks: Sequence[Week]) -> list[date]:
    return sorted({day.date for week in weeks for day in week.days})


def _per_date(weeks: Sequence[Week]) -> dict[date, list[Day]]:
    found: dict[date, list[Day]] = {d: [] for d in dates(weeks)}
    for week in weeks:
        for day in week.days:
            found[day.date].append(day)
    return found


def median_wait(days: Sequence[Day]) -> float | None:
    """The median of the approval waits of ``days`` (several hosts' merge exactly), seconds."""
    waits = [w for day in days for w in day.approval_waits]
    return float(statistics.median(waits)) if waits else None


def duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _label(day: date) -> str:
    return f"{day:%a %d}"


def _span(week: Week) -> str:
    def short(ts: str) -> str:
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%m-%d")
        except ValueError:
            return ts

    return f"{short(week.since)} → {short(week.until)}" + (f" ({week.timezone})" if week.timezone else "")


def headline(weeks: Sequence[Week]) -> str:
    first = weeks[0]
    hosts = f" · {', '.join(w.host for w in weeks)}" if len(weeks) > 1 else ""
    return f"📊 Weekly report · {_span(first)}{hosts}"


def caption(weeks: Sequence[Week]) -> str:
    """The picture's figures in text (HTML, escaped), within Telegram's caption limit."""
    per_date = _per_date(weeks)
    totals = {name: sum(w.total(name) for w in weeks) for name in COUNTS}
    lines = [
        esc(headline(weeks)),
        "Requests: " + " · ".join(f"{totals[key]} {label}" for key, label, _ in OUTCOMES),
        "Per day (done/refused/failed/rolled back): "
        + " · ".join(f"{_label(d)} {'/'.join(str(sum(getattr(x, k) for x in days)) for k, _, _ in OUTCOMES)}" for d, days in per_date.items()),
        "Deploys: " + " · ".join(f"{esc(w.host)} {w.total('deploys')}, {w.total('rollbacks')} rolled back" for w in weeks),
    ]
    overall = median_wait([day for days in per_date.values() for day in days])
    if overall is None:
        lines.append("Median wait for approval: no approvals")
    else:
        count = sum(len(day.approval_waits) for days in per_date.values() for day in days)
        daily = " · ".join(f"{_label(d)} {duration(m)}" for d, days in per_date.items() if (m := median_wait(days)) is not None)
        lines.append(f"Median wait for approval: {duration(overall)} ({count} approvals; {daily})")
    for week in weeks:
        if week.chain:
            lines.append(esc(week.chain if len(weeks) == 1 else f"{week.host}: {week.chain}"))
    text = "\n".join(lines)
    return text if len(text) <= CAPTION_LIMIT else text[: CAPTION_LIMIT - 1].rsplit("\n", 1)[0] + "\n…"


def quiet_text(weeks: Sequence[Week]) -> str:
    lines = [esc(headline(weeks)), "A quiet week: no requests, no deploys, no approvals."]
    lines += [esc(w.chain if len(weeks) == 1 else f"{w.host}: {w.chain}") for w in weeks if w.chain]
    return "\n".join(lines)


def draw(weeks: Sequence[Week]) -> bytes:
    """The week as a PNG of ``WIDTH`` × ``HEIGHT`` pixels. Imports matplotlib (Agg) the first
    time; CPU-bound: call it in a thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_date = _per_date(weeks)
    days = list(per_date)
    xs = list(range(len(days)))
    labels = [_label(d) for d in days]
    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    requests, deploys, waits = figure.subplots(3, 1, sharex=True)
    figure.suptitle(headline(weeks).removeprefix("📊 "), fontsize=14)

    bottom = [0] * len(days)
    for key, label, colour in OUTCOMES:
        heights = [sum(getattr(day, key) for day in per_date[d]) for d in days]
        requests.bar(xs, heights, bottom=bottom, label=label, color=colour)
        bottom = [b + h for b, h in zip(bottom, heights)]
    requests.set_ylabel("requests")
    requests.set_ylim(0, max(1, *bottom) * 1.3)  # room for the legend above the bars
    requests.legend(loc="upper left", fontsize=9, ncols=4)

    width = 0.8 / (2 * len(weeks))
    highest = 0
    for n, week in enumerate(weeks):
        by_date = {day.date: day for day in week.days}
        offset = -0.4 + width * (2 * n + 0.5)
        colour = f"C{n % 10}"
        ran = [by_date[d].deploys if d in by_date else 0 for d in days]
        back = [by_date[d].rollbacks if d in by_date else 0 for d in days]
        deploys.bar([x + offset for x in xs], ran, width, label=f"{week.host} deploys", color=colour)
        deploys.bar(
            [x + offset + width for x in xs], back, width, label=f"{week.host} rollbacks", color=colour, hatch="//", alpha=0.5,
        )  # fmt: skip
        highest = max(highest, *ran, *back)
    deploys.set_ylim(0, max(1, highest) * 1.3)
    deploys.set_ylabel("deploys, rollbacks")
    deploys.legend(loc="upper left", fontsize=9, ncols=2)

    medians = [median_wait(per_date[d]) for d in days]
    shown = [(x, m / 60) for x, m in zip(xs, medians) if m is not None]
    if shown:
        bars = waits.bar([x for x, _ in shown], [m for _, m in shown], 0.5, color="#1565c0")
        waits.bar_label(bars, [duration(m * 60) for _, m in shown], fontsize=9)
        waits.set_ylim(0, max(m for _, m in shown) * 1.25)
    else:
        waits.text(0.5, 0.5, "no approvals", transform=waits.transAxes, ha="center", va="center", color="grey")
    waits.set_ylabel("median wait for\napproval (minutes)")
    for axes in (requests, deploys):
        axes.yaxis.get_major_locator().set_params(integer=True)
    waits.set_xticks(xs, labels)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


async def render(weeks: Sequence[Week], *, timeout: float = DRAW_TIMEOUT) -> bytes:
    """:func:`draw` in a child interpreter (see the module docstring); PictureFailed when it
    cannot."""
    data = json.dumps([week.as_json() for week in weeks]).encode()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.pictures",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        png, errors = await asyncio.wait_for(child.communicate(data), timeout)
    except asyncio.TimeoutError:
        child.kill()
        await child.wait()
        raise PictureFailed(f"drawing took longer than {timeout:.0f} s") from None
    if child.returncode != 0 or not png.startswith(b"\x89PNG"):
        last = (errors.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise PictureFailed(f"the drawing process ended with status {child.returncode}: {last[:200]}")
    return png


async def send_weekly(bot: Bot, chat: int, weeks: Sequence[Week]) -> int:
    """Post the week: one photo with its caption, or one line for a quiet week (or the
    caption alone when the picture cannot be drawn); the message id."""
    if is_quiet(weeks):
        return (await bot.send_message(chat, quiet_text(weeks))).message_id
    try:
        png = await render(weeks)
    except PictureFailed as exc:
        log.error("the weekly picture cannot be drawn (%s); posting its figures as text", exc)
        return (await bot.send_message(chat, f"{caption(weeks)}\n(the picture could not be drawn: {esc(exc)})")).message_id
    photo = BufferedInputFile(png, filename="wingman-weekly-report.png")
    return (await bot.send_photo(chat, photo, caption=caption(weeks))).message_id


def weeks_of(payload: dict[str, Any], host: str | None) -> list[Week] | None:
    """The weeks a weekly report's payload carries (None: none, or not readable: the
    caller shows the text instead, and says why in the log)."""
    if "weekly" not in payload:
        return None
    try:
        return [Week.from_json(payload["weekly"], host or "this host")]
    except (ValueError, TypeError) as exc:
        log.error("the weekly report's figures cannot be drawn (%s); posting its text", exc)
        return None


@dataclass
class Sheet:
    """The open weekly message: where it is, when it was posted, whose weeks it shows."""

    message_id: int
    posted: float
    photo: bool  # a picture (False: the one line of a quiet week)
    weeks: dict[str, Week] = field(default_factory=dict)


class PictureBoard:
    """One weekly report message for every host, per chat, shared by the hosts' pumps.

    A host's week joins the open message when that is less than ``PERIOD`` old and has no
    week from that host yet; otherwise it starts a new one. A week that turns a quiet
    message into one with figures (a line cannot become a photo) posts the whole picture
    anew. Kept in memory only: after a bot restart, later hosts start a new message.
    """

    def __init__(self, hosts: list[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = hosts
        self._clock = clock
        self._sheets: dict[int, Sheet] = {}
        self._lock = asyncio.Lock()  # two hosts' pumps may show their weeks at the same moment

    def ordered(self, weeks: dict[str, Week]) -> list[Week]:
        return [weeks[h] for h in self.hosts if h in weeks] + [w for h, w in weeks.items() if h not in self.hosts]

    async def show(self, bot: Bot, chat: int, week: Week) -> int | None:
        """Show ``week``; the id of a message it posted (None when it edited the open one)."""
        async with self._lock:
            sheet = self._sheets.get(chat)
            if sheet is not None and week.host not in sheet.weeks and self._clock() - sheet.posted < PERIOD:
                weeks = {**sheet.weeks, week.host: week}
                shown = self.ordered(weeks)
                quiet = is_quiet(shown)
                try:
                    if quiet and not sheet.photo:
                        await bot.edit_message_text(text=quiet_text(shown), chat_id=chat, message_id=sheet.message_id)
                        sheet.weeks = weeks
                        return None
                    if not quiet and sheet.photo:
                        png = await render(shown)
                        media = InputMediaPhoto(media=BufferedInputFile(png, filename="wingman-weekly-report.png"), caption=caption(shown))
                        await bot.edit_message_media(media=media, chat_id=chat, message_id=sheet.message_id)
                        sheet.weeks = weeks
                        return None
                except TelegramBadRequest as exc:
                    if "not modified" in str(exc):
                        sheet.weeks = weeks
                        return None
                    log.info("the weekly report message %s cannot be edited (%s); posting anew", sheet.message_id, exc)
                except PictureFailed as exc:
                    log.error("the weekly picture cannot be redrawn (%s); posting the hosts' figures anew", exc)
                shown_weeks = weeks  # a quiet line turned into figures, or not editable: post them all
            else:
                shown_weeks = {week.host: week}
            shown = self.ordered(shown_weeks)
            message_id = await send_weekly(bot, chat, shown)
            self._sheets[chat] = Sheet(message_id, self._clock(), not is_quiet(shown), shown_weeks)
            return message_id


def main() -> int:
    """``python -m bot.pictures``: weeks as JSON on stdin (``Week.as_json`` each), the PNG
    on stdout. What :func:`render` runs."""
    try:
        weeks = [Week.from_json(item, str(item.get("host", ""))) for item in json.load(sys.stdin)]
        png = draw(weeks)
    except (ValueError, TypeError, AttributeError) as exc:
        print(f"cannot draw: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
