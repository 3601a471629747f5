"""The deployment record store on SQLite and PostgreSQL (no Docker engine needed)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect

from executor.deployments import DeploymentStore, deployments
from tests.stores import open_deployment_store

OLD = {"Id": "c" * 64, "Name": "/web", "State": {"Running": True}, "Config": {"Image": "app:1", "Env": ["A=1"]}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


async def deploy(store: DeploymentStore, prev: str, new: str, *, action: str = "deploy", **kw: Any) -> str:
    record = await store.record(
        service=kw.get("service", "web"),
        action=action,
        requested_by="tg:1001",
        approved_by="tg:2002",
        requested_image=f"app:{new}",
        prev_image_id=f"sha256:{prev * 64}",
        prev_image_tag=f"app:{prev}",
        new_image_id=f"sha256:{new * 64}",
        new_image_tag=f"app:{new}",
        prev_container=OLD,
    )
    return record.id


async def test_records_move_through_their_states_and_end_once(db_url: str) -> None:
    store = await open_deployment_store(db_url, clock=Clock())
    try:
        deployment_id = await deploy(store, "1", "2")
        [open_one] = await store.unfinished()
        assert open_one.id == deployment_id and open_one.state == "recorded" and not open_one.finished
        assert open_one.prev_container == OLD and open_one.prev_was_running
        await store.set_state(deployment_id, "starting", new_container_id="n" * 64)
        await store.finish(deployment_id, "succeeded", "web now runs app:2", {"seconds": 1.5})
        assert await store.unfinished() == []
        done = await store.get(deployment_id)
        assert done is not None and done.state == "succeeded" and done.new_container_id == "n" * 64
        assert done.detail == {"seconds": 1.5} and done.finished_at is not None and done.finished_at > done.started_at
        with pytest.raises(ValueError):
            await store.set_state(deployment_id, "succeeded")
        with pytest.raises(ValueError):
            await store.finish(deployment_id, "verifying", "no")
        assert await store.get("nope") is None
    finally:
        await store.engine.dispose()


async def test_rollback_target_walks_back_through_deploys(db_url: str) -> None:
    store = await open_deployment_store(db_url, clock=Clock())
    try:
        for prev, new in (("1", "2"), ("2", "3")):
            await store.finish(await deploy(store, prev, new), "succeeded", "ok")
        failed = await deploy(store, "3", "4")
        await store.finish(failed, "rolled_back", "unhealthy")
        await deploy(store, "9", "3", service="other")  # another service does not count

        target = await store.rollback_target("web", "sha256:" + "3" * 64)
        assert target is not None and target.prev_image_id == "sha256:" + "2" * 64
        # After rolling back to 2, the deploy that brought 2 says where to go next: 1.
        rolled = await deploy(store, "3", "2", action="rollback")
        await store.finish(rolled, "succeeded", "ok")
        target = await store.rollback_target("web", "sha256:" + "2" * 64)
        assert target is not None and target.prev_image_id == "sha256:" + "1" * 64
        assert await store.rollback_target("web", "sha256:" + "1" * 64) is None
        assert await store.latest_tag("web", "sha256:" + "2" * 64) == "app:2"
        assert [d.new_image_tag for d in await store.history("web")] == ["app:2", "app:4", "app:3", "app:2"]
    finally:
        await store.engine.dispose()


async def test_the_migration_creates_the_table_next_to_the_executors_others(sqlite_url: str) -> None:
    store = await open_deployment_store(sqlite_url)
    try:
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa_inspect(sync).get_table_names())
            columns = await conn.run_sync(lambda sync: {c["name"] for c in sa_inspect(sync).get_columns("deployments")})
        assert {"deployments", "approvals", "notifications", "seen_tokens"} <= set(tables)
        assert {c.name for c in deployments.columns} == columns
    finally:
        await store.engine.dispose()
    # Opening again is a no-op upgrade.
    await (await open_deployment_store(sqlite_url)).engine.dispose()
