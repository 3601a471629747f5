"""Building chains and tampering with them behind the store's back, as an attacker would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from audit import AuditEntry, AuditStore, normalize_url
from audit.canonical import GENESIS_HASH, hash_row
from audit.schema import ROW_FIELDS


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def fill(store: AuditStore, count: int, *, actor: str = "tg:1001") -> list[AuditEntry]:
    entries = []
    for index in range(count):
        entries.append(
            await store.append(
                actor=actor,
                action="deploy" if index % 2 else "restart",
                decision="allowed",
                target=f"web-{index}",
                params={"image": f"nginx:1.{index}", "n": index, "note": "ünïcode ✓"},
                outcome=f"done {index}",
                request_id=f"req-{index}",
            )
        )
    return entries


async def execute(url: str, statement: str, **params: Any) -> None:
    """Run SQL straight against the database, outside the audit store."""
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


async def read_rows(url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(f"SELECT {', '.join(ROW_FIELDS)} FROM audit_log ORDER BY seq"))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def rewrite(url: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Replace the whole chain with ``change(rows)``, every hash recomputed and the head moved:
    what an attacker with write access to the database and this source code would do."""
    rows = change(await read_rows(url))
    prev = GENESIS_HASH
    for seq, row in enumerate(rows, start=1):
        row["seq"], row["prev_hash"] = seq, prev
        row["entry_hash"] = prev = hash_row(row)
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_log"))
            if rows:
                columns = ", ".join(ROW_FIELDS)
                values = ", ".join(f":{name}" for name in ROW_FIELDS)
                await conn.execute(text(f"INSERT INTO audit_log ({columns}) VALUES ({values})"), rows)
            await conn.execute(
                text("UPDATE audit_head SET seq = :seq, entry_hash = :hash"), {"seq": len(rows), "hash": prev}
            )
    finally:
        await engine.dispose()


def flip(value: str, position: int | None = None) -> str:
    """``value`` with one character's lowest bit flipped (so it stays ASCII-safe)."""
    index = len(value) // 2 if position is None else position
    return value[:index] + chr(ord(value[index]) ^ 1) + value[index + 1 :]
