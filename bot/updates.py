"""Image updates in the chat: the one message listing them, and its Deploy buttons.

Two ways in, one message: ``/updates`` asks every executor at once (the ``updates``
action, tier 0, which checks the registries there and then), and each executor's
scheduled check arrives as ONE outbox event of kind ``updates`` (shown by the
notification pump, ``bot.notifications``, through :func:`updates_message`). Both carry
the same payload::

    {"updates": [{"id", "target", "image", "current_tag", "new_tag", "current_digest",
                  "new_digest", "reference", "created"}, ...],
     "problems": ["<registry>: <one line>", ...], "checked": <containers>}

The message lists each update (the container, its host when the bot serves several, the
current and the new tag, short digests, how old the new image is) and the registries that
could not be asked, one line each; every update has a **Deploy** button.

A tap is an ordinary request by the person who tapped, decided by the executor like any
other: the bot asks the update's executor for that one update by id (the button carries
only the host and the update id, so it fits Telegram's 64 bytes), then sends a plain
``deploy`` of the update's container with the update's ``reference``
(``repository:tag@sha256:…``), which binds the request to exactly the announced digest.
It waits for approval as any deploy does; an approver who tapped still needs another
approver. The bot decides nothing here: who may deploy, and whether the update still
stands, is the executor's word.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.fleet import GONE_HOST, Fleet
from bot.formatting import esc, fits, reply_text, short_digest
from bot.handlers import UNREACHABLE, chat_context, send_text
from bot.people import display_name
from executor.client import ExecutorUnreachable, Reply

log = logging.getLogger("wingman.bot")

UPDATE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
CHECK_TIMEOUT = 50.0  # seconds one host's check may take (50 containers took about 5 s, README)
BUTTONS_MAX = 50  # Deploy buttons in one message (Telegram takes up to 100 in a keyboard)
Clock = Callable[[], float]


class DeployButton(CallbackData, prefix="up"):
    """``up:<update id>:<host>`` (host empty with one executor): at most 64 bytes with a
    32-character id and a 20-character host name."""

    id: str
    host: str = ""


def age(created: object, now: float) -> str:
    """How old the new image is: ``built 3 days ago``; "" when the registry did not say."""
    if not isinstance(created, (int, float)) or isinstance(created, bool) or created <= 0:
        return ""
    seconds = max(now - float(created), 0.0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"built {count} {unit}{'s' if count != 1 else ''} ago"
    return "built just now"


def update_line(update: dict[str, Any], *, host: str | None, now: float) -> str:
    """``web@home · 1.2.3 → 1.2.4 · sha256:3f2a…c91b → sha256:77e0…01ad · built 2 days ago``, in HTML."""
    target = esc(update.get("target"))
    where = f"@{esc(host)}" if host else ""
    current, new = update.get("current_tag"), update.get("new_tag")
    tags = f"{esc(current)} → <b>{esc(new)}</b>" if current != new else f"{esc(new)} (new image)"
    digests = f"{esc(short_digest(update.get('current_digest')))} → {esc(short_digest(update.get('new_digest')))}"
    built = age(update.get("created"), now)
    return f"<b>{target}</b>{where} · {tags} · <code>{digests}</code>" + (f" · {built}" if built else "")


def button_text(update: dict[str, Any], host: str | None) -> str:
    where = f"@{host}" if host else ""
    text = f"🚀 Deploy {update.get('target')}{where} {update.get('new_tag')}"
    return text if len(text) <= 60 else text[:59] + "…"


def usable(update: object) -> bool:
    """An update with an id a button can carry and a target to deploy (anything else is only listed)."""
    return isinstance(update, dict) and isinstance(update.get("id"), str) and bool(UPDATE_ID.fullmatch(update["id"]))


def updates_message(
    results: list[tuple[str | None, dict[str, Any] | None, str | None]], *, now: float, head: str | None = None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The one message: ``results`` holds, per host, (host shown or None, its payload, or
    why it did not answer). Returns the HTML text and the Deploy buttons; when the list
    would not fit one message, the rest is counted ("… and N more")."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    problems: list[str] = []
    checked = 0
    for host, payload, down in results:
        if payload is None:
            problems.append(f"{esc(host or 'the executor')}: {esc(down or 'not answering')}")
            continue
        checked += _whole(payload.get("checked"))
        for problem in payload.get("problems") or []:
            problems.append((f"{esc(host)}: " if host else "") + esc(" ".join(str(problem).split())[:200]))
        found += [(host, u) for u in payload.get("updates") or [] if isinstance(u, dict)]
    total = len(found)
    head = head if head is not None else ""
    if not head and total:
        head = f"📦 <b>{total} update{'s' if total != 1 else ''} available</b> ({checked} containers checked)"
    elif not head:
        head = f"✅ No updates: {checked} containers checked, each runs its newest image."
    tail = [f"⚠️ {p}" for p in problems[:20]]
    lines: list[str] = []
    rows: list[list[InlineKeyboardButton]] = []
    for number, (host, update) in enumerate(found, 1):
        line = f"{number}. {update_line(update, host=host, now=now)}"
        more = "… and 999 more: deploy some, then send /updates again."
        if len(rows) >= BUTTONS_MAX or not fits("\n".join([head, *lines, line, more, *tail])):
            break
        lines.append(line)
        if usable(update):
            data = DeployButton(id=update["id"], host=host or "").pack()
            rows.append([InlineKeyboardButton(text=button_text(update, host), callback_data=data)])
    if total > len(lines):
        lines.append(f"… and {total - len(lines)} more: deploy some, then send /updates again.")
    text = "\n".join([head, *lines, *tail])
    return text, (InlineKeyboardMarkup(inline_keyboard=rows) if rows else None)


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def one_update(result: dict[str, Any], update_id: str) -> dict[str, Any] | None:
    """The update ``update_id`` from the ``updates`` action's answer (``update`` or a one-item ``updates``)."""
    candidates = [result.get("update"), *(result.get("updates") or [])]
    return next((u for u in candidates if isinstance(u, dict) and u.get("id") == update_id), None)


