"""``wingman backup``: a backup restored into a fresh data directory verifies there.

The chain has retention exports, a signed checkpoint and newer entries; verification after
the restore runs the real command (``python -m wingman audit verify``) in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from audit import AuditStore, export_older_than, write_checkpoint
from audit.signing import load_or_create_signing_key
from executor import codes
from tests.conftest import fresh_pg_database, service_missing
from tests.ops.conftest import Site, migrate
from wingman.backup import BackupError, make_backup
from executor.settings import ExecutorSettings

ROOT = Path(__file__).resolve().parents[2]
# Recent: `wingman audit verify` expects a checkpoint for entries older than the checkpoint interval.
NOW = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)


async def build_chain(settings: ExecutorSettings) -> None:
    """Old entries moved to an export, a checkpoint, then newer entries."""
    clock = [NOW - timedelta(days=200)]
    store = await AuditStore.open(settings.database_url, clock=lambda: clock[0])
    key = load_or_create_signing_key(settings.audit_key_path)
    trusted = {key.kid: key.public}
    try:
        for n in range(6):
            await store.append(actor="tg:1", action="restart", decision="executed", target=f"web-{n}")
        clock[0] = NOW - timedelta(days=1)
        for n in range(4):
            await store.append(actor="tg:2", action="status", decision="executed")
        result = await export_older_than(store, settings.export_path, key, NOW - timedelta(days=90), NOW, trusted)
        assert result.exported == 6 and result.removed == 6
        write_checkpoint(await store.head(), settings.export_path, key, NOW)
        clock[0] = NOW
        for n in range(3):
            await store.append(actor="system", action="executor.start", decision="done")
    finally:
        await store.close()


def verify_in(data_dir: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wingman", "audit", "verify"],
        cwd=cwd, capture_output=True, text=True, check=False, timeout=120,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "WINGMAN_DATA_DIR": str(data_dir), **env},
    )  # fmt: skip


def restore(backup: Path, data_dir: Path) -> None:
    """The documented restore: copy the backup's contents into an empty data directory."""
    shutil.copytree(backup, data_dir)
    (data_dir / "MANIFEST.json").unlink()


async def test_a_restored_sqlite_backup_verifies(site: Site, tmp_path: Path) -> None:
    settings = site.executor()
    await build_chain(settings)
    result = await make_backup(settings, site.bot(), tmp_path / "backups", now=NOW)
    assert result.directory == tmp_path / "backups" / f"wingman-backup-{NOW:%Y%m%dT%H%M%SZ}"
    assert stat.S_IMODE(result.directory.stat().st_mode) == 0o700
    assert result.verified is not None and "6 of them in exports" in result.verified
    files = set(result.files)
    assert {"wingman.db", "audit.pub", "keys/bot.pub"} <= files
    assert any(name.startswith("audit/exports/") and name.endswith(".manifest.json") for name in files)
    assert any(name.startswith("audit/checkpoints/checkpoint-") for name in files)
    assert not [name for name in files if name.endswith(".key")], "private keys only when asked"
    assert not list(result.directory.glob("wingman.db-*")), "one self-contained database file"

    fresh = tmp_path / "restored"
    restore(result.directory, fresh)
    verified = verify_in(fresh, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok: 13 entries (seq 1..13), 6 of them in exports, newest checkpoint seq 10 matches")

    # The restored files are what verification checked: remove an export and it fails.
    for path in (fresh / "audit" / "exports").glob("*.jsonl.gz"):
        path.unlink()
    assert verify_in(fresh, tmp_path).returncode != 0


async def test_private_keys_only_with_the_flag(site: Site, tmp_path: Path) -> None:
    settings = site.executor()
    await build_chain(settings)
    codes.enroll(settings.data_dir / codes.DIRECTORY, 42)
    without = await make_backup(settings, site.bot(), tmp_path / "a", now=NOW)
    assert not any(name.startswith("approver-codes") or name.endswith(".key") for name in without.files)
    result = await make_backup(settings, site.bot(), tmp_path / "b", now=NOW, include_private_keys=True)
    for name in ("audit.key", "keys/bot.key", "approver-codes/42"):
        assert name in result.files
        assert stat.S_IMODE((result.directory / name).stat().st_mode) == 0o600
    # With the private audit key the restored directory can run the executor's commands too.
    fresh = tmp_path / "restored"
    restore(result.directory, fresh)
    checkpoint = subprocess.run(
        [sys.executable, "-m", "wingman", "audit", "checkpoint"], cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "WINGMAN_DATA_DIR": str(fresh)},
    )  # fmt: skip
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert verify_in(fresh, tmp_path).returncode == 0


