"""Chat commands and approval buttons: each becomes one signed request to the executor.

The bot decides nothing: it parses the command, asks the executor, and shows the answer.
Who may do what, and whether a tap counts, is the executor's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    TelegramObject,
)

from bot import audit_pages
from bot.formatting import as_plain, code, esc, fits, reply_text
from bot.fleet import GONE_HOST, Fleet, Host
from bot.log_files import send_log_file
from bot.people import display_name
from bot.formatting import HostReply, grouped_text, host_header, hosts_text, on_host
from bot.routing import SLOW, Route, UnknownHost, on, route
from executor.client import ExecutorUnreachable, Reply

log = logging.getLogger("wingman.bot")

UNREACHABLE = "⚠️ The executor is not answering right now; nothing was done. Try again in a minute."
# The bot keeps no state: the request a one-time code is for is read back from the prompt
# the code replies to, so a reply still works after a restart. Anchored at the start, before
# the approver's name, which a user chooses and could make look like another request's id.
CODE_PROMPT = re.compile(r"\A🔑 One-time code needed for request ([A-Za-z0-9]{1,32}(?:@[a-z0-9-]{1,20})?),")
CODE_USAGE = "Usage: /code <request id> <six digits> — the code your authenticator app shows for Wingman"


class ApprovalButton(CallbackData, prefix="ap"):
    """Carries only the approval, its host and the tap's meaning: the executor decides who may act.

    ``ap:<op>:<id>`` with one executor (as before there were many, so old buttons still
    work), ``ap:<op>:<id>:<host>`` with many; at most 64 bytes (Telegram's limit): host
    names have at most 20 characters, approval ids 32 (``tests/bot/test_fleet_units.py``).
    """

    op: str  # "approve", "reject" or "cancel"
    id: str
    host: str = ""

    def pack(self) -> str:
        packed = super().pack()
        return packed if self.host else packed.removesuffix(self.__separator__)

    @classmethod
    def unpack(cls, value: str) -> ApprovalButton:
        if value.count(cls.__separator__) == 2:  # no host: the only executor
            value += cls.__separator__
        return super().unpack(value)


def approval_keyboard(approval_id: str, *, for_requester: bool, host: str | None = None) -> InlineKeyboardMarkup:
    where = host or ""
    if for_requester:
        buttons = [InlineKeyboardButton(text="Cancel request", callback_data=ApprovalButton(op="cancel", id=approval_id, host=where).pack())]
    else:
        buttons = [
            InlineKeyboardButton(text="✅ Approve", callback_data=ApprovalButton(op="approve", id=approval_id, host=where).pack()),
            InlineKeyboardButton(text="🚫 Reject", callback_data=ApprovalButton(op="reject", id=approval_id, host=where).pack()),
        ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


# -- parsing ------------------------------------------------------------------------------


class Usage(Exception):
    """The command's arguments do not fit; ``str()`` is the usage line."""


@dataclass(frozen=True, slots=True)
class Parsed:
    action: str
    args: dict[str, Any]
    host: str | None = None  # named with `name@host`; None: the hosts are asked (see bot.routing)


def split_host(word: str) -> tuple[str, str | None]:
    """``web@nas`` → ``("web", "nas")``; ``web`` → ``("web", None)``."""
    name, at, host = word.rpartition("@")
    if not at:
        return word, None
    if not name or not host:
        raise Usage(f"{word!r}: write name@host, e.g. web@nas (/hosts lists the hosts)")
    return name, host


def parse(command: str, text: str | None) -> Parsed:
    """``/deploy web@nas nginx:1.27`` → ``Parsed("deploy", {"target": "web", "image": "nginx:1.27"}, "nas")``."""
    parsed = _parse(command, text)
    for argument in ("target", "id"):
        value = parsed.args.get(argument)
        if isinstance(value, str) and "@" in value:
            name, host = split_host(value)
            if argument == "target" and parsed.action.startswith("vm."):
                return Parsed(parsed.action, {**parsed.args, argument: _vmid(name)}, host)
            return Parsed(parsed.action, {**parsed.args, argument: name}, host)
    return parsed


def _parse(command: str, text: str | None) -> Parsed:
    words = (text or "").split()

    def need(count: int, usage: str, optional: int = 0) -> list[str]:
        if not count <= len(words) <= count + optional:
            raise Usage(f"Usage: {usage}")
        return words

    if command in ("help", "whoami", "pending", "verify", "hosts"):
        need(0, f"/{command}")
        return Parsed(command, {})
    if command == "start" and not words:
        return Parsed("help", {})  # Telegram's own /start, when someone first opens the chat
    if command == "status":
        need(0, "/status [name|project]", 1)
        return Parsed("status", {"target": words[0]} if words else {})
    if command == "restart":
        need(1, "/restart <name|project>")
        return Parsed(command, {"target": words[0]})
    if command == "update":
        need(1, "/update <project>")
        return Parsed(command, {"target": words[0]})
    if command in ("start", "stop", "rollback"):
        need(1, f"/{command} <name>")
        return Parsed(command, {"target": words[0]})
    if command == "logs":
        need(1, "/logs <name> [lines]", 1)
        args: dict[str, Any] = {"target": words[0]}
        if len(words) == 2:
            if not words[1].isdigit():
                raise Usage("Usage: /logs <name> [lines] — lines is a number, e.g. /logs web 100")
            args["lines"] = int(words[1])
        return Parsed("logs", args)
    if command == "deploy":
        need(2, "/deploy <name> <image:tag>")
        return Parsed("deploy", {"target": words[0], "image": words[1]})
    if command == "audit":
        need(0, "/audit [n]", 1)
        if words and not words[0].isdigit():
            raise Usage("Usage: /audit [n] — n is a number, e.g. /audit 20")
        return Parsed("audit", {"n": int(words[0])} if words else {})
    if command == "cancel":
        need(1, "/cancel <request id>")
        return Parsed("approval.cancel", {"id": words[0]})
    if command == "code":
        need(2, CODE_USAGE.removeprefix("Usage: "))
        return code_vote(words[0], words[1])
    if command == "vm":
        return _parse_vm(words)
    raise Usage("Unknown command; /help lists what you may do.")


def code_vote(approval_id: str, digits: str) -> Parsed:
    """An approval vote carrying the approver's one-time code (spaces inside the code are
    dropped); ``approval_id`` may name its host (``abc123@nas``)."""
    digits = "".join(digits.split())
    if not re.fullmatch(r"[0-9]{6}", digits):
        raise Usage("A one-time code is the six digits your authenticator app shows for Wingman, e.g. 123456.")
    approval_id, host = split_host(approval_id)
    return Parsed("approval.approve", {"id": approval_id, "code": digits}, host)


def _vmid(word: str) -> int | str:
    return int(word) if word.isdigit() else word


def _parse_vm(words: list[str]) -> Parsed:
    usage = "Usage: /vm status [vmid] | start|shutdown|reboot <vmid> | snapshot <vmid> [name] | rollback <vmid> <snapshot>"
    if not words:
        raise Usage(usage)
    sub, rest = words[0], words[1:]
    if sub == "status" and len(rest) <= 1:
        return Parsed("vm.status", {"target": _vmid(rest[0])} if rest else {})
    if sub in ("start", "shutdown", "reboot") and len(rest) == 1:
        return Parsed(f"vm.{sub}", {"target": _vmid(rest[0])})
    if sub == "snapshot" and len(rest) in (1, 2):
        return Parsed("vm.snapshot", {"target": _vmid(rest[0]), **({"name": rest[1]} if len(rest) == 2 else {})})
    if sub == "rollback" and len(rest) == 2:
        return Parsed("vm.rollback", {"target": _vmid(rest[0]), "snapshot": rest[1]})
    raise Usage(usage)


COMMANDS = (
    "help", "whoami", "status", "pending", "logs", "restart", "start", "stop", "deploy", "rollback",
    "audit", "verify", "cancel", "code", "vm", "hosts", "update",
)  # fmt: skip


class HostChoice(CallbackData, prefix="on"):
    """A host picked for a command whose target is on several: the command itself is read
    back from the message the question replies to (the bot keeps no state)."""

    host: str


def host_keyboard(hosts: list[Host]) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(text=h.label, callback_data=HostChoice(host=h.label).pack()) for h in hosts]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


