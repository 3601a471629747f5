"""``/audit`` a page at a time: Older and Newer buttons that edit the message in place.

A tap is a request by whoever tapped, signed for them like a command: the executor decides
whether they may read the audit trail (a viewer's tap is refused, and audited, as their
``/audit`` would be). The button carries only where the page ends, its size and its host
(none with one executor), ``au:o:1234:10:nas``: at most 3 + 2 + 20 + 3 + 20 bytes and
separators, within Telegram's 64. The bot keeps nothing. With many hosts, ``/audit``
shows each host's newest entries with a row of buttons per host; a tap turns the message
into that host's page.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.fleet import GONE_HOST, Fleet
from bot.formatting import host_header, reply_text
from bot.people import display_name
from executor.client import ExecutorUnreachable

log = logging.getLogger("wingman.bot")


class AuditPage(CallbackData, prefix="au"):
    """``au:o:1234:10:nas``: the 10 entries older than entry 1234 (``n``: newer than), on host nas."""

    way: str  # "o": older than seq, "n": newer than seq
    seq: int
    n: int
    host: str = ""  # empty: the only executor


def _buttons(result: dict[str, Any], host: str, suffix: str = "") -> list[InlineKeyboardButton]:
    entries = result.get("entries") or []
    n = int(result.get("n") or len(entries) or 10)
    buttons = []
    if entries and result.get("older"):
        data = AuditPage(way="o", seq=int(entries[0]["seq"]), n=n, host=host).pack()
        buttons.append(InlineKeyboardButton(text=f"◀ Older{suffix}", callback_data=data))
    if entries and result.get("newer"):
        data = AuditPage(way="n", seq=int(entries[-1]["seq"]), n=n, host=host).pack()
        buttons.append(InlineKeyboardButton(text=f"Newer ▶{suffix}", callback_data=data))
    return buttons


def audit_keyboard(result: dict[str, Any], host: str = "") -> InlineKeyboardMarkup | None:
    """Older/Newer under a page of ``/audit``, for the sides where there is more."""
    buttons = _buttons(result, host)
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


def hosts_keyboard(pages: list[tuple[str, dict[str, Any]]]) -> InlineKeyboardMarkup | None:
    """One row per host under ``/audit`` from every host: ``◀ Older · nas``."""
    rows = [row for label, result in pages if (row := _buttons(result, label, f" · {label}"))]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def build_router() -> Router:
    router = Router(name="audit-pages")

    @router.callback_query(AuditPage.filter())
    async def on_page(query: CallbackQuery, callback_data: AuditPage, fleet: Fleet) -> None:
        message = query.message
        if callback_data.way not in ("o", "n") or not isinstance(message, Message):
            await query.answer("This button is not understood.", show_alert=True)
            return
        host = fleet.of_button(callback_data.host)
        if host is None:
            await query.answer(GONE_HOST, show_alert=True)
            return
        args = {"n": callback_data.n, "before" if callback_data.way == "o" else "after": callback_data.seq}
        chat = {"chat_id": message.chat.id, "private": message.chat.type == "private", "message_id": message.message_id}
        try:
            reply = await fleet.call(host, query.from_user.id, "audit", args, chat, display_name=display_name(query.from_user))
        except ExecutorUnreachable as exc:
            log.error("%s", exc)
            await query.answer("The executor is not answering; nothing was done. Try again in a minute.", show_alert=True)
            return
        if reply.status != "done":
            await query.answer(reply.reason[:190], show_alert=True)
            return
        label = host.label if fleet.many else None
        text = host_header(label) + reply_text("audit", reply.status, reply.reason, reply.result, label)
        try:
            await message.edit_text(text, reply_markup=audit_keyboard(reply.result, label or ""))
        except TelegramBadRequest as exc:
            if "not modified" not in str(exc):
                raise
        await query.answer()

    return router
