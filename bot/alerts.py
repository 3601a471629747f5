"""Alert messages and their buttons: an incident shown, and the fix one tap away.

The executor sends an ``alert`` notification each time an incident message changes (see
``executor.alerts``); the pump (``bot.notifications``) posts the first and edits the
message in place for the rest, as it does for approvals. This module only renders: the
text (escaped, log tails included, recovered incidents marked) and the buttons.

A button is nothing but the command it stands for: **Logs** is ``/logs <name>``,
**Restart** ``/restart <name>``, **Roll back** ``/rollback <name>``, sent as an ordinary
signed request by the person who tapped, so their role, the action's tier, the approval
rules and the audit apply exactly as if they had typed it. The callback data carries the
container's name and the host (empty for a single executor), at most 64 bytes: a button
whose data would not fit is left out (the command still works typed).
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup

from bot.fleet import GONE_HOST, Fleet
from bot.formatting import code, esc, reply_text
from bot.handlers import send_text
from bot.people import display_name
from executor.client import ExecutorUnreachable

log = logging.getLogger("wingman.bot")

CALLBACK_LIMIT = 64  # bytes, Telegram's limit on callback data
LOG_LINES = 30  # what the Logs button asks for
LOG_LINE_CHARS = 200  # a log line in the alert itself is cut here
MAX_BUTTON_ROWS = 8  # one row per broken container; a storm's message stays readable
ACTIONS = {"logs": "logs", "restart": "restart", "rollback": "rollback"}


class AlertButton(CallbackData, prefix="al"):
    """A tap on an alert: the command and its container, and its host when the bot serves
    several executors (``al:<op>:<name>`` with one, ``al:<op>:<name>:<host>`` with many)."""

    op: str  # logs | restart | rollback
    target: str
    host: str = ""

    def pack(self) -> str:
        packed = super().pack()
        return packed if self.host else packed.removesuffix(self.__separator__)

    @classmethod
    def unpack(cls, value: str) -> AlertButton:
        if value.count(cls.__separator__) == 2:  # no host: the only executor
            value += cls.__separator__
        return super().unpack(value)


def shown_name(container: str, host: str | None) -> str:
    return f"{container}@{host}" if host else container


def alert_text(alert: dict[str, Any], *, host: str | None = None) -> str:
    """The whole message, re-rendered from the incidents' state at every change."""
    blocks = []
    for incident in alert.get("incidents") or []:
        headline = str(incident.get("headline") or incident.get("container"))
        container = str(incident.get("container", ""))
        if host and headline.startswith(container):
            headline = shown_name(container, host) + headline[len(container):]
        if incident.get("state") == "closed":
            mark = "✅" if not incident.get("removed") else "🗑️"
            suffix = " · the container was removed" if incident.get("removed") else ""
            blocks.append(f"{mark} {esc(headline)}{esc(suffix)}")
            continue
        lines = [f"🚨 <b>{esc(headline)}</b>"]
        logs = [str(line)[:LOG_LINE_CHARS] for line in incident.get("logs") or []]
        if logs:
            lines.append("<pre>" + esc("\n".join(logs)) + "</pre>")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) or "🚨 alert"


def alert_keyboard(alert: dict[str, Any], *, host: str | None = None) -> InlineKeyboardMarkup | None:
    """Logs, Restart (and Roll back when a previous image is recorded) for each broken container."""
    rows: list[list[InlineKeyboardButton]] = []
    broken = [i for i in alert.get("incidents") or [] if i.get("state") != "closed"]
    for incident in broken[:MAX_BUTTON_ROWS]:
        name = str(incident.get("container", ""))
        ops = [("logs", "📜 Logs"), ("restart", "🔄 Restart")]
        if incident.get("rollback"):
            ops.append(("rollback", "⏪ Roll back"))
        row = []
        for op, label in ops:
            try:
                data = AlertButton(op=op, target=name, host=host or "").pack()
            except ValueError:  # aiogram refuses data over Telegram's 64 bytes
                continue
            if len(data.encode()) > CALLBACK_LIMIT:
                continue
            row.append(InlineKeyboardButton(text=label if len(broken) == 1 else f"{label} {name}", callback_data=data))
        if row:
            rows.append(row)
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def build_router() -> Router:
    router = Router(name="alerts")

    @router.callback_query(AlertButton.filter())
    async def on_alert_button(query: CallbackQuery, callback_data: AlertButton, fleet: Fleet, bot: Bot) -> None:
        action = ACTIONS.get(callback_data.op)
        if action is None:
            await query.answer("This button is not understood.", show_alert=True)
            return
        host = fleet.of_button(callback_data.host)
        if host is None:
            await query.answer(GONE_HOST, show_alert=True)
            return
        args: dict[str, Any] = {"target": callback_data.target}
        if action == "logs":
            args["lines"] = LOG_LINES
        message = query.message
        chat_id = message.chat.id if message is not None else None
        chat = {"chat_id": chat_id, "private": False, **({"message_id": message.message_id} if message is not None else {})}
        try:
            shown_as = display_name(query.from_user)
            reply = await fleet.call(host, query.from_user.id, action, args, chat, display_name=shown_as)
        except ExecutorUnreachable as exc:
            log.error("%s", exc)
            await query.answer("The executor is not answering; nothing was done. Try again in a minute.", show_alert=True)
            return
        if reply.status not in ("done", "pending"):
            await query.answer(reply.reason[:190], show_alert=True)
            return
        await query.answer("Asked the approvers." if reply.status == "pending" else "Done.")
        if chat_id is not None:
            # Said in the chat, under the alert, as the typed command would have been answered.
            who = f"{esc(shown_as or query.from_user.first_name)} ({code('tg:' + str(query.from_user.id))}): "
            text = who + reply_text(action, reply.status, reply.reason, reply.result, callback_data.host or None)
            await send_text(bot, chat_id, text, name=f"{action}-{callback_data.target}", reply_to=message.message_id if message else None)

    return router