def command_of(text: str) -> tuple[str, str]:
    """``/deploy@wingman_bot web nginx`` → ``("deploy", "web nginx")``."""
    first, _, rest = text.strip().partition(" ")
    return first.lstrip("/").partition("@")[0].lower(), rest


# -- middlewares --------------------------------------------------------------------------


class ChatGate(BaseMiddleware):
    """Commands count in the team chat and in private chats; other groups are ignored."""

    def __init__(self, team_chat: int | None) -> None:
        self.team_chat = team_chat

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]], event: TelegramObject, data: dict[str, Any]) -> Any:
        message = event.message if isinstance(event, CallbackQuery) else event
        chat = getattr(message, "chat", None)
        if chat is None or not (chat.type == "private" or chat.id == self.team_chat):
            return None
        return await handler(event, data)


# -- handlers -----------------------------------------------------------------------------


def chat_context(message: Message) -> dict[str, Any]:
    return {"chat_id": message.chat.id, "private": message.chat.type == "private", "message_id": message.message_id}


@dataclass(frozen=True, slots=True)
class Shown:
    """A command's answer as the chat shows it: text (with its buttons, if any), or a
    ``logs`` result too long for one message, sent as a file."""

    text: str
    markup: InlineKeyboardMarkup | None = None
    log_file: dict[str, Any] | None = None


