"""``wingman audit …`` and ``wingman keys generate`` as an operator runs them: exit codes and one line."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from audit import AuditStore
from tests.audit.helpers import Clock, execute, fill, flip, read_rows

ROOT = Path(__file__).resolve().parents[2]


def wingman(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real command in a clean environment (no .env, no settings but these)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WINGMAN_", "RETENTION_", "PROXMOX_", "TELEGRAM_"))}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "wingman", *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data directory holding a 10-entry chain in the default SQLite database."""

    async def build() -> None:
        store = await AuditStore.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'wingman.db'}")
        await fill(store, 10)
        await store.close()

    asyncio.run(build())
    return tmp_path


def test_verify_intact_then_checkpoint_then_broken(home: Path) -> None:
    result = wingman("audit", "verify", cwd=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 10 entries (seq 1..10)")
    assert "no signed checkpoint yet" in result.stdout

    result = wingman("audit", "checkpoint", cwd=home)
    assert result.returncode == 0, result.stderr
    assert "checkpoint at seq 10" in result.stdout
    assert stat.S_IMODE((home / "data" / "audit.key").stat().st_mode) == 0o600
    assert len(list((home / "data" / "audit" / "checkpoints").glob("checkpoint-*.json"))) == 1

    result = wingman("audit", "verify", cwd=home)
    assert result.returncode == 0 and "newest checkpoint seq 10 matches" in result.stdout

    url = f"sqlite+aiosqlite:///{home / 'data' / 'wingman.db'}"
    row = asyncio.run(read_rows(url))[3]
    asyncio.run(execute(url, "UPDATE audit_log SET target = :t WHERE seq = 4", t=flip(row["target"])))
    result = wingman("audit", "verify", cwd=home)
    assert result.returncode == 1
    assert result.stdout.strip() == "broken at seq 4: entry_hash does not match the entry's contents (edited)"


def test_verify_on_postgresql_through_db_option(tmp_path: Path, pg_url: str) -> None:
    async def build() -> None:
        store = await AuditStore.open(pg_url)
        await fill(store, 5)
        await store.close()

    asyncio.run(build())
    result = wingman("audit", "verify", "--db", pg_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 5 entries")


def old_chain(home: Path, count: int) -> str:
    """Replace the chain in ``home`` with ``count`` entries written on 2026-01-01."""
    url = f"sqlite+aiosqlite:///{home / 'data' / 'wingman.db'}"
    (home / "data" / "wingman.db").unlink()

    async def build() -> None:
        store = await AuditStore.open(url, clock=Clock())
        await fill(store, count)
        await store.close()

    asyncio.run(build())
    return url


def test_export_dry_run_changes_nothing_and_tail_reads(home: Path) -> None:
    url = old_chain(home, 6)
    result = wingman("audit", "export", "--days", "30", "--dry-run", cwd=home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dry run: would export 6 entries (seq 1..6)"
    assert len(asyncio.run(read_rows(url))) == 6 and not (home / "data" / "audit").exists()
    result = wingman("audit", "tail", "-n", "3", cwd=home)
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["4", "5", "6"]


@pytest.mark.parametrize(
    ("args", "env", "code", "needles"),
    [
        (["audit", "verify"], {"WINGMAN_DATA_DIR": "nowhere"}, 2, ["nowhere/wingman.db", "no such database file"]),
        (["audit", "verify", "--db", "mysql://u:p@h/db"], {}, 2, ["'mysql'", "not supported", "sqlite+aiosqlite"]),
        (["audit", "verify", "--db", "::not a url::"], {}, 2, ["cannot be parsed"]),
        (["audit", "verify", "--db", "postgresql+asyncpg://u:secret@127.0.0.1:1/x"], {}, 2, ["127.0.0.1:1", "***"]),
        (["audit", "verify"], {"WINGMAN_READ_ONLY": "maybe"}, 2, ["WINGMAN_READ_ONLY:", "true/false"]),
        (["audit", "verify"], {"WINGMAN_ADMINS": "12,abc"}, 2, ["WINGMAN_ADMINS:"]),
        (["audit", "tail", "-n", "0"], {}, 2, []),
        (["audit"], {}, 2, []),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_2(
    home: Path, args: list[str], env: dict[str, str], code: int, needles: list[str]
) -> None:
    result = wingman(*args, cwd=home, **env)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    if needles:
        one_line_error(result, code, *needles)
    if "postgresql" in " ".join(args):
        assert "secret" not in result.stderr


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wingman.db").write_bytes(b"this is not sqlite\n" * 100)
    result = wingman("audit", "verify", cwd=tmp_path)
    one_line_error(result, 2, "file is not a database")
    assert (tmp_path / "data" / "wingman.db").read_bytes() == b"this is not sqlite\n" * 100


def test_a_database_without_audit_tables(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "wingman.db").execute("CREATE TABLE other (x)").connection.commit()
    one_line_error(wingman("audit", "verify", cwd=tmp_path), 2, "no audit tables")


def test_an_export_directory_that_cannot_be_made(home: Path) -> None:
    (home / "blocker").write_text("x")
    result = wingman("audit", "checkpoint", cwd=home, WINGMAN_AUDIT_EXPORT_PATH=str(home / "blocker" / "audit"))
    one_line_error(result, 2, "cannot create the directory")
    result = wingman("audit", "export", "--days", "1", cwd=home, WINGMAN_AUDIT_EXPORT_PATH=str(home / "blocker" / "audit"))
    one_line_error(result, 2, "cannot create the directory")
    assert len(asyncio.run(read_rows(f"sqlite+aiosqlite:///{home / 'data' / 'wingman.db'}"))) == 10


def test_checkpoint_signed_by_a_key_we_do_not_know(home: Path) -> None:
    assert wingman("audit", "checkpoint", cwd=home).returncode == 0
    (home / "data" / "audit.key").rename(home / "data" / "old.key")
    (home / "data" / "audit.pub").unlink()
    one_line_error(wingman("audit", "verify", cwd=home), 2, "unknown key 'audit'", "--key")
    result = wingman("audit", "verify", "--key", str(home / "data" / "old.key"), cwd=home)
    assert result.returncode == 2  # a key named 'old' is not the key named 'audit'


def test_a_manifest_whose_signature_fails(home: Path) -> None:
    old_chain(home, 6)
    result = wingman("audit", "export", "--days", "30", cwd=home)
    assert result.returncode == 0, result.stderr
    assert "exported 6 entries (seq 1..6)" in result.stdout
    assert wingman("audit", "verify", cwd=home).returncode == 0
    manifest = next((home / "data" / "audit" / "exports").glob("*.manifest.json"))
    document = json.loads(manifest.read_text())
    document["count"] = 5
    manifest.write_text(json.dumps(document))
    result = wingman("audit", "verify", cwd=home)
    assert result.returncode == 1
    assert result.stdout.startswith("broken at seq 1:") and "signature does not hold" in result.stdout


def test_keys_generate_writes_a_pair_and_never_overwrites(tmp_path: Path) -> None:
    result = wingman("keys", "generate", "--out", "keys", "--kid", "bot-2026", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bot-2026" in result.stdout and "keys/bot-2026.key" in result.stdout and "keys/bot-2026.pub" in result.stdout
    key, pub = tmp_path / "keys" / "bot-2026.key", tmp_path / "keys" / "bot-2026.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = key.read_bytes()
    one_line_error(wingman("keys", "generate", "--out", "keys", "--kid", "bot-2026", cwd=tmp_path), 2, "already exists")
    assert key.read_bytes() == before
    one_line_error(wingman("keys", "generate", "--out", "keys", "--kid", "../evil", cwd=tmp_path), 2, "not usable")


async def _swap(url: str, a: int, b: int) -> None:
    await execute(url, "UPDATE audit_log SET seq = -1 WHERE seq = :a", a=a)
    await execute(url, "UPDATE audit_log SET seq = :a WHERE seq = :b", a=a, b=b)
    await execute(url, "UPDATE audit_log SET seq = :b WHERE seq = -1", b=b)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_log SET outcome = 'nothing happened' WHERE seq = 4", "broken at seq 4: entry_hash does not match"),
        ("DELETE FROM audit_log WHERE seq = 4", "broken at seq 4: "),
        ("swap 4 5", "broken at seq 4: "),
    ],
    ids=["edited", "deleted", "swapped"],
)
def test_a_tampered_copy_gets_one_line_and_no_traceback(home: Path, tamper: str, expected: str) -> None:
    """Verification stops at the first broken entry while the next batch is being read
    ahead: the reader is closed with the database view, not after it."""
    url = f"sqlite+aiosqlite:///{home / 'data' / 'wingman.db'}"
    if tamper.startswith("swap"):
        asyncio.run(_swap(url, 4, 5))
    else:
        asyncio.run(execute(url, tamper))
    result = wingman("audit", "verify", cwd=home)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith(expected), line
