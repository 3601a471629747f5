"""Replay protection: each token id is accepted once, remembered until the token expires.

The ids still inside their validity window are held in memory (loaded from the database
at start), so the check itself touches no disk. The database keeps them too, so a replay
after a restart is refused: a claimed id is written in the same transaction as the
request's first audit entry (``claim.along``), which is written before the request
changes anything; a request that is not audited writes it on its own (``persist``).

One executor per database: two daemons sharing one would not see each other's claims.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.store import Along
from executor.schema import seen_tokens

# An id is forgotten this long after its token's expiry: the verifier's leeway (5 s) and
# more, so a token the verifier would still accept is always remembered.
FORGET_AFTER_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Claim:
    jti: str
    exp: float

    @property
    def along(self) -> Along:
        return Along(seen_tokens, {"jti": self.jti, "exp": self.exp})


class ReplayGuard:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []  # a heap: the next id to forget first
        self._loaded = False

    async def load(self, now: float) -> None:
        """Remember the ids the database holds that a token could still carry."""
        query = select(seen_tokens.c.jti, seen_tokens.c.exp).where(seen_tokens.c.exp >= now - FORGET_AFTER_SECONDS)
        async with self._engine.connect() as conn:
            for jti, exp in await conn.execute(query):
                self._remember(jti, exp)
        self._loaded = True

    def claim(self, jti: str, exp: float, now: float) -> Claim | None:
        """A claim the first time ``jti`` is seen, None for a replay. The claim is in memory
        only until it is written (``along`` an audit entry, or ``persist``)."""
        if not self._loaded:
            raise RuntimeError("ReplayGuard.load() must run before the first claim")
        while self._expiry and self._expiry[0][0] < now - FORGET_AFTER_SECONDS:
            self._seen.discard(heapq.heappop(self._expiry)[1])
        if jti in self._seen:
            return None
        self._remember(jti, exp)
        return Claim(jti, exp)

    def _remember(self, jti: str, exp: float) -> None:
        self._seen.add(jti)
        heapq.heappush(self._expiry, (exp, jti))

    async def persist(self, claim: Claim) -> None:
        """Write a claim on its own (for a request whose first change is not an audit entry)."""
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        async with self._engine.begin() as conn:
            await conn.execute(insert(seen_tokens).on_conflict_do_nothing(), [claim.along.values])