async def show(bot: Bot, chat_id: int, shown: Shown, *, name: str, reply_to: int | None) -> Message:
    if shown.log_file is not None:
        return await send_log_file(bot, chat_id, shown.log_file, reply_to=reply_to)
    return await send_text(bot, chat_id, shown.text, name=name, reply_to=reply_to, reply_markup=shown.markup)


async def send_text(
    bot: Bot, chat_id: int, text: str, *, name: str = "reply", reply_to: int | None = None, **kwargs: Any
) -> Message:
    """Send ``text`` (as a reply to ``reply_to``); too long for one message, it goes as a document."""
    if reply_to is not None:
        kwargs["reply_parameters"] = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
    if fits(text):
        return await bot.send_message(chat_id, text, **kwargs)
    document = BufferedInputFile(as_plain(text).encode("utf-8"), filename=f"{name}.txt")
    caption = f"{esc(name)}: too long for a message, attached as a file"
    return await bot.send_document(chat_id, document, caption=caption, **kwargs)


def build_router() -> Router:
    router = Router(name="commands")

    @router.message(Command(*COMMANDS, ignore_case=True))
    async def on_command(message: Message, command: CommandObject, fleet: Fleet, bot: Bot) -> None:
        if message.from_user is None:
            return
        try:
            parsed = parse(command.command.lower(), command.args)
        except Usage as exc:
            await message.reply(esc(str(exc)))
            return
        await ask(message, parsed, fleet, bot)

    @router.message(F.text, F.reply_to_message.text.regexp(CODE_PROMPT))
    async def on_code(message: Message, fleet: Fleet, bot: Bot) -> None:
        """The digits an approver typed in reply to the bot's prompt for a one-time code."""
        prompt = message.reply_to_message
        if message.from_user is None or prompt is None or prompt.from_user is None or prompt.from_user.id != bot.id:
            return
        found = CODE_PROMPT.match(prompt.text or "")
        assert found is not None  # the filter matched it
        try:
            parsed = code_vote(found.group(1), message.text or "")
        except Usage as exc:
            await message.reply(esc(f"{exc} Reply to my message again."))
            return
        await ask(message, parsed, fleet, bot)

    async def ask(message: Message, parsed: Parsed, fleet: Fleet, bot: Bot) -> None:
        user = message.from_user
        assert user is not None

        async def answer(text: str, **kwargs: Any) -> Message:
            name = f"{parsed.action}-{parsed.args.get('target', '')}".strip("-").replace("/", "_")
            return await send_text(bot, message.chat.id, text, name=name, reply_to=message.message_id, **kwargs)

        if parsed.action == "hosts":
            await answer(await hosts_answer(fleet, user.id, chat_context(message)))
            return
        try:
            where = await route(fleet, user.id, parsed.action, parsed.args, parsed.host, chat_context(message))
        except UnknownHost as exc:
            await answer(esc(str(exc)))
            return
        if where.refusal is not None:
            await answer(f"❌ {esc(where.refusal)}")
            return
        if where.choices:
            labels = [h.label for h in where.choices]
            names = ", ".join(labels[:-1]) + " and " + labels[-1]
            await answer(f"{code(where.target)} is on {esc(names)}: which one?", reply_markup=host_keyboard(where.choices))
            return
        shown = await run(fleet, user.id, where, chat_context(message), display_name(user))
        name = f"{parsed.action}-{parsed.args.get('target', '')}".strip("-").replace("/", "_")
        await show(bot, message.chat.id, shown, name=name, reply_to=message.message_id)

    @router.callback_query(HostChoice.filter())
    async def on_choice(query: CallbackQuery, callback_data: HostChoice, fleet: Fleet, bot: Bot) -> None:
        """A host picked for a command whose target is on several hosts."""
        question = query.message
        original = question.reply_to_message if isinstance(question, Message) else None
        if original is None or not original.text or original.from_user is None:
            await query.answer("I cannot read the command this was for; send it again as name@host.", show_alert=True)
            return
        if original.from_user.id != query.from_user.id:
            await query.answer("Only the person who sent the command can choose.", show_alert=True)
            return
        host = fleet.get(callback_data.host)
        if host is None:
            await query.answer(GONE_HOST, show_alert=True)
            return
        try:
            parsed = parse(*command_of(original.text))
        except Usage as exc:
            await query.answer(str(exc)[:190], show_alert=True)
            return
        await query.answer(f"On {host.label}.")
        assert isinstance(question, Message)
        with contextlib.suppress(TelegramBadRequest):  # already edited by a quicker second tap
            await bot.edit_message_text(
                text=f"{question.html_text} → <b>{esc(host.label)}</b>", chat_id=question.chat.id, message_id=question.message_id
            )
        where = Route(parsed.action, parsed.args, [host])
        shown = await run(fleet, query.from_user.id, where, chat_context(original), display_name(query.from_user))
        await show(bot, original.chat.id, shown, name=parsed.action, reply_to=original.message_id)

    @router.callback_query(ApprovalButton.filter())
    async def on_button(query: CallbackQuery, callback_data: ApprovalButton, fleet: Fleet, bot: Bot) -> None:
        action = {"approve": "approval.approve", "reject": "approval.reject", "cancel": "approval.cancel"}.get(callback_data.op)
        if action is None:
            await query.answer("This button is not understood.", show_alert=True)
            return
        chat = {"chat_id": query.message.chat.id if query.message else None, "private": False}
        host = fleet.of_button(callback_data.host)
        if host is None:  # a host no longer served, or a button from before there were several
            await query.answer(GONE_HOST + " See /pending.", show_alert=True)
            return
        try:
            reply = await fleet.call(
                host, query.from_user.id, action, {"id": callback_data.id}, chat, display_name=display_name(query.from_user)
            )
        except ExecutorUnreachable as exc:
            log.error("%s", exc)
            who = f"{host.label} is" if fleet.many else "The executor is"
            await query.answer(f"{who} not answering; nothing was done. Try again in a minute.", show_alert=True)
            return
        if reply.status == "denied" and reply.result.get("code_required") and query.message is not None:
            # A vote that needs the approver's one-time code: ask for it, in the chat of the tap.
            await query.answer("This one needs your one-time code: reply to my message with the six digits.")
            await bot.send_message(
                query.message.chat.id,
                code_prompt(query.from_user.id, query.from_user.first_name, on_host(callback_data.id, callback_data.host or None)),
                reply_markup=ForceReply(selective=True, input_field_placeholder="six digits"),
            )  # fmt: skip
            return
        refused = reply.status not in ("done", "pending")
        text = reply.reason[:190] if refused else _tap_answer(callback_data.op, reply.reason)
        await query.answer(text, show_alert=refused)

    router.include_router(audit_pages.build_router())

    @router.message(F.text.startswith("/"))
    async def on_unknown(message: Message) -> None:
        await message.reply("Unknown command; /help lists what you may do.")

    return router