async def test_a_backup_taken_while_the_executor_writes_is_consistent(site: Site, tmp_path: Path) -> None:
    settings = site.executor()
    await build_chain(settings)
    store = await AuditStore.open(settings.database_url)
    stop = asyncio.Event()

    async def keep_writing() -> int:
        written = 0
        while not stop.is_set():
            await store.append(actor="tg:1", action="status", decision="executed")
            written += 1
        return written

    writer = asyncio.create_task(keep_writing())
    try:
        await asyncio.sleep(0.05)
        result = await make_backup(settings, None, tmp_path / "b", now=NOW)
    finally:
        stop.set()
        written = await writer
        await store.close()
    assert written > 0
    fresh = tmp_path / "restored"
    restore(result.directory, fresh)
    verified = verify_in(fresh, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_broken_chain_is_not_kept_as_a_backup(site: Site, tmp_path: Path) -> None:
    import sqlite3

    settings = site.executor()
    await build_chain(settings)
    connection = sqlite3.connect(settings.data_dir / "wingman.db")
    connection.execute("UPDATE audit_log SET actor = 'tg:666' WHERE seq = 8")
    connection.commit()
    connection.close()
    with pytest.raises(BackupError, match="does not verify.*broken at seq 8"):
        await make_backup(settings, None, tmp_path / "b", now=NOW)
    assert not list((tmp_path / "b").iterdir()), "nothing half-made is left behind"


async def test_no_database_is_one_clear_error(site: Site, tmp_path: Path) -> None:
    settings = site.executor(db_url=f"sqlite+aiosqlite:///{tmp_path / 'nowhere.db'}")
    load_or_create_signing_key(settings.audit_key_path)
    with pytest.raises(BackupError, match="no such database file"):
        await make_backup(settings, None, tmp_path / "b", now=NOW)


async def test_a_restored_postgresql_backup_verifies(site: Site, tmp_path: Path, pg_url: str) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        service_missing("pg_dump/pg_restore are not installed (Debian: apt-get install postgresql-client)")
    await migrate(pg_url)
    settings = site.executor(db_url=pg_url)
    await build_chain(settings)
    result = await make_backup(settings, None, tmp_path / "b", now=NOW)
    assert result.database == "wingman.pgdump" and result.verified is None

    fresh = tmp_path / "restored"
    restore(result.directory, fresh)
    async with fresh_pg_database() as target:
        plain = target.replace("postgresql+asyncpg://", "postgresql://", 1)
        restored = subprocess.run(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", plain, str(fresh / "wingman.pgdump")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        verified = verify_in(fresh, tmp_path, WINGMAN_DB_URL=target)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "6 of them in exports, newest checkpoint seq 10 matches" in verified.stdout


async def test_postgresql_without_pg_dump_is_one_clear_error(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = site.executor(db_url="postgresql+asyncpg://wingman:secret@127.0.0.1:1/wingman")
    load_or_create_signing_key(settings.audit_key_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BackupError) as raised:
        await make_backup(settings, None, tmp_path / "b", now=NOW)
    message = str(raised.value)
    assert "pg_dump is not on PATH" in message and "postgresql-client" in message and "\n" not in message
    assert "secret" not in message


def test_backup_main_prints_where_it_wrote(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wingman.backup import backup_main

    asyncio.run(build_chain(site.executor()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WINGMAN_DATA_DIR", str(site.data))
    said: list[str] = []
    assert backup_main(tmp_path / "out", echo=said.append, complain=said.append) == 0
    assert said[0].startswith(f"backup written to {tmp_path / 'out'}/wingman-backup-")
    assert said[1].startswith("verified: ok: 13 entries")
    monkeypatch.setenv("WINGMAN_DATA_DIR", str(tmp_path / "empty"))
    errors: list[str] = []
    assert backup_main(tmp_path / "out2", echo=errors.append, complain=errors.append) == 2
    assert len(errors) == 1 and errors[0].startswith("wingman: backup failed:")
