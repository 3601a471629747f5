"""The notification outbox: events for the chat, stored until the bot confirms delivery.

The executor never talks to Telegram. It writes events here (approval requested or
decided, progress, results, expiries, scheduled reports); the bot long-polls them over the
socket, posts them, and acknowledges each only after Telegram accepted it. An event not
acknowledged is handed out again on the next poll: at least once, in id order.

A poll may ask only for events ``after`` an id: the bot holds some events unacknowledged
for a while (quiet hours, ``bot.quiet``) and polls past them, so they neither come back
on every poll nor fill a poll ahead of newer events. Each event carries ``created_at``
(the executor's clock when it was written).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.schema import chat_messages, notifications

MAX_WAIT = 30.0
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    chat_id: int | None  # None: the team chat (WINGMAN_CHAT_ID)
    kind: str
    ref: str | None
    payload: dict[str, Any]
    created_at: float
    # Messages already showing ``ref``, by chat id: the bot edits these instead of posting.
    messages: dict[int, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chat_id": self.chat_id,
            "kind": self.kind,
            "ref": self.ref,
            "payload": self.payload,
            "created_at": self.created_at,
            "messages": {str(chat): message for chat, message in self.messages.items()},
        }


class Outbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._added = asyncio.Event()

    async def add(self, kind: str, payload: dict[str, Any], *, now: float, chat_id: int | None = None, ref: str | None = None) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(notifications).values(
                    chat_id=chat_id, kind=kind, ref=ref, payload=json.dumps(payload, ensure_ascii=False), created_at=now
                )
            )
        self._added.set()
        return int(result.inserted_primary_key[0])

    async def poll(self, *, limit: int = MAX_LIMIT, wait: float = 0.0, after: int = 0) -> list[Notification]:
        """Undelivered events with ids above ``after``, oldest first; waits up to ``wait``
        seconds for one to arrive."""
        limit = max(1, min(limit, MAX_LIMIT))
        wait = max(0.0, min(wait, MAX_WAIT))
        self._added.clear()
        found = await self._undelivered(limit, after)
        if found or wait == 0:
            return found
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._added.wait(), wait)
        return await self._undelivered(limit, after)

    async def _undelivered(self, limit: int, after: int = 0) -> list[Notification]:
        columns = notifications.c
        query = (
            select(columns.id, columns.chat_id, columns.kind, columns.ref, columns.payload, columns.created_at)
            .where(columns.delivered_at.is_(None), columns.id > after)
            .order_by(notifications.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            refs = {r.ref for r in rows if r.ref is not None}
            shown: dict[str, dict[int, int]] = {}
            if refs:
                known = await conn.execute(select(chat_messages).where(chat_messages.c.ref.in_(refs)))
                for ref, chat_id, message_id in known:
                    shown.setdefault(ref, {})[chat_id] = message_id
        return [
            Notification(r.id, r.chat_id, r.kind, r.ref, json.loads(r.payload), float(r.created_at), dict(shown.get(r.ref, {})))
            for r in rows
        ]

    async def ack(self, ids: list[int], *, now: float, posted: Sequence[tuple[int, int, int]] = ()) -> int:
        """Mark ``ids`` delivered; ``posted`` holds (notification id, chat id, message id) of
        messages the bot created, so later events about the same subject edit them."""
        if not ids:
            return 0
        async with self._engine.begin() as conn:
            for notification_id, chat_id, message_id in posted:
                ref = (
                    await conn.execute(select(notifications.c.ref).where(notifications.c.id == notification_id))
                ).scalar_one_or_none()
                if ref is None:
                    continue
                where = (chat_messages.c.ref == ref) & (chat_messages.c.chat_id == chat_id)
                await conn.execute(delete(chat_messages).where(where))
                await conn.execute(insert(chat_messages).values(ref=ref, chat_id=chat_id, message_id=message_id))
            result = await conn.execute(
                update(notifications)
                .where(notifications.c.id.in_(ids), notifications.c.delivered_at.is_(None))
                .values(delivered_at=now)
            )
        return int(result.rowcount or 0)

    def wake(self) -> None:
        """Release long-polls (at shutdown)."""
        self._added.set()
