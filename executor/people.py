"""The display names people were last seen with, for showing the audit trail by name.

A request may carry how its sender appeared in the chat (the ``display_name`` claim, see
``executor.protocol``). The audit records the id alone, as ever: the id is the identity and
a name is only what people read, so the names live here, one row per person, the newest
seen. They are written only when a name changes (a cache in memory spares the database a
write per request), and a failure to write one never fails the request it came with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.schema import people

log = logging.getLogger("wingman.executor")


class People:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._known: dict[str, str] = {}  # what the table holds, as far as this process wrote or read it

    async def remember(self, user: str, name: str, now: float) -> None:
        """Keep ``name`` as how ``user`` ("tg:<id>") appears now; a write only when it changed."""
        if self._known.get(user) == name:
            return
        try:
            async with self.engine.begin() as conn:
                changed = await conn.execute(update(people).where(people.c.user == user).values(name=name, seen_at=now))
                if changed.rowcount == 0:
                    await conn.execute(insert(people).values(user=user, name=name, seen_at=now))
        except IntegrityError:  # two first requests of one person at once: the other one wrote it
            pass
        except (SQLAlchemyError, OSError) as exc:  # display only: the request goes on
            log.warning("the display name of %s could not be kept: %s", user, exc)
            return
        self._known[user] = name

    async def names(self, users: Iterable[str]) -> dict[str, str]:
        """``{"tg:1001": "@alice", …}`` for those of ``users`` whose name is known."""
        wanted = sorted({u for u in users if u.startswith("tg:")})
        if not wanted:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(people.c.user, people.c.name).where(people.c.user.in_(wanted)))).all()
        return {row.user: row.name for row in rows}
