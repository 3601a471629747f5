"""Retention exports: what leaves the database, what stays, and that nothing is lost."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from audit import AuditStore, ExportError, SigningKey, export_older_than, load_manifests, verify_chain, write_checkpoint
from tests.audit.helpers import Clock, execute, fill, flip, read_rows

DAYS = 90


async def aged_store(url: str, clock: Clock, export_path: Path | None = None, key: SigningKey | None = None) -> AuditStore:
    """15 entries: 5 at day 0, 5 at day 50, 5 at day 100 (now); with ``key``, checkpointed
    as the executor would have (verification expects old entries to be covered)."""
    store = await AuditStore.open(url, clock=clock)
    for _ in range(3):
        await fill(store, 5)
        clock.advance(days=50)
    clock.advance(days=-50)
    if export_path is not None and key is not None:
        write_checkpoint(await store.head(), export_path, key, clock.now)
    return store


async def test_only_entries_past_retention_leave_and_nothing_is_lost(
    db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await aged_store(db_url, clock, export_path, audit_key)
    original = await read_rows(db_url)
    try:
        # The boundary lands exactly on the day-50 entries' timestamp: strictly older leaves.
        result = await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=50), clock.now, trusted)
        report = await verify_chain(store, export_path, trusted, now=clock.now)
    finally:
        await store.close()
    assert (result.first_seq, result.last_seq, result.exported, result.removed) == (1, 5, 5, 5)
    remaining = await read_rows(db_url)
    assert [row["seq"] for row in remaining] == list(range(6, 16))
    assert result.exported + len(remaining) == len(original)
    assert report.ok and report.entries == 15 and report.exported == 5


async def test_a_second_export_continues_the_first(
    db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await aged_store(db_url, clock, export_path, audit_key)
    try:
        await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
        clock.advance(days=60)
        second = await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
        await fill(store, 2)
        report = await verify_chain(store, export_path, trusted, now=clock.now)
    finally:
        await store.close()
    assert (second.first_seq, second.last_seq) == (6, 10)
    assert [m.first_seq for m in load_manifests(export_path, trusted)] == [1, 6]
    assert report.ok and report.entries == 17 and report.exported == 10


async def test_everything_exported_then_appending_continues_the_sequence(
    sqlite_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await AuditStore.open(sqlite_url, clock=clock)
    try:
        await fill(store, 4)
        clock.advance(days=DAYS + 1)
        await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
        assert await read_rows(sqlite_url) == []
        assert (await verify_chain(store, export_path, trusted, now=clock.now)).ok
        entry = await store.append(actor="a", action="x", decision="d")
        report = await verify_chain(store, export_path, trusted, now=clock.now)
    finally:
        await store.close()
    assert entry.seq == 5 and report.ok and report.entries == 5


async def test_only_an_unbroken_run_from_the_oldest_is_exported(
    sqlite_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await AuditStore.open(sqlite_url, clock=clock)
    try:
        await fill(store, 3)  # day 0
        clock.advance(days=200)
        await fill(store, 2)  # day 200
        clock.advance(days=-200)  # the host clock jumps back
        await fill(store, 2)  # day 0 again, but after newer entries
        clock.advance(days=200)
        result = await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
        assert (await verify_chain(store, export_path, trusted, now=clock.now)).ok
    finally:
        await store.close()
    assert (result.first_seq, result.last_seq) == (1, 3)


async def test_a_dry_run_changes_nothing(sqlite_url: str, export_path: Path, audit_key: SigningKey, trusted: dict) -> None:
    clock = Clock()
    store = await aged_store(sqlite_url, clock)
    before = await read_rows(sqlite_url)
    try:
        result = await export_older_than(
            store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted, dry_run=True
        )
    finally:
        await store.close()
    assert (result.exported, result.first_seq, result.last_seq, result.removed) == (5, 1, 5, 0)
    assert await read_rows(sqlite_url) == before
    assert not export_path.exists()


async def test_an_unwritable_export_directory_prunes_nothing(
    sqlite_url: str, tmp_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the export directory should be\n")
    clock = Clock()
    store = await aged_store(sqlite_url, clock)
    before = await read_rows(sqlite_url)
    try:
        with pytest.raises(ExportError, match="cannot create the directory"):
            await export_older_than(store, blocker / "audit", audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
    finally:
        await store.close()
    assert await read_rows(sqlite_url) == before


async def test_a_tampered_row_stops_the_export_and_prunes_nothing(
    db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await aged_store(db_url, clock)
    row = (await read_rows(db_url))[2]
    await execute(db_url, "UPDATE audit_log SET actor = :actor WHERE seq = 3", actor=flip(row["actor"]))
    before = await read_rows(db_url)
    try:
        with pytest.raises(ExportError, match="broken at seq 3"):
            await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
    finally:
        await store.close()
    assert await read_rows(db_url) == before
    assert list((export_path / "exports").iterdir()) == []


class FailingPrune(AuditStore):
    """A store whose prune step dies once, like a crash between export and prune."""

    async def delete_through(self, last_seq: int) -> int:
        raise OSError("simulated crash before pruning")


async def test_an_export_whose_prune_was_interrupted_is_finished_next_time(
    sqlite_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await aged_store(sqlite_url, clock, export_path, audit_key)
    await store.close()
    failing = await FailingPrune.open(sqlite_url, clock=clock)
    cutoff = clock.now - timedelta(days=DAYS)
    try:
        with pytest.raises(OSError):
            await export_older_than(failing, export_path, audit_key, cutoff, clock.now, trusted)
        # Both copies exist now: verification takes the export's and still passes.
        report = await verify_chain(failing, export_path, trusted, now=clock.now)
        assert report.ok and report.entries == 15
    finally:
        await failing.close()
    store = await AuditStore.open(sqlite_url, clock=clock)
    try:
        again = await export_older_than(store, export_path, audit_key, cutoff, clock.now, trusted)
        report = await verify_chain(store, export_path, trusted, now=clock.now)
    finally:
        await store.close()
    assert again.exported == 0
    assert [row["seq"] for row in await read_rows(sqlite_url)] == list(range(6, 16))
    assert report.ok and report.entries == 15


async def test_export_files_are_private_whatever_the_umask(
    sqlite_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    clock = Clock()
    store = await aged_store(sqlite_url, clock)
    previous = os.umask(0o022)  # the usual login default
    try:
        result = await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=DAYS), clock.now, trusted)
    finally:
        os.umask(previous)
        await store.close()
    assert result.exported == 5
    exports = export_path / "exports"
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in [export_path, exports]} == {"audit": 0o700, "exports": 0o700}
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in exports.iterdir()}
    assert len(files) == 2 and set(files.values()) == {0o600}, files
