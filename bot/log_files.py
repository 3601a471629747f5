"""``/logs`` too long for one message arrives as a file: ``web-20261207-1402.log``.

The file holds the lines exactly as the executor sent them (already cleaned of terminal
escapes there), one per line; the caption says whose logs and how many lines. The time in
the name is when the bot sent them, in UTC, to the minute.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from aiogram import Bot
from aiogram.types import BufferedInputFile, Message, ReplyParameters

from bot.formatting import esc

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def log_file_name(container: object, now: datetime) -> str:
    """``web-20261207-1402.log``; anything but letters, digits, ``_``, ``.`` and ``-`` becomes ``_``."""
    name = _UNSAFE.sub("_", str(container)).strip("._") or "logs"
    return f"{name[:64]}-{now.astimezone(timezone.utc):%Y%m%d-%H%M}.log"


async def send_log_file(
    bot: Bot, chat_id: int, result: dict[str, Any], *, reply_to: int | None = None, now: datetime | None = None
) -> Message:
    """Send the lines of a ``logs`` result as a document named after the container and the time."""
    lines = [str(line) for line in result.get("lines") or []]
    filename = log_file_name(result.get("name"), now or datetime.now(timezone.utc))
    document = BufferedInputFile(("\n".join(lines) + "\n").encode("utf-8"), filename=filename)
    caption = f"<b>{esc(result.get('name'))}</b>, last {len(lines)} lines: too long for a message, attached as a file"
    kwargs: dict[str, Any] = {}
    if reply_to is not None:
        kwargs["reply_parameters"] = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
    return await bot.send_document(chat_id, document, caption=caption, **kwargs)