def code_prompt(user_id: int, name: str, approval_id: str) -> str:
    """Asks one approver for their code; the text names the request (see CODE_PROMPT)."""
    mention = f'<a href="tg://user?id={user_id}">{esc(name)}</a>'
    return (
        f"🔑 One-time code needed for request {code(approval_id)}, {mention}: reply to this message with "
        f"the six digits your authenticator app shows for Wingman (or send /code {esc(approval_id)} &lt;digits&gt;)."
    )


def _tap_answer(op: str, reason: str) -> str:
    if op == "approve":
        return "Approved: running now." if reason.startswith("approved") else reason[:190]
    return {"reject": "Rejected.", "cancel": "Cancelled."}.get(op, reason[:190])


async def run(fleet: Fleet, user_id: int, where: Route, chat: dict[str, Any], shown_as: str | None = None) -> Shown:
    """Send a routed command to its host (or every host at once) and word the answer;
    ``shown_as`` is how the user appears in the chat (``bot.people.display_name``)."""
    if where.everywhere:
        timeout = fleet.request_timeout if where.action in SLOW else None
        answers = await fleet.call_each(user_id, where.action, where.args, chat, timeout=timeout, display_name=shown_as)
        replies = [a.value for a in answers if a.value is not None]
        if replies and all(r.status in ("denied", "refused") for r in replies) and len({r.reason for r in replies}) == 1:
            return Shown(f"❌ {esc(replies[0].reason)}")  # e.g. a stranger: one short refusal, no list of hosts
        text = grouped_text(where.action, [_host_reply(a.host, a.value, a.down.line if a.down else None) for a in answers])
        markup = None
        if where.action == "audit":  # a row of page buttons per host that answered
            markup = audit_pages.hosts_keyboard([(a.host.label, a.value.result) for a in answers if a.value is not None and a.value.status == "done"])
        return Shown(text, markup)
    [host] = where.hosts
    label = host.label if fleet.many else None
    try:
        reply = await fleet.call(host, user_id, where.action, where.args, chat, display_name=shown_as)
    except ExecutorUnreachable as exc:
        log.error("%s", exc)
        return Shown(UNREACHABLE if label is None else f"⚠️ {esc(label)} is not answering right now; nothing was done. Try again in a minute.")
    text = reply_text(where.action, reply.status, reply.reason, reply.result, label)
    text = text if label is None or reply.status == "pending" else host_header(label) + text
    if reply.status == "done" and where.action == "logs" and not fits(text):
        return Shown(text, log_file=reply.result)
    if reply.status == "done" and where.action == "audit":
        return Shown(text, audit_pages.audit_keyboard(reply.result, label or ""))
    return Shown(text)


def _host_reply(host: Host, reply: Reply | None, down: str | None) -> HostReply:
    if reply is None:
        return HostReply(host.label, down=down or "not answering")
    return HostReply(host.label, reply.status, reply.reason, reply.result)


async def hosts_answer(fleet: Fleet, user_id: int, chat: dict[str, Any]) -> str:
    """``/hosts``: each executor, its version, whether it answers. Only for someone one of
    the hosts knows (each host's ``whoami`` says), so a stranger learns nothing of them."""
    hellos, whoamis = await asyncio.gather(fleet.each(fleet.hello), fleet.call_each(user_id, "whoami", {}, chat))
    known = [a for a in whoamis if a.value is not None and a.value.status == "done" and a.value.result.get("role")]
    if not known:
        refused = next((a.value for a in whoamis if a.value is not None), None)
        if refused is None:
            return UNREACHABLE if not fleet.many else "⚠️ No executor is answering right now; nothing was done. Try again in a minute."
        return f"❌ {esc(refused.reason)}"
    return hosts_text([(a.host.label, a.host.name, a.value, a.down.line if a.down else None) for a in hellos])
