"""The nightly verification and its watchdog, on a real daemon: what reaches the chat and
what the audit log records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from audit import AuditStore, load_checkpoints
from audit.canonical import parse_ts
from tests.audit.helpers import Clock, execute, flip, read_rows
from tests.scheduler.conftest import JobEvents, MakeScheduler, audit_entries, chat_texts


def now() -> datetime:
    return datetime.now(timezone.utc)


async def test_an_intact_chain_gets_a_short_green_summary(db_url: str, make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler(db_url=db_url)
    checkpoint = await scheduler.run_job("checkpoint")
    assert checkpoint is not None and checkpoint.status == "ok"
    head = await harness.executor.audit.head()
    result = await scheduler.run_job("verify")
    assert result is not None and result.status == "ok"
    total = head.seq + 1  # the verification's own "started" entry is verified too
    [text] = [t for kind, t in await chat_texts(harness) if kind == "scheduler.verify"]
    lines = text.splitlines()
    assert lines[0] == "✅ Audit chain intact"
    assert lines[1] == f"{total} entries, seq 1..{total}"
    assert lines[2] == f"checkpoint seq {checkpoint.params['seq']} matches"
    assert lines[3].startswith("⏱ ") and lines[3].endswith(" s")
    started, finished = await audit_entries(harness, "scheduler.verify")
    assert (started.decision, finished.decision) == ("started", "ok")
    assert finished.params["entries"] == total and finished.params["last_seq"] == total
    assert finished.outcome is not None and finished.outcome.startswith(f"ok: {total} entries")


async def test_the_checkpoint_is_written_and_posted_with_its_witness_line(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    result = await scheduler.run_job("checkpoint")
    head = await harness.executor.audit.head()  # the run's "ok" entry came after the checkpoint
    assert result is not None and result.params["seq"] == head.seq - 1
    [(kind, text)] = await chat_texts(harness)
    assert kind == "scheduler.checkpoint"
    assert text == f"🔏 Audit checkpoint: seq {head.seq - 1} · {result.params['entry_hash'][:12]}…"
    [written] = load_checkpoints(harness.settings.export_path, harness.executor.trusted_audit_keys)
    assert (written.seq, written.entry_hash) == (result.params["seq"], result.params["entry_hash"])
    assert result.witness == written.witness_line()


async def test_a_tampered_entry_raises_an_alert_naming_its_seq(db_url: str, make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler(db_url=db_url)
    for _ in range(4):
        await harness.executor.audit.append(actor="tg:4", action="restart", decision="executed", target="web")
    row = (await read_rows(db_url))[2]
    await execute(db_url, "UPDATE audit_log SET target = :target WHERE seq = 3", target=flip(row["target"] or "web"))
    result = await scheduler.run_job("verify")
    assert result is not None and result.status == "alert"
    [(_, text)] = await chat_texts(harness)
    assert text.splitlines()[:3] == [
        "🚨 AUDIT CHAIN BROKEN",
        "First broken entry: seq 3",
        "Reason: entry_hash does not match the entry's contents (edited)",
    ]
    finished = (await audit_entries(harness, "scheduler.verify"))[-1]
    assert finished.decision == "alert" and finished.params["broken_seq"] == 3


async def test_no_successful_verification_for_26_hours_alerts_once(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    # A fresh install: nothing was due yet, so nothing to say.
    assert (await scheduler.run_job("verify-watchdog")).status == "ok"  # type: ignore[union-attr]
    verified = await scheduler.run_job("verify")
    assert verified is not None and verified.status == "ok"
    await chat_texts(harness)
    verified_at = parse_ts((await audit_entries(harness, "scheduler.verify"))[-1].ts)
    for hours in (1, 25, 26):
        result = await scheduler.run_job("verify-watchdog", now=verified_at + timedelta(hours=hours))
        assert result is not None and result.status == "ok", hours
    assert await chat_texts(harness) == []
    late = await scheduler.run_job("verify-watchdog", now=verified_at + timedelta(hours=27))
    assert late is not None and late.status == "alert" and late.then_run == ("verify",)
    [(kind, text)] = await chat_texts(harness)
    assert kind == "scheduler.verify-watchdog"
    lines = text.splitlines()
    assert lines[0] == "⚠️ Audit chain not verified"
    assert lines[1].startswith("No verification found the chain intact since ") and lines[1].endswith(" (27h 00m ago).")
    assert lines[2] == "The nightly check (02:30) did not run or did not pass."
    [alert] = await audit_entries(harness, "scheduler.verify-watchdog")  # quiet runs leave no entry
    assert alert.decision == "alert"


async def test_the_watchdog_says_it_once_a_day_not_every_hour(sqlite_url: str, make_scheduler: MakeScheduler) -> None:
    # The last good verification was 30 hours ago (written with the clock back then).
    clock = Clock(now() - timedelta(hours=30))
    store = await AuditStore.open(sqlite_url, clock=clock)
    await store.append(actor="scheduler", action="scheduler.verify", decision="ok", outcome="ok: 1 entries")
    await store.close()
    harness, scheduler = await make_scheduler(db_url=sqlite_url)
    first = await scheduler.run_job("verify-watchdog")
    assert first is not None and first.status == "alert"
    [(_, text)] = await chat_texts(harness)
    assert text.splitlines()[1].endswith(" (30h 00m ago).")
    for minutes in (60, 120, 23 * 60):
        later = await scheduler.run_job("verify-watchdog", now=now() + timedelta(minutes=minutes))
        assert later is not None and later.status == "ok", minutes
    assert await chat_texts(harness) == []
    # A day after the alert, still nothing verified: said again.
    next_day = await scheduler.run_job("verify-watchdog", now=now() + timedelta(hours=24, minutes=1))
    assert next_day is not None and next_day.status == "alert"


async def test_a_chain_never_verified_alerts_and_the_verification_runs_at_once(make_scheduler: MakeScheduler) -> None:
    harness, scheduler = await make_scheduler()
    events = JobEvents(scheduler)
    scheduler.start()
    result = await scheduler.run_job("verify-watchdog", now=now() + timedelta(hours=27))
    assert result is not None and result.status == "alert"
    await events.wait_for("verify")  # run_soon: the scheduler runs it now, as a scheduled run
    kinds = [kind for kind, _ in await chat_texts(harness) if kind.startswith("scheduler.verify")]
    assert kinds == ["scheduler.verify-watchdog", "scheduler.verify"]
    assert [e.decision for e in await audit_entries(harness, "scheduler.verify")] == ["alert", "started", "ok"]
