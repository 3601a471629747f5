"""Retention on a real daemon: audit entries exported then pruned (verification stays
green, nothing lost), operational rows pruned by their own settings, a dry run that
changes nothing, and an unusable export directory that prunes nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import AuditStore, load_manifests
from executor.deployments import deployments
from executor.schema import approval_votes, approvals, chat_messages, notifications, seen_tokens
from scheduler import ScheduleConfig
from tests.audit.helpers import Clock, fill, read_rows
from tests.harness import Harness
from tests.scheduler.conftest import MakeScheduler, audit_entries, chat_texts

DAY = timedelta(days=1)
TABLES = (deployments, approvals, approval_votes, notifications, chat_messages, seen_tokens)


async def seed_old_audit(url: str, base: datetime) -> None:
    """Ten entries around the 90-day boundary, written before the daemon's first entry:
    3 at 100 days, 2 a minute past 90 days, 2 a minute short of it, 3 at 80 days."""
    clock = Clock(base - 100 * DAY)
    store = await AuditStore.open(url, clock=clock)
    try:
        await fill(store, 3)
        clock.now = base - 90 * DAY - timedelta(minutes=1)
        await fill(store, 2)
        clock.now = base - 90 * DAY + timedelta(minutes=1)
        await fill(store, 2)
        clock.now = base - 80 * DAY
        await fill(store, 3)
    finally:
        await store.close()


def deployment(id: str, service: str, state: str, finished: float | None, *, action: str = "deploy") -> dict[str, Any]:
    return {
        "id": id, "service": service, "action": action, "requested_by": "tg:4", "approved_by": None,
        "requested_image": "app:2", "prev_image_id": "sha256:1", "prev_image_tag": "app:1",
        "new_image_id": "sha256:2", "new_image_tag": "app:2", "prev_container_id": "c1",
        "prev_container": json.dumps({"Id": "c1"}), "new_container_id": None, "state": state,
        "started_at": (finished or 0.0) - 60, "finished_at": finished, "outcome": None, "detail": None,
    }  # fmt: skip


def approval(id: str, state: str, decided: float | None, expires: float) -> dict[str, Any]:
    return {
        "id": id, "action": "deploy", "target": "web", "args": "{}", "binding": "x", "requester": "tg:4",
        "context": "{}", "tier": 2, "approvals_needed": 1, "state": state, "created_at": expires - 900,
        "expires_at": expires, "decided_by": "tg:2" if decided else None, "decided_at": decided, "result": None,
        "request_id": "r",
    }  # fmt: skip


async def seed_operational(engine: AsyncEngine, base: datetime) -> None:
    def ago(days: float) -> float:
        return (base - days * DAY).timestamp()

    rows = {
        deployments: [
            # web: six successful deploys 8..13 days old; the newest five stay for /rollback.
            *(deployment(f"web-{n}", "web", "succeeded", ago(8 + n)) for n in range(6)),
            deployment("api-only", "api", "succeeded", ago(20)),  # api's only way back: kept
            deployment("web-rb", "web", "succeeded", ago(8), action="rollback"),  # a rollback: not a way back
            deployment("db-new", "db", "succeeded", ago(6)),
            deployment("fail-old", "db", "rolled_back", ago(15)),
            deployment("fail-new", "db", "rolled_back", ago(13)),
            deployment("fail-worse", "db", "rollback_failed", ago(15)),
            deployment("rec-old", "db", "recovered", ago(31)),
            deployment("rec-new", "db", "recovered", ago(29)),
            deployment("open", "db", "verifying", None),  # recovery still needs it, however old
        ],
        approvals: [
            approval("exp-old", "expired", None, ago(31)),
            approval("done-old", "done", ago(31), ago(31) + 900),
            approval("rej-new", "rejected", ago(29), ago(29) + 900),
            approval("stuck", "pending", None, ago(40)),  # not final: never removed
        ],
        approval_votes: [
            {"approval_id": "done-old", "approver": "tg:2", "at": ago(31)},
            {"approval_id": "rej-new", "approver": "tg:3", "at": ago(29)},
        ],
        notifications: [
            {"chat_id": None, "kind": "k", "ref": "a1", "payload": "{}", "created_at": ago(32), "delivered_at": ago(31)},
            {"chat_id": None, "kind": "k", "ref": "a2", "payload": "{}", "created_at": ago(30), "delivered_at": ago(29)},
            {"chat_id": None, "kind": "k", "ref": None, "payload": "{}", "created_at": ago(100), "delivered_at": None},
        ],
        chat_messages: [
            {"ref": "a1", "chat_id": -100, "message_id": 1},  # its notifications are gone
            {"ref": "a2", "chat_id": -100, "message_id": 2},
            {"ref": "zz", "chat_id": -100, "message_id": 3},  # none at all
        ],
        seen_tokens: [
            {"jti": "old-token", "exp": base.timestamp() - 120},
            {"jti": "live-token", "exp": base.timestamp() + 600},
        ],
    }
    async with engine.begin() as conn:
        for table, values in rows.items():
            await conn.execute(insert(table), values)


async def snapshot_tables(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """The seeded operational rows, as they are now."""
    found = {}
    async with engine.connect() as conn:
        for table in TABLES:
            query = select(table)
            if table is notifications:
                query = query.where(notifications.c.kind == "k")  # not the run's own message
            rows = (await conn.execute(query)).all()
            found[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return found


async def ids(engine: AsyncEngine, table: Any, column: str) -> set[Any]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(table.c[column]))).scalars())


def engine_of(harness: Harness) -> AsyncEngine:
    assert harness.daemon is not None
    return harness.daemon._engine  # type: ignore[no-any-return]


async def test_entries_past_retention_are_exported_then_pruned_and_nothing_is_lost(
    db_url: str, make_scheduler: MakeScheduler
) -> None:
    base = datetime.now(timezone.utc)
    await seed_old_audit(db_url, base)
    harness, scheduler = await make_scheduler(db_url=db_url)
    result = await scheduler.run_job("retention", now=base)
    assert result is not None and result.status == "ok"
    assert (result.params["exported"], result.params["first_seq"], result.params["last_seq"]) == (5, 1, 5)
    remaining = await read_rows(db_url)
    head = await harness.executor.audit.head()
    assert [row["seq"] for row in remaining] == list(range(6, head.seq + 1))
    assert result.params["exported"] + len(remaining) == head.seq  # exported + retained = everything
    [manifest] = load_manifests(harness.settings.export_path, harness.executor.trusted_audit_keys)
    assert (manifest.first_seq, manifest.last_seq, manifest.count) == (1, 5, 5)
    [(kind, text)] = await chat_texts(harness)
    assert kind == "scheduler.retention"
    assert text.splitlines()[:2] == [
        "🧹 Retention",
        "Audit: 5 entries older than 90 days exported (seq 1..5) and removed",
    ]
    verified = await scheduler.run_job("verify")
    assert verified is not None and verified.status == "ok"
    assert verified.params["exported"] == 5 and verified.params["entries"] == head.seq + 1
    # The next run finds nothing more to do and says nothing.
    again = await scheduler.run_job("retention", now=base)
    assert again is not None and again.params["exported"] == 0
    assert [k for k, _ in await chat_texts(harness)] == ["scheduler.verify"]


async def test_operational_rows_are_pruned_each_by_its_setting(db_url: str, make_scheduler: MakeScheduler) -> None:
    base = datetime.now(timezone.utc)
    harness, scheduler = await make_scheduler(db_url=db_url)
    engine = engine_of(harness)
    await seed_operational(engine, base)
    result = await scheduler.run_job("retention", now=base)
    assert result is not None and result.status == "ok"
    assert result.params["rows"] == {
        "deployments succeeded": 2, "deployments failed": 2, "deployments other": 1, "notifications": 1,
        "chat messages": 2, "approval votes": 1, "approvals": 2, "seen tokens": 1,
    }  # fmt: skip
    assert await ids(engine, deployments, "id") == {
        "web-0", "web-1", "web-2", "web-3", "web-4", "api-only", "db-new", "fail-new", "rec-new", "open",
    }  # fmt: skip
    assert await ids(engine, approvals, "id") == {"rej-new", "stuck"}
    assert await ids(engine, approval_votes, "approval_id") == {"rej-new"}
    assert await ids(engine, chat_messages, "ref") == {"a2"}
    assert "old-token" not in await ids(engine, seen_tokens, "jti")
    async with engine.connect() as conn:
        kept = (await conn.execute(select(notifications.c.ref).where(notifications.c.kind == "k"))).scalars().all()
    assert set(kept) == {None, "a2"} and len(kept) == 2  # delivered 29 days ago, and never delivered
    [text] = [t for kind, t in await chat_texts(harness) if kind == "scheduler.retention"]
    assert text.splitlines() == [
        "🧹 Retention",
        "Audit: nothing older than 90 days",
        (
            "Removed: approvals 2 · chat messages 2 · deployments failed 2 · deployments succeeded 2 · "
            "approval votes 1 · deployments other 1 · notifications 1 · seen tokens 1"
        ),
    ]
    started, finished = await audit_entries(harness, "scheduler.retention")
    assert (started.decision, finished.decision) == ("started", "ok")
    assert finished.params["rows"] == result.params["rows"]


async def test_a_dry_run_only_reports(sqlite_url: str, make_scheduler: MakeScheduler) -> None:
    base = datetime.now(timezone.utc)
    await seed_old_audit(sqlite_url, base)
    harness, scheduler = await make_scheduler(ScheduleConfig(timezone="UTC", retention_dry_run=True), db_url=sqlite_url)
    engine = engine_of(harness)
    await seed_operational(engine, base)
    audit_before = await read_rows(sqlite_url)
    tables_before = await snapshot_tables(engine)
    result = await scheduler.run_job("retention", now=base)
    assert result is not None and result.status == "ok"
    assert (result.params["exported"], result.params["removed_entries"]) == (5, 0)
    assert sum(result.params["rows"].values()) == 12  # what the real run removes, counted
    assert await snapshot_tables(engine) == tables_before
    audit_after = await read_rows(sqlite_url)
    assert audit_after[: len(audit_before)] == audit_before  # only the run's own entries were added
    assert not (harness.settings.export_path / "exports").exists()
    [text] = [t for kind, t in await chat_texts(harness) if kind == "scheduler.retention"]
    assert text.splitlines()[:2] == [
        "🧹 Retention dry run: nothing was changed",
        "Audit: 5 entries older than 90 days would be exported (seq 1..5)",
    ]
    assert text.splitlines()[2].startswith("Would remove: approvals 2 · ")


async def test_an_unusable_export_directory_alerts_and_prunes_nothing(
    sqlite_url: str, tmp_path: Path, make_scheduler: MakeScheduler
) -> None:
    base = datetime.now(timezone.utc)
    await seed_old_audit(sqlite_url, base)
    blocker = tmp_path / "in-the-way"
    blocker.write_text("a file where the export directory should be\n")
    harness, scheduler = await make_scheduler(db_url=sqlite_url, audit_export_path=blocker / "audit")
    engine = engine_of(harness)
    await seed_operational(engine, base)
    audit_before = await read_rows(sqlite_url)
    tables_before = await snapshot_tables(engine)
    result = await scheduler.run_job("retention", now=base)
    assert result is not None and result.status == "alert"
    assert await snapshot_tables(engine) == tables_before
    assert (await read_rows(sqlite_url))[: len(audit_before)] == audit_before
    [text] = [t for kind, t in await chat_texts(harness) if kind == "scheduler.retention"]
    lines = text.splitlines()
    assert lines[0] == "🚨 Retention stopped: the audit export failed"
    assert "cannot create the directory" in lines[1]
    assert lines[2] == "Nothing was exported or pruned."
    assert (await audit_entries(harness, "scheduler.retention"))[-1].decision == "alert"
