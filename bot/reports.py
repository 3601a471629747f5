"""One daily and one weekly report message for every host together, a section per host.

Each executor sends its own report (``scheduler.daily-report``, ``scheduler.weekly-report``)
through its outbox. With many hosts the bot shows them as one message per period: the
first host's report posts it, and each later host's report of the same kind edits it,
adding its section (in the fleet's order). A report joins the open message of its kind
when that message is less than ``PERIOD`` old and has no section from that host yet;
otherwise it starts a new message (the next period, or the previous one arriving late).

A weekly report with figures is a picture: ``bot.pictures.PictureBoard`` does the same
for it, drawing every host's week into the one picture.

The bot keeps no state across a restart: the open messages are remembered in memory only.
After a restart, hosts that report later start a second message for the same period;
nothing is lost, as every report is acknowledged only once it is shown. A combined text
too long for one message also starts a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from bot.formatting import esc, fits

REPORT_KINDS = {"scheduler.daily-report": "📊 Daily report", "scheduler.weekly-report": "📊 Weekly report"}
PERIOD = 12 * 3600.0  # reports of one period arrive within minutes; a day apart is the next one


@dataclass
class Sheet:
    """One report message: where it is, when it was posted, the sections it shows."""

    message_id: int
    posted: float
    sections: dict[str, str] = field(default_factory=dict)


class ReportBoard:
    """The open report messages, by kind and chat, shared by every host's pump."""

    def __init__(self, hosts: list[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = hosts
        self._clock = clock
        self._sheets: dict[tuple[str, int], Sheet] = {}
        self._lock = asyncio.Lock()  # two hosts' pumps may show reports at the same moment

    def render(self, kind: str, sections: dict[str, str]) -> str:
        order = [h for h in self.hosts if h in sections] + [h for h in sections if h not in self.hosts]
        title = f"<b>{REPORT_KINDS.get(kind, esc(kind))}</b> · {len(sections)} of {len(self.hosts)} hosts"
        return "\n\n".join([title, *(f"🖥 <b>{esc(h)}</b>\n{sections[h]}" for h in order)])

    async def show(self, bot: Bot, chat: int, kind: str, host: str, section: str) -> int | None:
        """Show ``host``'s report (``section``, HTML); returns the id of a message it posted
        (None when it edited the open one)."""
        async with self._lock:
            key = (kind, chat)
            sheet = self._sheets.get(key)
            if sheet is not None and host not in sheet.sections and self._clock() - sheet.posted < PERIOD:
                sections = {**sheet.sections, host: section}
                text = self.render(kind, sections)
                if fits(text):
                    try:
                        await bot.edit_message_text(text=text, chat_id=chat, message_id=sheet.message_id)
                        sheet.sections = sections  # only once Telegram took it: a retry edits again
                        return None
                    except TelegramBadRequest as exc:
                        if "not modified" in str(exc):
                            sheet.sections = sections
                            return None
                        # deleted or too old to edit: this host's report starts a new message
            sections = {host: section}
            message = await bot.send_message(chat, self.render(kind, sections))
            self._sheets[key] = Sheet(message.message_id, self._clock(), sections)
            return message.message_id
