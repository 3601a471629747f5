"""The updates the checks found, in the executor's database (table ``updates``).

Each update is stored when a check first finds it, ``pending`` while checks still find
it, and ``gone`` once a check of its container no longer does (deployed, superseded by a
newer image, or the container no longer watched). ``announced_at`` marks the ones the
scheduled check has posted to the chat, so none is announced twice; :meth:`pending` is
the query the weekly report recalls the announced ones still waiting with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.schema import updates as table
from executor.updates.check import Update

PENDING, GONE = "pending", "gone"


@dataclass(frozen=True, slots=True)
class StoredUpdate:
    update: Update
    state: str
    found_at: float
    seen_at: float
    announced_at: float | None

    @classmethod
    def from_row(cls, row: RowMapping) -> StoredUpdate:
        found = Update(
            row["id"], row["target"], row["image"], row["current_tag"], row["new_tag"], row["current_digest"],
            row["new_digest"], row["reference"], row["created"],
        )  # fmt: skip
        return cls(found, row["state"], row["found_at"], row["seen_at"], row["announced_at"])


class UpdateStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(
        self, found: Iterable[Update], watched: Iterable[str], now: float, *, present: Iterable[str] | None = None
    ) -> list[StoredUpdate]:
        """Store what a check found; what it no longer finds for a ``watched`` container is gone,
        and so is every update of a container not ``present`` any more (removed, or no longer
        allowlisted), when the check says which are.

        Returns the stored rows of ``found``, in its order (with their announcement marks).
        """
        found = list(found)
        watched = set(watched)
        ids = [u.id for u in found]
        async with self.engine.begin() as conn:
            known = {
                row["id"]: row
                for row in (await conn.execute(select(table).where(table.c.id.in_(ids)))).mappings()
            } if ids else {}  # fmt: skip
            for item in found:
                if item.id in known:
                    await conn.execute(
                        update(table).where(table.c.id == item.id).values(seen_at=now, state=PENDING, created=item.created)
                    )
                else:
                    await conn.execute(
                        insert(table).values(
                            id=item.id, target=item.target, image=item.image, current_tag=item.current_tag,
                            new_tag=item.new_tag, current_digest=item.current_digest, new_digest=item.new_digest,
                            reference=item.reference, created=item.created, found_at=now, seen_at=now,
                            announced_at=None, state=PENDING,
                        )  # fmt: skip
                    )
            if watched:
                stale = and_(table.c.state == PENDING, table.c.target.in_(sorted(watched)))
                if ids:
                    stale = and_(stale, table.c.id.not_in(ids))
                await conn.execute(update(table).where(stale).values(state=GONE))
            if present is not None:
                await conn.execute(
                    update(table).where(table.c.state == PENDING, table.c.target.not_in(sorted(set(present)))).values(state=GONE)
                )
            rows = (await conn.execute(select(table).where(table.c.id.in_(ids)))).mappings().all() if ids else []
        by_id = {row["id"]: StoredUpdate.from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def mark_announced(self, ids: Iterable[str], now: float) -> None:
        ids = list(ids)
        if not ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table).where(table.c.id.in_(ids), table.c.announced_at.is_(None)).values(announced_at=now)
            )

    async def get(self, update_id: str) -> StoredUpdate | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(table).where(table.c.id == update_id))).mappings().first()
        return None if row is None else StoredUpdate.from_row(row)

    async def pending(self, *, announced_before: float | None = None) -> list[StoredUpdate]:
        """Announced updates still pending (for the weekly recall), oldest announcement first;
        with ``announced_before``, only those announced before that time."""
        query = select(table).where(table.c.state == PENDING, table.c.announced_at.is_not(None))
        if announced_before is not None:
            query = query.where(table.c.announced_at < announced_before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(table.c.announced_at, table.c.target))).mappings().all()
        return [StoredUpdate.from_row(row) for row in rows]
