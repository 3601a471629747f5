"""Retrying Bot API calls: 429 waits ``retry_after``; 5xx and network errors back off.

aiogram has no built-in retry, so this sits in the bot session's request middleware
chain and wraps every call the bot makes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger("wingman.bot")


class RetryMiddleware(BaseRequestMiddleware):
    """Retries until Telegram accepts, within bounds: a stuck API must not hang the bot."""

    def __init__(self, *, max_attempts: int = 8, base_delay: float = 0.5, max_delay: float = 30.0, max_retry_after: float = 300.0) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt >= self.max_attempts or exc.retry_after > self.max_retry_after:
                    raise
                delay: float = exc.retry_after
                log.warning("%s: Telegram asks to wait %s s (attempt %d)", type(method).__name__, delay, attempt)
            except (TelegramServerError, TelegramNetworkError) as exc:
                if attempt >= self.max_attempts:
                    raise
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                log.warning("%s failed (%s); retrying in %.1f s", type(method).__name__, _short(exc), delay)
            await asyncio.sleep(delay)


def _short(exc: Any) -> str:
    return " ".join(str(exc).split())[:200]
