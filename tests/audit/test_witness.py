"""Fail closed and witnessed: what ``wingman audit verify`` says when checkpoint files are gone,
stale, or contradicted by a witness line pasted back from the team chat."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit import AuditStore, load_signing_key, write_checkpoint
from audit.checkpoints import CHECKPOINT_INTERVAL, UNCOVERED_LIMIT, parse_witness
from audit.errors import CheckpointError
from tests.audit.helpers import Clock, execute, fill, read_rows, rewrite
from tests.audit.test_cli import one_line_error, wingman

COUNT = 40


def url_of(home: Path) -> str:
    return f"sqlite+aiosqlite:///{home / 'data' / 'wingman.db'}"


def build(home: Path, count: int, *, age: timedelta) -> None:
    """``count`` entries written ``age`` ago."""

    async def run() -> None:
        store = await AuditStore.open(url_of(home), clock=Clock(datetime.now(timezone.utc) - age))
        await fill(store, count)
        await store.close()

    asyncio.run(run())


def checkpoint(home: Path) -> str:
    """``wingman audit checkpoint`` (the audit key is made on first use); its witness line."""
    result = wingman("audit", "checkpoint", cwd=home)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("witness line")]
    return line.split(": ", 1)[1]


def delete_checkpoint_files(home: Path) -> None:
    shutil.rmtree(home / "data" / "audit" / "checkpoints")


def cut_to(home: Path, keep: int) -> None:
    """Truncate the chain to its first ``keep`` entries, the head moved to match."""
    url = url_of(home)
    rows = asyncio.run(read_rows(url))
    asyncio.run(execute(url, "DELETE FROM audit_log WHERE seq > :seq", seq=keep))
    asyncio.run(execute(url, "UPDATE audit_head SET seq = :seq, entry_hash = :hash", seq=keep, hash=rows[keep - 1]["entry_hash"]))


def edit_and_rehash(home: Path, seq: int) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[seq - 1]["outcome"] = "rewritten history"
        return rows

    asyncio.run(rewrite(url_of(home), change))


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    """A chain of 40 entries written two days ago, with a checkpoint (the audit key exists)."""
    build(tmp_path, COUNT, age=timedelta(days=2))
    checkpoint(tmp_path)
    return tmp_path


def test_a_fresh_chain_without_checkpoints_still_verifies(tmp_path: Path) -> None:
    build(tmp_path, 10, age=timedelta(minutes=5))
    checkpoint(tmp_path)  # makes the audit key: its public half is now known
    delete_checkpoint_files(tmp_path)
    result = wingman("audit", "verify", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no signed checkpoint yet" in result.stdout


def test_a_truncation_with_the_checkpoint_files_deleted_exits_1(old_home: Path) -> None:
    cut_to(old_home, 20)
    delete_checkpoint_files(old_home)
    result = wingman("audit", "verify", cwd=old_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "no checkpoint covers seq 1..20: truncation or rewrite cannot be ruled out"


def test_a_full_rehash_with_the_checkpoint_files_deleted_exits_1(old_home: Path) -> None:
    edit_and_rehash(old_home, 7)
    delete_checkpoint_files(old_home)
    result = wingman("audit", "verify", cwd=old_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == f"no checkpoint covers seq 1..{COUNT}: truncation or rewrite cannot be ruled out"


def test_only_entries_older_than_the_interval_need_a_checkpoint(old_home: Path, tmp_path_factory: Any) -> None:
    # Entries after the checkpoint but younger than the interval (plus slack): intact.
    build(old_home, 5, age=UNCOVERED_LIMIT - timedelta(minutes=15))
    build(old_home, 3, age=timedelta(minutes=1))
    assert wingman("audit", "verify", cwd=old_home).returncode == 0
    # Entries after the checkpoint and older than that: nothing vouches for them.
    other = tmp_path_factory.mktemp("other")
    build(other, COUNT, age=timedelta(days=2))
    checkpoint(other)
    build(other, 3, age=UNCOVERED_LIMIT + timedelta(minutes=5))
    build(other, 2, age=timedelta(minutes=1))
    result = wingman("audit", "verify", cwd=other)
    assert result.returncode == 1
    assert result.stdout.strip() == f"no checkpoint covers seq {COUNT + 1}..{COUNT + 3}: truncation or rewrite cannot be ruled out"
    assert UNCOVERED_LIMIT > CHECKPOINT_INTERVAL


def test_without_the_audit_key_checkpoints_are_not_required_but_it_says_so(tmp_path: Path) -> None:
    build(tmp_path, 10, age=timedelta(days=2))
    result = wingman("audit", "verify", cwd=tmp_path)
    assert result.returncode == 0
    assert "the audit key's public half is not known here" in result.stdout


def test_a_stale_newest_checkpoint_is_a_warning(tmp_path: Path) -> None:
    build(tmp_path, 10, age=timedelta(days=3))
    checkpoint(tmp_path)
    key = load_signing_key(tmp_path / "data" / "audit.key")

    async def stale() -> None:
        store = await AuditStore.open(url_of(tmp_path))
        delete_checkpoint_files(tmp_path)
        write_checkpoint(await store.head(), tmp_path / "data" / "audit", key, datetime.now(timezone.utc) - timedelta(days=2))
        await store.close()

    asyncio.run(stale())
    result = wingman("audit", "verify", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    [warning] = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert "is 48 hours old" in warning and "at least daily" in warning


# -- witness lines ------------------------------------------------------------------------


def test_a_pasted_witness_line_catches_a_rewrite_made_after_it(tmp_path: Path) -> None:
    build(tmp_path, COUNT, age=timedelta(minutes=10))
    witness = checkpoint(tmp_path)
    assert witness.startswith("wingman-checkpoint v1 audit ") and len(witness) < 260
    ok = wingman("audit", "verify", "--witness", witness, cwd=tmp_path)
    assert ok.returncode == 0 and "1 witness line match" in ok.stdout, ok.stdout + ok.stderr

    # An attacker on the host: rewrites an entry, rehashes the chain, removes the checkpoint
    # files and signs a fresh checkpoint with the audit key that lives on this host.
    edit_and_rehash(tmp_path, 12)
    delete_checkpoint_files(tmp_path)
    checkpoint(tmp_path)
    assert wingman("audit", "verify", cwd=tmp_path).returncode == 0  # every copy on the host agrees

    # A file may hold the chat messages as pasted: only the checkpoint lines count.
    (tmp_path / "witness.txt").write_text(f"🔏 Audit checkpoint: seq {COUNT}\n{witness}\nKeep it: …\n")
    for args, label in ((["--witness", witness], "--witness 1"), (["--witness-file", "witness.txt"], "witness.txt line 2")):
        result = wingman("audit", "verify", *args, cwd=tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        # The witness vouches for seq 40; the rehash changed every entry from 12 on.
        assert result.stdout.strip() == f"broken at seq {COUNT}: differs from the signed checkpoint {label} (the chain was rewritten)"


def test_a_witness_line_catches_a_truncation_below_it(tmp_path: Path) -> None:
    build(tmp_path, COUNT, age=timedelta(minutes=10))
    witness = checkpoint(tmp_path)
    cut_to(tmp_path, 30)
    delete_checkpoint_files(tmp_path)
    checkpoint(tmp_path)
    result = wingman("audit", "verify", "--witness", witness, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"broken at seq 31: the chain ends at seq 30 but checkpoint --witness 1 vouches for seq {COUNT}: "
        "entries were removed from the tail"
    )


def test_a_witness_of_another_chain_means_the_database_was_replaced(tmp_path: Path) -> None:
    build(tmp_path, 5, age=timedelta(minutes=10))
    witness = checkpoint(tmp_path)
    (tmp_path / "data" / "wingman.db").unlink()
    build(tmp_path, 5, age=timedelta(minutes=10))  # a new chain, rebuilt from nothing
    result = wingman("audit", "verify", "--witness", witness, cwd=tmp_path)
    assert result.returncode == 1
    assert "replaced or rebuilt" in result.stdout


def test_bad_witness_lines_get_one_line_and_exit_2(tmp_path: Path) -> None:
    build(tmp_path, 5, age=timedelta(minutes=10))
    witness = checkpoint(tmp_path)
    words = witness.split(" ")
    altered_seq = " ".join([*words[:4], "4", *words[5:]])
    altered_sig = " ".join([*words[:-1], ("B" if words[-1][0] == "A" else "A") + words[-1][1:]])
    cases = [
        (["--witness", "hello"], "--witness 1 is not a checkpoint line"),
        (["--witness", witness, "--witness", witness[:-3]], "--witness 2 is not a checkpoint line"),
        (["--witness", altered_seq], "--witness 1: the signature does not hold"),
        (["--witness", altered_sig], "--witness 1: the signature does not hold"),
        (["--witness", witness.replace(" audit ", " stranger ")], "unknown key 'stranger'"),
        (["--witness-file", "missing.txt"], "--witness-file missing.txt: cannot read"),
        (["--witness-file", "empty.txt"], "--witness-file empty.txt: no line starting with 'wingman-checkpoint'"),
        (["--witness-file", "cut.txt"], "cut.txt line 1 is not a checkpoint line"),
    ]
    (tmp_path / "empty.txt").write_text("nothing to see\n")
    (tmp_path / "cut.txt").write_text(witness[:60] + "\n")
    for args, needle in cases:
        one_line_error(wingman("audit", "verify", *args, cwd=tmp_path), 2, needle)


def test_the_witness_line_round_trips(tmp_path: Path) -> None:
    build(tmp_path, 3, age=timedelta(minutes=1))
    checkpoint(tmp_path)
    key = load_signing_key(tmp_path / "data" / "audit.key")
    written = sorted((tmp_path / "data" / "audit" / "checkpoints").glob("*.json"))[-1]
    from audit import load_checkpoints

    [loaded] = load_checkpoints(tmp_path / "data" / "audit", {key.kid: key.public})
    assert loaded.path == written
    parsed = parse_witness(loaded.witness_line(), "pasted", {key.kid: key.public})
    assert (parsed.origin, parsed.seq, parsed.entry_hash, parsed.time, parsed.kid) == (
        loaded.origin, loaded.seq, loaded.entry_hash, loaded.time, loaded.kid,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="unknown key"):
        parse_witness(loaded.witness_line(), "pasted", {})
