"""Replay protection: each token id is accepted once, remembered in the database until it expires.

Claims are group-committed (see ``audit.batching``): concurrent requests share one
transaction, so the check costs one durable write per batch, not per request.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.batching import GroupCommit
from audit.store import SqliteWriter, sqlite_path, write_transaction
from executor.schema import seen_tokens


class ReplayGuard:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        path = sqlite_path(engine.url)
        self._sqlite = SqliteWriter(path) if path is not None else None
        self._writer: GroupCommit[tuple[str, float], bool] = GroupCommit(self._record, name="replay-guard")

    async def claim(self, jti: str, exp: float) -> bool:
        """True the first time ``jti`` is seen (and durably recorded), False for a replay."""
        return await self._writer.submit((jti, exp))

    async def _record(self, batch: list[tuple[str, float]]) -> list[bool]:
        if self._sqlite is not None:
            return await self._sqlite.run(_record_sqlite, batch)
        jtis = [jti for jti, _ in batch]
        async with self._engine.begin() as conn:
            query = select(seen_tokens.c.jti).where(seen_tokens.c.jti.in_(jtis))
            known = set((await conn.execute(query)).scalars())
            fresh, rows = _fresh(batch, known)
            if rows:
                await conn.execute(insert(seen_tokens), [{"jti": jti, "exp": exp} for jti, exp in rows])
        return fresh

    async def close(self) -> None:
        await self._writer.close()
        if self._sqlite is not None:
            await self._sqlite.close()


def _fresh(batch: list[tuple[str, float]], known: set[str]) -> tuple[list[bool], list[tuple[str, float]]]:
    """Which ids are seen for the first time (a repeat within the batch is a replay too)."""
    fresh: list[bool] = []
    rows = []
    for jti, exp in batch:
        first = jti not in known
        fresh.append(first)
        if first:
            known.add(jti)
            rows.append((jti, exp))
    return fresh, rows


def _record_sqlite(db: sqlite3.Connection, batch: list[tuple[str, float]]) -> list[bool]:
    with write_transaction(db):
        marks = ",".join("?" for _ in batch)
        known = {row[0] for row in db.execute(f"SELECT jti FROM seen_tokens WHERE jti IN ({marks})", [j for j, _ in batch])}
        fresh, rows = _fresh(batch, known)
        if rows:
            db.executemany("INSERT INTO seen_tokens (jti, exp) VALUES (?, ?)", rows)
    return fresh
