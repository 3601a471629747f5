"""Verifying a big chain inside the executor leaves its event loop free: other requests
through the real socket are answered while the verification is still running, whether the
entries are in the database (a million of them) or already in retention exports (whose
rows are read and hashed without a pause in between)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audit import AuditStore, export_older_than
from audit.canonical import GENESIS_HASH, canonical_json, chain_hash, entry_object
from audit.schema import ROW_FIELDS
from tests.harness import ADMIN, Harness

ENTRIES = 1_000_000
EXPORTED = 100_000


def chain_rows(count: int, last: list[Any]) -> Iterator[tuple[Any, ...]]:
    """A valid chain of ``count`` entries, hashed here (as benchmarks/audit_bench.py does)."""
    prev = GENESIS_HASH
    ts = "2020-01-01T00:00:00.000000Z"  # long past: older than anything the executor writes
    for seq in range(1, count + 1):
        target = f"web-{seq % 7}"
        params = canonical_json({"lines": seq % 100})
        text = entry_object(
            ts=ts, actor="tg:4", action="logs", target=target, params_json=params, decision="executed",
            outcome="sent 20 lines", request_id=f"{seq:016x}",
        )  # fmt: skip
        entry_hash = chain_hash(seq, prev, text)
        yield seq, ts, "tg:4", "logs", target, params, "executed", "sent 20 lines", f"{seq:016x}", prev, entry_hash
        prev = entry_hash
    last[:] = [count, prev]


async def build_chain(path: Path, count: int) -> None:
    store = await AuditStore.open(f"sqlite+aiosqlite:///{path}")  # the migrations make the tables
    await store.close()

    def insert() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous = OFF")  # a scratch build
            db.execute("PRAGMA cache_size = -262144")  # 256 MiB: entry_hash is a unique index in random order
            last: list[Any] = []
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                f"INSERT INTO audit_log ({', '.join(ROW_FIELDS)}) VALUES ({', '.join('?' for _ in ROW_FIELDS)})",
                chain_rows(count, last),
            )
            db.execute("UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", last)
            db.execute("COMMIT")
        finally:
            db.close()

    await asyncio.to_thread(insert)


async def answered_while_verifying(harness: Harness) -> Any:
    """Start what /verify and the nightly job run, ask three requests, and show they were
    answered while the verification was still running; its report."""
    client = harness.client()
    verification = asyncio.create_task(harness.executor.verify_audit())
    await asyncio.sleep(0)  # one step of the task hands the verification to its thread
    answers = [await client.call(ADMIN, "whoami"), await client.call(ADMIN, "pending"), await client.call(ADMIN, "audit", {"n": 3})]
    still_running = not verification.done()
    report = await verification
    assert [a.status for a in answers] == ["done", "done", "done"], answers
    assert still_running, "the requests were answered only after the verification had finished"
    return report


async def test_requests_are_answered_while_a_million_entries_are_verified(make_harness: Any, tmp_path: Path) -> None:
    database = tmp_path / "big.db"
    await build_chain(database, ENTRIES)
    harness: Harness = await make_harness(db_url=f"sqlite+aiosqlite:///{database}", docker_host="unix:///nonexistent/docker.sock")
    # Entries no checkpoint covers are checkpointed when the executor starts (verification
    # fails closed on old entries nothing vouches for).
    catch_up = harness.daemon.scheduler.checkpointing
    assert catch_up is not None
    await catch_up
    report = await answered_while_verifying(harness)
    assert report.ok, report.summary()
    assert report.entries >= ENTRIES + 1  # the million, and the executor's own start


async def test_requests_are_answered_while_exported_entries_are_verified(make_harness: Any, tmp_path: Path) -> None:
    database = tmp_path / "exported.db"
    await build_chain(database, EXPORTED)
    harness: Harness = await make_harness(db_url=f"sqlite+aiosqlite:///{database}", docker_host="unix:///nonexistent/docker.sock")
    executor = harness.executor
    exported = await export_older_than(
        executor.audit, executor.export_path, executor.audit_key, datetime(2021, 1, 1, tzinfo=timezone.utc),
        datetime.now(timezone.utc), executor.trusted_audit_keys,
    )  # fmt: skip
    assert exported.exported == EXPORTED
    report = await answered_while_verifying(harness)
    assert report.ok and report.exported == EXPORTED, report.summary()
