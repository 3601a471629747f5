"""Delivering the executor's notifications: post or edit, then acknowledge.

A background task long-polls the executor's outbox, shows each event in its chat (in id
order), and acknowledges it only after Telegram accepted it: nothing is lost across a
bot restart or Telegram errors. Events about one subject (an approval) edit the message
that already shows it, which the executor remembers for us. Progress edits are thinned
to about one a second per message; a final state is always shown.

During quiet hours (``WINGMAN_QUIET_HOURS``) informational events wait, unacknowledged,
and arrive as one message when the window ends; see ``bot.quiet`` for what waits and why
the outbox is where they wait.

Whatever goes wrong (the executor refuses the bot's key, is restarting, Telegram is down,
a bug), the pump backs off (1 s doubling to 60 s), logs one line when the trouble changes
rather than one per try, and carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNetworkError, TelegramRetryAfter, TelegramServerError

from bot.alerts import alert_keyboard, alert_text
from bot.formatting import approval_text, notice_text
from bot.handlers import approval_keyboard, send_text
from bot.pictures import WEEKLY_KIND, PictureBoard, send_weekly, weeks_of
from bot.quiet import Clock, Held, QuietHours, Waiting, digest_text
from bot.reports import REPORT_KINDS, ReportBoard
from bot.updates import notification as updates_notification
from bot.updates import recall as updates_recall
from executor.client import ExecutorClient, ExecutorUnreachable, OutboxRefused

log = logging.getLogger("wingman.bot")

EDIT_INTERVAL = 1.0
POLL_WAIT = 25.0
TRANSIENT = (TelegramRetryAfter, TelegramServerError, TelegramNetworkError)
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0

Sleep = Callable[[float], Awaitable[None]]


def backoff(failures: int) -> float:
    """The pause after ``failures`` polls in a row went wrong: 1, 2, 4, … s, at most 60 s.

    So a trouble that lasts (a wrong bot key costs one refused, audited request per poll)
    costs at most 7 polls in the first 63 s and then one a minute: at most 15 in ten
    minutes (README, "Notifications").
    """
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(failures - 1, 16))


def trouble(exc: BaseException) -> tuple[str, str]:
    """What went wrong, as (a key that stays the same while the trouble does, one line)."""
    if isinstance(exc, OutboxRefused):
        line = f"the executor answers {exc.status}: {exc.reason}"
        if exc.status == "refused":
            line += (
                " (is WINGMAN_BOT_KEY's public half among the executor's WINGMAN_TRUSTED_KEYS,"
                " and are both clocks right?)"
            )
        return f"{exc.status}:{exc.reason}", line
    if isinstance(exc, ExecutorUnreachable):
        return type(exc).__name__, str(exc)
    if isinstance(exc, TRANSIENT):
        return type(exc).__name__, f"Telegram is not taking messages: {' '.join(str(exc).split())[:200]}"
    return type(exc).__name__, f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _known(exc: BaseException) -> bool:
    return isinstance(exc, (OutboxRefused, ExecutorUnreachable, *TRANSIENT))


def _level(exc: BaseException) -> int:
    """Passing troubles warn; one that needs the operator (a refused key, a bug) is an error."""
    passing = isinstance(exc, (ExecutorUnreachable, *TRANSIENT)) or (isinstance(exc, OutboxRefused) and exc.status == "unavailable")
    return logging.WARNING if passing else logging.ERROR


class NotificationPump:
    """Polls, shows, acknowledges; whatever goes wrong, it backs off and tries again.

    ``sleep`` waits out a back-off pause (default: until the pause is over or the pump is
    stopped); the tests give one that only counts, so minutes of back-off take no time.
    """

    def __init__(
        self, bot: Bot, client: ExecutorClient, team_chat: int | None, *, sleep: Sleep | None = None, host: str | None = None,
        quiet: QuietHours | None = None, clock: Clock = time.time, poll_wait: float = POLL_WAIT,
        reports: ReportBoard | None = None, answered: Callable[[str | None], None] | None = None,
        pictures: PictureBoard | None = None, held: Held | None = None,
    ) -> None:  # fmt: skip
        self.bot = bot
        self.client = client
        self.host = host  # the executor's name, shown when the bot serves many (None: the only one)
        self.reports = reports  # with many hosts: one report message for all of them
        self.pictures = pictures  # with many hosts: one weekly picture for all of them
        self._answered = answered  # told None when the executor answers a poll, else why not
        self.team_chat = team_chat
        self._last_edit: dict[tuple[int, int], float] = {}
        self._stopping = asyncio.Event()
        self._sleep = sleep if sleep is not None else self._pause
        self.idle = True  # waiting on the executor, not half-way through showing a batch
        self.trouble: str | None = None  # what keeps notifications from flowing, in one line
        self.held = held if held is not None else Held(quiet, clock)  # shared by the bot's pumps
        self._clock = clock
        self._poll_wait = poll_wait
        self._after = 0  # the last event handled: while holding, polls ask for newer ones only

    async def run(self) -> None:
        failures = 0
        state: str | None = None  # the trouble logged last; one line per change, not per try
        while not self._stopping.is_set():
            try:
                self.idle = True
                # Polls skip held events (and only then: with nothing held, every poll
                # starts from the beginning, whatever became of the executor's ids).
                after = self._after if self.held.holding(self.host) else 0
                try:
                    events = await self.client.poll(wait=self.held.wait(self._poll_wait), after=after)
                except ExecutorUnreachable as exc:
                    if self._answered is not None:
                        self._answered(str(exc))
                    raise
                if self._answered is not None:
                    self._answered(None)
                self.idle = False
                if events:
                    await self.deliver(events)
                if self.held.due():
                    await self.release_held()
            except Exception as exc:  # whatever it is, the pump must outlive it
                self.idle = True
                failures += 1
                delay = backoff(failures)
                key, self.trouble = trouble(exc)
                if key != state:
                    state = key
                    log.log(
                        _level(exc), "notifications%s paused: %s; retrying with back-off up to %.0f s", self._from, self.trouble, MAX_BACKOFF,
                        exc_info=None if _known(exc) else exc,  # a bug's traceback, once
                    )  # fmt: skip
                await self._sleep(delay)
                continue
            if failures:
                log.info("notifications%s flow again (after %d failed tries)", self._from, failures)
                failures, state, self.trouble = 0, None, None

    @property
    def _from(self) -> str:
        return f" from {self.host}" if self.host else ""

    async def _pause(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def stop(self) -> None:
        self._stopping.set()

    async def deliver(self, events: list[dict[str, Any]]) -> None:
        """Show ``events`` in order; acknowledge those shown. A transient failure stops the
        batch there, so later events wait and order holds."""
        delivered: list[int] = []
        posted: list[dict[str, int]] = []
        superseded = _superseded_progress(events)
        try:
            for event in events:
                if event["id"] in superseded:
                    delivered.append(event["id"])
                    continue
                chat = event.get("chat_id") if event.get("chat_id") is not None else self.team_chat
                if chat is None:
                    log.warning("notification %s is for the team chat, but WINGMAN_CHAT_ID is not set", event["id"])
                    delivered.append(event["id"])
                    continue
                if self.held.holds(event, int(chat), self):
                    continue  # acknowledged once the digest that carries it is posted
                if self.held.due():
                    await self.release_held()  # what waited goes before anything newer
                try:
                    created = await self.show(event, int(chat))
                except (TelegramBadRequest, TelegramForbiddenError) as exc:
                    # Telegram will never take this one (chat gone, bot blocked): say so, move on.
                    log.error("notification %s cannot be shown in chat %s: %s", event["id"], chat, exc)
                    created = None
                delivered.append(event["id"])
                if created is not None:
                    posted.append({"id": event["id"], "chat_id": int(chat), "message_id": created})
        finally:
            if delivered:
                await self.client.ack(delivered, posted)
        self._after = max(self._after, int(events[-1]["id"])) if events else self._after

    async def release_held(self) -> None:
        """Post what waited for the end of quiet hours, for every pump sharing ``held``: one
        message per chat carrying every plain notice, oldest first; an event that is more
        than text (a picture, buttons) is shown as itself right after it, by the pump that
        polled it. Each executor's events are acknowledged through that pump's client once
        posted; one that cannot be acknowledged now stays held, marked posted, and only its
        acknowledgement is tried again."""
        async with self.held.lock:
            for chat, held in list(self.held.by_chat.items()):
                waiting = list(held)  # another pump may hold more meanwhile: those wait for the next round
                todo = [w for w in waiting if not w.posted]
                plain = [w for w in todo if _plain(w.event)]
                rest = [w for w in todo if not _plain(w.event)]
                try:
                    if plain:
                        texts = [notice_text(w.event.get("payload") or {}, str(w.event.get("kind")), w.host) for w in plain]
                        await send_text(self.bot, chat, digest_text(self.held.hours, texts, more=len(rest)), name="quiet-hours")
                    for w in plain:
                        w.posted = True
                    for w in rest:
                        await w.owner.show(w.event, chat)
                        w.posted = True
                except (TelegramBadRequest, TelegramForbiddenError) as exc:
                    log.error("messages held during quiet hours cannot be shown in chat %s: %s", chat, exc)
                    for w in todo:
                        w.posted = True  # Telegram will never take them: acknowledged, not tried again
                owners: dict[int, list[Waiting]] = {}
                for w in waiting:
                    if w.posted:
                        owners.setdefault(id(w.owner), []).append(w)
                for group in owners.values():
                    owner = group[0].owner
                    try:
                        await owner.client.ack([int(w.event["id"]) for w in group], [])
                    except Exception as exc:
                        if owner is self:
                            raise  # this pump's own trouble: its back-off
                        # Another executor's trouble must not stall this pump: its events
                        # stay held (posted) and their acknowledgement is tried after the next poll.
                        log.warning("messages held from %s were posted but cannot be acknowledged yet: %s", owner.host, exc)
                        continue
                    self.held.release(chat, group)

    async def show(self, event: dict[str, Any], chat: int) -> int | None:
        """Post or edit; returns the id of a message it created, if any."""
        kind = str(event.get("kind"))
        payload = event.get("payload") or {}
        if kind == WEEKLY_KIND and (weeks := weeks_of(payload, self.host)) is not None:
            if self.pictures is not None:
                created = await self.pictures.show(self.bot, chat, weeks[0])  # the hosts' weeks in one picture
            else:
                created = await send_weekly(self.bot, chat, weeks)  # one photo with its caption
            await self._recall_updates(payload, chat)
            return created
        if kind == "updates" and isinstance(payload.get("updates"), list):
            # A scheduled update check: one message, a Deploy button per update (bot.updates).
            text, markup = updates_notification(payload, self.host, now=self._clock())
            return (await send_text(self.bot, chat, text, name=kind, reply_markup=markup)).message_id
        if "alert" in payload:  # an incident message: posted once, then edited (bot.alerts)
            text, markup = alert_text(payload["alert"], host=self.host), alert_keyboard(payload["alert"], host=self.host)
            return await self._post_or_edit(chat, kind, event, text, markup)
        if "approval" not in payload:
            if self.reports is not None and self.host is not None and kind in REPORT_KINDS:
                return await self.reports.show(self.bot, chat, kind, self.host, notice_text(payload, kind))
            text = notice_text(payload, kind, self.host)
            return (await send_text(self.bot, chat, text, name=kind)).message_id
        approval = payload["approval"]
        text = approval_text(approval, progress=payload.get("progress"), outcome=payload.get("outcome"), host=self.host)
        markup = None
        if approval.get("state") == "pending":
            markup = approval_keyboard(str(approval["id"]), for_requester=event.get("chat_id") is not None, host=self.host)
        return await self._post_or_edit(chat, kind, event, text, markup)

    async def _post_or_edit(self, chat: int, kind: str, event: dict[str, Any], text: str, markup: Any) -> int | None:
        """Edit the message already showing the event's subject, else post one (returns its id)."""
        existing = (event.get("messages") or {}).get(str(chat))
        if existing is not None:
            if kind == "progress" and not self._edit_due(chat, existing):
                return None  # thinned: a later edit shows a newer state
            await self._pace(chat, existing)
            try:
                await self.bot.edit_message_text(text=text, chat_id=chat, message_id=existing, reply_markup=markup)
                return None
            except TelegramBadRequest as exc:
                if "not modified" in str(exc):
                    return None
                log.info("message %s in chat %s cannot be edited (%s); posting anew", existing, chat, exc)
        message = await self.bot.send_message(chat, text, reply_markup=markup)
        self._last_edit[(chat, message.message_id)] = time.monotonic()
        return message.message_id

    async def _recall_updates(self, payload: dict[str, Any], chat: int) -> None:
        """After the weekly picture: the updates announced and still not deployed, with
        their Deploy buttons again (``bot.updates``)."""
        pending = payload.get("pending_updates")
        if isinstance(pending, list) and pending:
            text, markup = updates_recall(pending, self.host, now=self._clock())
            await send_text(self.bot, chat, text, name="updates", reply_markup=markup)

    def _edit_due(self, chat: int, message_id: int) -> bool:
        return time.monotonic() - self._last_edit.get((chat, message_id), 0.0) >= EDIT_INTERVAL

    async def _pace(self, chat: int, message_id: int) -> None:
        wait = EDIT_INTERVAL - (time.monotonic() - self._last_edit.get((chat, message_id), 0.0))
        if wait > 0:
            await asyncio.sleep(wait)  # Telegram limits edits per message; keep to ~1 a second
        self._last_edit[(chat, message_id)] = time.monotonic()


def _plain(event: dict[str, Any]) -> bool:
    """A notice that is only text (and a witness line): it can go into a digest."""
    payload = event.get("payload") or {}
    return isinstance(payload, dict) and set(payload) <= {"text", "status", "witness"}


def _superseded_progress(events: list[dict[str, Any]]) -> set[int]:
    """Progress events followed, in the same batch, by a newer event about the same subject."""
    latest: dict[tuple[Any, Any], int] = {}
    for event in events:
        latest[(event.get("ref"), event.get("chat_id"))] = event["id"]
    return {
        e["id"] for e in events
        if e.get("kind") == "progress" and e.get("ref") is not None and latest[(e.get("ref"), e.get("chat_id"))] != e["id"]
    }  # fmt: skip
