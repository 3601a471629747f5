"""The per-user command limit: at most ``LIMIT`` commands a minute each, never a silent drop.

A command over the limit is not run, and is answered with when to try again; at most one
such answer goes to a user every ``NOTICE_INTERVAL`` seconds (it says that commands sent
until then are not run either), so a user who keeps typing cannot make the bot flood the
chat. The limiter remembers only users who wrote within the last window, and at most
``MAX_USERS`` of them, the longest-quiet forgotten first: however many people write to
the bot, its memory stays bounded. Forgetting a user who has been quiet for a window
loses nothing; forgetting one earlier takes ``MAX_USERS`` others writing in between.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message

LIMIT = 20
WINDOW = 60.0
NOTICE_INTERVAL = 10.0
MAX_USERS = 10_000


def limit_line(limit: int = LIMIT) -> str:
    """The limit in a sentence, as ``/help`` states it."""
    return f"At most {limit} commands a minute each; past that a command is not run, and the bot says when to try again."


def notice(limit: int, wait: int) -> str:
    return f"⏳ Not run: at most {limit} commands a minute. Try again in {wait} s; commands sent before then are not run either."


@dataclass(slots=True)
class _User:
    last: float  # when the user last sent a command, run or not
    ran: deque[float] = field(default_factory=deque)  # when the commands still in the window ran
    told: float = -math.inf  # when the user was last told to slow down


class RateLimit(BaseMiddleware):
    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        *,
        notice_interval: float = NOTICE_INTERVAL,
        max_users: int = MAX_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.notice_interval = notice_interval
        self.max_users = max_users
        self.clock = clock
        self._users: OrderedDict[int, _User] = OrderedDict()  # the longest-quiet first

    def __len__(self) -> int:
        """How many users it remembers."""
        return len(self._users)

    async def __call__(self, handler: Callable[[Message, dict[str, Any]], Awaitable[Any]], event: Message, data: dict[str, Any]) -> Any:  # type: ignore[override]
        user_id = event.from_user.id if event.from_user else 0
        now = self.clock()
        self._forget_quiet(now)
        user = self._users.pop(user_id, None) or _User(now)
        user.last = now
        self._users[user_id] = user  # to the end: the most recent
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)
        while user.ran and user.ran[0] <= now - self.window:
            user.ran.popleft()
        if len(user.ran) >= self.limit:
            if now - user.told >= self.notice_interval:
                user.told = now
                wait = max(1, math.ceil(user.ran[0] + self.window - now))
                await event.reply(notice(self.limit, wait))
            return None
        user.ran.append(now)
        return await handler(event, data)

    def _forget_quiet(self, now: float) -> None:
        """Drop the users quiet for a whole window: none of their commands counts any more,
        and they were told nothing within ``notice_interval``."""
        while self._users:
            user_id, user = next(iter(self._users.items()))
            if user.last > now - self.window:
                return
            del self._users[user_id]
