"""Checkpoints often enough to matter, on a real daemon: every N entries without holding up an
append, hourly only when entries were added, never over a rewritten chain; the daily one
reaches the chat as a witness line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from audit import load_checkpoints, verify_chain, write_checkpoint
from audit.checkpoints import parse_witness
from tests.audit.helpers import execute, rewrite
from tests.harness import Harness
from tests.scheduler.conftest import MakeScheduler, audit_entries, chat_texts


def seqs(harness: Harness) -> list[int]:
    return [c.seq for c in load_checkpoints(harness.settings.export_path, harness.executor.trusted_audit_keys)]


async def append(harness: Harness, count: int) -> None:
    for n in range(count):
        await harness.executor.audit.append(actor="tg:4", action="restart", decision="executed", target=f"web-{n}")


async def test_every_n_entries_a_checkpoint_is_written_without_holding_up_appends(make_harness: Any) -> None:
    harness = await make_harness(checkpoint_every=5)
    scheduler = harness.daemon.scheduler
    assert seqs(harness) == [] and (await harness.executor.audit.head()).seq == 1  # executor.start
    # While a checkpoint cannot be written at all (its lock held), appends still return.
    async with scheduler.context.checkpoint_lock:
        await append(harness, 12)
        pending = scheduler.checkpointing
        assert pending is not None and not pending.done()
    await pending
    assert seqs(harness) == [13]  # the head when the checkpoint was signed
    await append(harness, 4)
    assert scheduler.checkpointing is pending  # 4 more are not 5
    await append(harness, 1)
    assert scheduler.checkpointing is not pending
    await scheduler.checkpointing
    assert seqs(harness) == [13, 18]
    report = await verify_chain(harness.executor.audit, harness.settings.export_path, harness.executor.trusted_audit_keys)
    assert report.ok and report.checkpoint is not None and report.checkpoint.seq == 18
    assert await chat_texts(harness) == []  # frequent checkpoints are not chat news


async def test_the_hourly_checkpoint_is_written_only_when_entries_were_added(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    first = await scheduler.run_job("checkpoint-frequent")
    assert first is not None and first.status == "ok" and seqs(harness) == [1]
    again = await scheduler.run_job("checkpoint-frequent")
    assert again is not None and again.summary == "nothing added since the last checkpoint" and seqs(harness) == [1]
    await append(harness, 2)
    await scheduler.run_job("checkpoint-frequent")
    assert seqs(harness) == [1, 3]
    assert await audit_entries(harness, "scheduler.checkpoint") == []  # quiet: no entry that would need a checkpoint
    assert await chat_texts(harness) == []


async def test_the_executor_does_not_sign_a_rewritten_chain(db_url: str, make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler(db_url=db_url)
    await append(harness, 6)
    assert (await scheduler.run_job("checkpoint-frequent")).status == "ok"  # type: ignore[union-attr]
    await append(harness, 2)

    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[3]["outcome"] = "rewritten history"
        return rows

    await rewrite(db_url, edit)
    # The files gone too: the executor still remembers what it signed last.
    for checkpoint in harness.settings.export_path.joinpath("checkpoints").glob("*.json"):
        checkpoint.unlink()
    refused = await scheduler.run_job("checkpoint-frequent")
    assert refused is not None and refused.status == "alert"
    assert refused.summary.startswith("checkpoint not written: broken at seq 7: seq 7 differs from checkpoint checkpoint-000000000007-")
    assert refused.summary.endswith("(the chain was rewritten)")
    assert seqs(harness) == []
    [(kind, text)] = await chat_texts(harness)
    assert kind == "scheduler.checkpoint-frequent"
    assert text.startswith("🚨 Audit checkpoint NOT written: the chain no longer matches its last checkpoint")


async def test_the_daily_checkpoint_reaches_the_chat_as_a_witness_line(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    result = await scheduler.run_job("checkpoint")
    assert result is not None and result.witness is not None
    bot = harness.client()
    [event] = await bot.poll(wait=0)
    await bot.ack([event["id"]])
    witness = event["payload"]["witness"]
    pasted = parse_witness(witness, "pasted", harness.executor.trusted_audit_keys)
    assert (pasted.seq, pasted.entry_hash) == (result.params["seq"], result.params["entry_hash"])
    report = await verify_chain(
        harness.executor.audit, None, harness.executor.trusted_audit_keys, witnesses=[pasted]
    )  # the files are not needed: the line alone vouches
    assert report.ok and report.witnesses == 1


async def test_a_stale_newest_checkpoint_makes_the_nightly_verification_alert(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    executor = harness.executor
    two_days_ago = datetime.now(timezone.utc) - timedelta(days=2)
    write_checkpoint(await executor.audit.head(), executor.export_path, executor.audit_key, two_days_ago)
    result = await scheduler.run_job("verify")
    assert result is not None and result.status == "alert"
    [(_, text)] = await chat_texts(harness)
    lines = text.splitlines()
    assert lines[0] == "⚠️ Audit chain intact, but checkpoints are overdue"
    assert "is 48 hours old" in lines[1]
    assert lines[2] == "✅ Audit chain intact"


async def test_the_executor_does_not_sign_a_database_swapped_under_it(sqlite_url: str, make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler(db_url=sqlite_url)
    assert (await scheduler.run_job("checkpoint-frequent")).status == "ok"  # type: ignore[union-attr]
    await append(harness, 1)
    await execute(sqlite_url, "UPDATE audit_head SET chain_id = :chain", chain="0" * 32)  # another chain's identity
    refused = await scheduler.run_job("checkpoint-frequent")
    assert refused is not None and refused.status == "alert" and "belongs to chain" in refused.summary
    assert seqs(harness) == [1]
