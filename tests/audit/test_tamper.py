"""The tamper corpus, on SQLite and PostgreSQL: every change to the trail is found, and where."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit import AuditStore, CheckpointError, SigningKey, export_older_than, generate_key_pair, load_signing_key
from audit import verify_chain, write_checkpoint
from audit.canonical import hash_row
from tests.audit.helpers import Clock, execute, fill, flip, read_rows, rewrite

COUNT = 12
MIDDLE = 6


@pytest.fixture
async def chain(db_url: str) -> Any:
    store = await AuditStore.open(db_url)
    await fill(store, COUNT)
    yield store
    await store.close()


async def check(store: AuditStore, export_path: Path | None, trusted: dict[str, Any]) -> tuple[int | None, str | None]:
    report = await verify_chain(store, export_path, trusted)
    assert report.ok == (report.broken_seq is None)
    return report.broken_seq, report.reason


async def test_untampered_chain_verifies(chain: AuditStore, export_path: Path, audit_key: SigningKey, trusted: dict) -> None:
    write_checkpoint(await chain.head(), export_path, audit_key, datetime.now(timezone.utc))
    report = await verify_chain(chain, export_path, trusted)
    assert report.ok, report.summary()
    assert (report.entries, report.first_seq, report.last_seq) == (COUNT, 1, COUNT)
    assert report.checkpoint is not None and report.checkpoint.seq == COUNT


@pytest.mark.parametrize(
    "column",
    ["ts", "actor", "action", "target", "params", "decision", "outcome", "request_id", "prev_hash", "entry_hash"],
)
async def test_a_flipped_byte_in_any_column_is_found(chain: AuditStore, db_url: str, column: str) -> None:
    row = (await read_rows(db_url))[MIDDLE - 1]
    await execute(db_url, f"UPDATE audit_log SET {column} = :value WHERE seq = :seq", value=flip(row[column]), seq=MIDDLE)
    seq, reason = await check(chain, None, {})
    assert seq == MIDDLE, reason


async def test_a_changed_seq_is_found(chain: AuditStore, db_url: str) -> None:
    await execute(db_url, "UPDATE audit_log SET seq = seq + 1000 WHERE seq = :seq", seq=MIDDLE)
    seq, reason = await check(chain, None, {})
    assert seq == MIDDLE and "missing" in (reason or "")


async def test_text_that_is_no_longer_utf8_is_a_broken_entry(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    store = await AuditStore.open(url)
    await fill(store, COUNT)
    # A flipped high bit on disk: 'a' (0x61) becomes 0xE1, which is not valid UTF-8 here.
    await execute(url, "UPDATE audit_log SET actor = CAST(X'74673AE1' AS TEXT) WHERE seq = :seq", seq=MIDDLE)
    try:
        seq, reason = await check(store, None, {})
    finally:
        await store.close()
    assert seq == MIDDLE, reason


@pytest.mark.parametrize(("deleted", "found_at"), [(1, 1), (MIDDLE, MIDDLE), (COUNT, COUNT)])
async def test_a_deleted_row_is_found(chain: AuditStore, db_url: str, deleted: int, found_at: int) -> None:
    await execute(db_url, "DELETE FROM audit_log WHERE seq = :seq", seq=deleted)
    seq, reason = await check(chain, None, {})
    assert seq == found_at, reason


async def test_a_changed_genesis_is_found(chain: AuditStore, db_url: str) -> None:
    await execute(db_url, "UPDATE audit_log SET prev_hash = :value WHERE seq = 1", value="1" * 64)
    seq, reason = await check(chain, None, {})
    assert seq == 1 and "genesis" in (reason or "")


async def test_swapped_rows_are_found(chain: AuditStore, db_url: str) -> None:
    rows = await read_rows(db_url)
    a, b = rows[3], rows[4]
    for source, seq in ((b, a["seq"]), (a, b["seq"])):
        values = {k: v for k, v in source.items() if k not in ("seq", "prev_hash", "entry_hash")}
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        await execute(db_url, f"UPDATE audit_log SET {assignments} WHERE seq = :seq", seq=seq, **values)
    seq, reason = await check(chain, None, {})
    assert seq == a["seq"], reason


async def test_a_forged_row_inserted_with_recomputed_hashes_is_found_by_the_checkpoint(
    chain: AuditStore, db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    write_checkpoint(await chain.head(), export_path, audit_key, datetime.now(timezone.utc))

    def insert_forged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        forged = dict(rows[MIDDLE - 1], actor="tg:666", outcome="nothing to see")
        return rows[:MIDDLE] + [forged] + rows[MIDDLE:]

    await rewrite(db_url, insert_forged)
    # Without the checkpoint the rewritten chain is self-consistent: that is why checkpoints exist.
    assert (await check(chain, None, {}))[0] is None
    seq, reason = await check(chain, export_path, trusted)
    assert seq == COUNT and "checkpoint" in (reason or "")


async def test_a_forged_row_inserted_without_recomputing_is_found(chain: AuditStore, db_url: str) -> None:
    rows = await read_rows(db_url)
    await execute(db_url, "UPDATE audit_head SET seq = seq + 1")
    forged = dict(rows[-1], seq=COUNT + 1, prev_hash=rows[-1]["entry_hash"], actor="tg:666")
    forged["entry_hash"] = flip(hash_row(forged))
    columns = ", ".join(forged)
    await execute(db_url, f"INSERT INTO audit_log ({columns}) VALUES ({', '.join(':' + k for k in forged)})", **forged)
    seq, reason = await check(chain, None, {})
    assert seq == COUNT + 1, reason


async def test_an_appended_row_the_head_does_not_know_is_found(chain: AuditStore, db_url: str) -> None:
    rows = await read_rows(db_url)
    forged = dict(rows[-1], seq=COUNT + 1, prev_hash=rows[-1]["entry_hash"], actor="tg:666")
    forged["entry_hash"] = hash_row(forged)
    await execute(db_url, f"INSERT INTO audit_log ({', '.join(forged)}) VALUES ({', '.join(':' + k for k in forged)})", **forged)
    seq, reason = await check(chain, None, {})
    assert seq == COUNT + 1 and "head" in (reason or "")


async def test_a_truncated_tail_past_a_checkpoint_is_found(
    chain: AuditStore, db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    write_checkpoint(await chain.head(), export_path, audit_key, datetime.now(timezone.utc))
    rows = await read_rows(db_url)
    # The attacker removes the last three entries and moves the head back to match.
    await execute(db_url, "DELETE FROM audit_log WHERE seq > :seq", seq=COUNT - 3)
    await execute(db_url, "UPDATE audit_head SET seq = :seq, entry_hash = :hash", seq=COUNT - 3, hash=rows[COUNT - 4]["entry_hash"])
    assert (await check(chain, None, {}))[0] is None
    seq, reason = await check(chain, export_path, trusted)
    assert seq == COUNT - 2 and "tail" in (reason or "")


async def test_a_chain_rebuilt_from_genesis_is_found(
    chain: AuditStore, db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    write_checkpoint(await chain.head(), export_path, audit_key, datetime.now(timezone.utc))
    await fill(chain, 3)  # the trail goes on past the checkpoint

    def edit_middle(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[MIDDLE - 1]["outcome"] = "rewritten history"
        return rows

    await rewrite(db_url, edit_middle)
    seq, reason = await check(chain, export_path, trusted)
    assert seq == COUNT and "checkpoint" in (reason or "")


async def test_a_checkpoint_of_another_chain_is_found(
    db_url: str, tmp_path: Path, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    other = await AuditStore.open(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    await fill(other, 2)
    write_checkpoint(await other.head(), export_path, audit_key, datetime.now(timezone.utc))
    await other.close()
    store = await AuditStore.open(db_url)
    await fill(store, 2)
    try:
        seq, reason = await check(store, export_path, trusted)
    finally:
        await store.close()
    assert seq == 2 and "replaced or rebuilt" in (reason or "")


async def test_an_edited_checkpoint_is_found(
    chain: AuditStore, export_path: Path, audit_key: SigningKey, trusted: dict
) -> None:
    checkpoint = write_checkpoint(await chain.head(), export_path, audit_key, datetime.now(timezone.utc))
    document = json.loads(checkpoint.path.read_text())
    document["seq"] = COUNT - 1
    checkpoint.path.write_text(json.dumps(document))
    seq, reason = await check(chain, export_path, trusted)
    assert seq == COUNT - 1 and "signature" in (reason or "")


async def test_a_checkpoint_signed_by_an_unknown_key_cannot_be_checked(
    chain: AuditStore, tmp_path: Path, export_path: Path, trusted: dict
) -> None:
    stranger = load_signing_key(generate_key_pair(tmp_path / "elsewhere", "stranger")[0])
    write_checkpoint(await chain.head(), export_path, stranger, datetime.now(timezone.utc))
    with pytest.raises(CheckpointError, match="unknown key 'stranger'"):
        await verify_chain(chain, export_path, trusted)


# -- exports ---------------------------------------------------------------------------


@pytest.fixture
async def exported(db_url: str, export_path: Path, audit_key: SigningKey, trusted: dict) -> Any:
    """A chain of 12 whose first 8 entries went to an export (old) and 4 stayed (recent, checkpointed)."""
    clock = Clock()
    store = await AuditStore.open(db_url, clock=clock)
    await fill(store, 8)
    clock.advance(days=100)
    await fill(store, 4)
    result = await export_older_than(store, export_path, audit_key, clock.now - timedelta(days=90), clock.now, trusted)
    assert (result.exported, result.first_seq, result.last_seq, result.removed) == (8, 1, 8, 8)
    assert result.manifest is not None
    # The recent four are vouched for as the executor would (verification asks that of old entries).
    write_checkpoint(await store.head(), export_path, audit_key, clock.now)
    yield store, result.manifest
    await store.close()


async def test_an_untampered_export_verifies_with_the_database(exported: Any, export_path: Path, trusted: dict) -> None:
    store, _ = exported
    report = await verify_chain(store, export_path, trusted)
    assert report.ok, report.summary()
    assert (report.entries, report.exported, report.last_seq) == (COUNT, 8, COUNT)


async def test_a_tampered_export_file_is_found(exported: Any, export_path: Path, trusted: dict) -> None:
    store, manifest_path = exported
    data_path = manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".jsonl.gz"))
    lines = gzip.decompress(data_path.read_bytes()).decode().splitlines()
    lines[3] = lines[3].replace("tg:1001", "tg:1002")
    data_path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    seq, reason = await check(store, export_path, trusted)
    assert seq == 1 and "manifest" in (reason or "")


async def test_a_tampered_export_and_manifest_are_found(exported: Any, export_path: Path, trusted: dict) -> None:
    store, manifest_path = exported
    data_path = manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".jsonl.gz"))
    lines = gzip.decompress(data_path.read_bytes()).decode().splitlines()
    lines[3] = lines[3].replace("tg:1001", "tg:1002")
    data_path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    document = json.loads(manifest_path.read_text())
    document["sha256"] = hashlib.sha256(data_path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(document))
    seq, reason = await check(store, export_path, trusted)
    assert seq == 1 and "signature" in (reason or "")


async def test_a_missing_export_is_found(exported: Any, export_path: Path, trusted: dict) -> None:
    store, manifest_path = exported
    manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".jsonl.gz")).unlink()
    seq, reason = await check(store, export_path, trusted)
    assert seq == 1 and "missing" in (reason or "")
    manifest_path.unlink()
    seq, reason = await check(store, export_path, trusted)
    assert seq == 1 and "1..8 are missing" in (reason or "")
