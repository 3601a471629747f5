"""Replay protection: each token id is accepted once, remembered in the database until it expires.

Claims are group-committed (see ``audit.batching``): concurrent requests share one
transaction, so the check costs one durable write per batch, not per request.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.batching import GroupCommit
from executor.schema import seen_tokens


class ReplayGuard:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer: GroupCommit[tuple[str, float], bool] = GroupCommit(self._record, name="replay-guard")

    async def claim(self, jti: str, exp: float) -> bool:
        """True the first time ``jti`` is seen (and durably recorded), False for a replay."""
        return await self._writer.submit((jti, exp))

    async def _record(self, batch: list[tuple[str, float]]) -> list[bool]:
        jtis = [jti for jti, _ in batch]
        async with self._engine.begin() as conn:
            query = select(seen_tokens.c.jti).where(seen_tokens.c.jti.in_(jtis))
            known = set((await conn.execute(query)).scalars())
            fresh: list[bool] = []
            rows = []
            for jti, exp in batch:
                first = jti not in known
                fresh.append(first)
                if first:
                    known.add(jti)
                    rows.append({"jti": jti, "exp": exp})
            if rows:
                await conn.execute(insert(seen_tokens), rows)
        return fresh

    async def forget_expired(self, now: float) -> int:
        """Drop ids of tokens long expired: a replay of those fails on its expiry anyway."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(seen_tokens).where(seen_tokens.c.exp < now - 60))
        return int(result.rowcount or 0)

    async def close(self) -> None:
        await self._writer.close()