def build_updates_router(clock: Clock = time.time) -> Router:
    """``/updates`` and the Deploy buttons; included before the commands router."""
    router = Router(name="updates")

    @router.message(Command("updates", ignore_case=True))
    async def on_updates(message: Message, command: CommandObject, fleet: Fleet, bot: Bot) -> None:
        if message.from_user is None:
            return
        if command.args and command.args.strip():
            await message.reply("Usage: /updates — lists the image updates of every container you may see")
            return
        user, chat = message.from_user.id, chat_context(message)
        shown_as = display_name(message.from_user)
        hosts, silent = fleet.hosts, {}
        if fleet.many:
            # A silent host is found out within the fleet's few seconds; those that answer
            # get the longer time a check of their registries may take.
            greeted = await fleet.each(fleet.hello)
            silent = {id(a.host): a.down.line for a in greeted if a.down is not None}
            hosts = [a.host for a in greeted if a.down is None]
        answers = {
            id(a.host): a
            for a in await fleet.each(
                lambda host: host.client.call(user, "updates", {}, chat, display_name=shown_as), hosts, timeout=CHECK_TIMEOUT
            )
        }  # fmt: skip
        results: list[tuple[str | None, dict[str, Any] | None, str | None]] = []
        for host in fleet.hosts:
            shown = host.label if fleet.many else None
            answer = answers.get(id(host))
            if answer is None or answer.down is not None or answer.value is None:
                down = silent.get(id(host)) or (answer.down.line if answer is not None and answer.down else "not answering")
                results.append((host.label, None, down))
            elif answer.value.status != "done":
                results.append((host.label, None, answer.value.reason))
            else:
                results.append((shown, answer.value.result, None))
        if not fleet.many and results[0][1] is None:
            only = answers.get(id(fleet.hosts[0]))
            refused = only is not None and only.value is not None
            await message.reply(f"❌ {esc(results[0][2])}" if refused else UNREACHABLE)
            return
        text, markup = updates_message(results, now=clock())
        await send_text(bot, message.chat.id, text, name="updates", reply_to=message.message_id, reply_markup=markup)

    @router.callback_query(DeployButton.filter())
    async def on_deploy(query: CallbackQuery, callback_data: DeployButton, fleet: Fleet, bot: Bot) -> None:
        host = fleet.of_button(callback_data.host)
        if host is None:
            await query.answer(GONE_HOST, show_alert=True)
            return
        message = query.message if isinstance(query.message, Message) else None
        chat: dict[str, Any] = {"chat_id": message.chat.id, "private": message.chat.type == "private"} if message else {}
        try:
            shown_as = display_name(query.from_user)
            found = await fleet.call(host, query.from_user.id, "updates", {"id": callback_data.id}, chat, display_name=shown_as)
            update = one_update(found.result, callback_data.id) if found.status == "done" else None
            if found.status != "done":
                await query.answer(found.reason[:190], show_alert=True)
                return
            if update is None or found.result.get("state") not in (None, "pending"):
                # Deployed, superseded by a newer image, or no longer watched since it was listed.
                await query.answer("This update is no longer pending; send /updates for the current ones.", show_alert=True)
                return
            args = {"target": update.get("target"), "image": update.get("reference")}
            reply: Reply = await fleet.call(host, query.from_user.id, "deploy", args, chat, display_name=shown_as)
        except ExecutorUnreachable as exc:
            log.error("%s", exc)
            await query.answer("The executor is not answering; nothing was done. Try again in a minute.", show_alert=True)
            return
        if reply.status != "pending" and reply.status != "done":
            await query.answer(reply.reason[:190], show_alert=True)
            return
        approval = reply.result.get("approval") or {}
        await query.answer(f"Deploy requested: request {approval.get('id', '?')} waits for approval." if reply.status == "pending" else "Done.")
        if message is not None:
            text = reply_text("deploy", reply.status, reply.reason, reply.result)
            await send_text(bot, message.chat.id, text, name="deploy", reply_to=message.message_id)

    return router


def notification(payload: dict[str, Any], host: str | None, *, now: float) -> tuple[str, InlineKeyboardMarkup | None]:
    """A scheduled check's outbox event (kind ``updates``) as the one message."""
    return updates_message([(host, payload, None)], now=now)


def recall(pending: list[Any], host: str | None, *, now: float) -> tuple[str, InlineKeyboardMarkup | None]:
    """The weekly report's recall: updates announced and still not deployed, with their buttons."""
    count = sum(1 for u in pending if isinstance(u, dict))
    where = f" on {esc(host)}" if host else ""
    head = f"⏳ <b>{count} update{'s' if count != 1 else ''} announced and not deployed yet</b>{where}"
    return updates_message([(host, {"updates": pending, "problems": [], "checked": 0}, None)], now=now, head=head)
