"""Appending: gapless under concurrency, durable across a SIGKILL, bad values refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audit import AuditError, AuditStore, verify_chain
from tests.audit.helpers import read_rows

WRITERS, PER_WRITER = 50, 200


async def test_concurrent_appenders_leave_a_gapless_valid_chain(db_url: str) -> None:
    store = await AuditStore.open(db_url)

    async def writer(number: int) -> list[int]:
        seqs = []
        for index in range(PER_WRITER):
            entry = await store.append(actor=f"tg:{number}", action="status", decision="allowed", params={"i": index})
            seqs.append(entry.seq)
        return seqs

    try:
        results = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        report = await verify_chain(store, None, {})
        head = await store.head()
    finally:
        await store.close()
    seqs = sorted(seq for seqs in results for seq in seqs)
    assert seqs == list(range(1, WRITERS * PER_WRITER + 1))
    assert report.ok and report.entries == WRITERS * PER_WRITER
    assert head.seq == WRITERS * PER_WRITER
    # Each writer's own entries appear in the order it appended them.
    rows = await read_rows(db_url)
    for number in range(WRITERS):
        mine = [json.loads(r["params"])["i"] for r in rows if r["actor"] == f"tg:{number}"]
        assert mine == list(range(PER_WRITER))


async def test_an_append_whose_caller_gave_up_is_written_all_the_same(db_url: str) -> None:
    """A request cancelled while its entry waits in the batch (a client hung up) does not take
    the entry back, and the others' appends are unharmed."""
    store = await AuditStore.open(db_url)
    try:
        waiting = [asyncio.create_task(store.append(actor="tg:1", action="status", decision="allowed", params={"i": i})) for i in range(20)]
        await asyncio.sleep(0)  # every append has queued its entry
        waiting[7].cancel()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        last = await store.append(actor="tg:1", action="status", decision="allowed", params={"i": 20})
        report = await verify_chain(store, None, {})
    finally:
        await store.close()
    assert isinstance(done[7], asyncio.CancelledError)
    rows = await read_rows(db_url)
    assert report.ok and last.seq == max(r["seq"] for r in rows)
    assert sorted(json.loads(r["params"])["i"] for r in rows if r["actor"] == "tg:1") == list(range(21))


async def test_two_stores_on_one_database_share_the_chain(db_url: str) -> None:
    """Two processes' worth of writers (the daemon and the CLI) serialize on the database lock."""
    first, second = await AuditStore.open(db_url), await AuditStore.open(db_url)
    try:
        await asyncio.gather(
            *(first.append(actor="a", action="x", decision="d") for _ in range(100)),
            *(second.append(actor="b", action="x", decision="d") for _ in range(100)),
        )
        report = await verify_chain(first, None, {})
    finally:
        await first.close()
        await second.close()
    assert report.ok and report.entries == 200


async def test_reopening_keeps_the_chain_and_migrations_run_once(db_url: str) -> None:
    store = await AuditStore.open(db_url)
    await store.append(actor="a", action="x", decision="d")
    chain_id = (await store.head()).chain_id
    await store.close()
    store = await AuditStore.open(db_url)
    try:
        entry = await store.append(actor="a", action="x", decision="d")
        head = await store.head()
    finally:
        await store.close()
    assert entry.seq == 2 and head.chain_id == chain_id


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"params": {"ratio": 1.5}}, "floating-point"),
        ({"params": ["not", "an", "object"]}, "must be an object"),
        ({"actor": 42}, "actor must be text"),
        ({"target": "\ud800"}, "lone surrogate"),
    ],
)
async def test_values_without_a_canonical_form_are_refused_and_nothing_is_written(
    sqlite_url: str, fields: dict, problem: str
) -> None:
    store = await AuditStore.open(sqlite_url)
    try:
        with pytest.raises(AuditError, match=problem):
            await store.append(**{"actor": "a", "action": "x", "decision": "d", **fields})
        assert (await store.head()).seq == 0
    finally:
        await store.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from audit import AuditStore

    async def main(url):
        store = await AuditStore.open(url)
        n = 0
        while True:
            batch = [store.append(actor="tg:1", action="restart", decision="allowed", params={"n": n + i}) for i in range(8)]
            for entry in await asyncio.gather(*batch):
                sys.stdout.write(f"{entry.seq} {entry.entry_hash}\\n")
            sys.stdout.flush()
            n += 8

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_every_returned_append_survives_a_sigkill(db_url: str, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    acknowledged: dict[int, str] = {}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seq, entry_hash = line.split()
            acknowledged[int(seq)] = entry_hash
            if len(acknowledged) >= 400:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert len(acknowledged) >= 400
    store = await AuditStore.open(db_url)
    try:
        report = await verify_chain(store, None, {})
    finally:
        await store.close()
    assert report.ok, report.summary()
    rows = {row["seq"]: row["entry_hash"] for row in await read_rows(db_url)}
    assert all(rows.get(seq) == entry_hash for seq, entry_hash in acknowledged.items())
