"""An executor SIGKILLed between the vote's commit and the action: its next start resolves it.

The executor runs as its own process (``wingman executor``) on PostgreSQL. To stop it at an
exact point, the test holds a real table lock that the executor's next write needs: with
``audit_log`` locked, the executor commits the vote (the approval is ``approved``) and
then waits on the vote's audit entry, before anything is started; with ``deployments``
locked, it has moved the approval to ``running`` and waits on the deploy's record, before
any container is touched. Once PostgreSQL shows the executor waiting on that lock, the
test kills it with SIGKILL, releases the lock and starts the executor again.

To stop a deploy half-way, locks are handed on: a second holder queues behind the
executor's waiting write, so that when the first lets go, the executor's write goes
through and its NEXT write to the table waits on the second holder (PostgreSQL grants
locks in queue order). Three holders put the executor between setting the old container
aside and starting the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from docker.api.client import APIClient

from audit import SigningKey, verify_chain
from executor.client import ExecutorClient
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.docker.test_executor_actions import finished
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER, Harness

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def executor_env(tmp_path: Path, socket: Path, bot_key: SigningKey, pg_url: str, resources: Resources) -> dict[str, str]:
    """The same settings as the in-process Harness that takes over afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINGMAN_", "TELEGRAM_"))}
    env.update(
        PYTHONPATH=str(REPO),
        WINGMAN_DATA_DIR=str(tmp_path / "data"),
        WINGMAN_SOCKET=str(socket),
        WINGMAN_TRUSTED_KEYS=str(tmp_path / "keys" / f"{bot_key.kid}.pub"),
        WINGMAN_DB_URL=pg_url,
        WINGMAN_ADMINS=str(ADMIN),
        WINGMAN_APPROVERS=f"{APPROVER},{APPROVER2}",
        WINGMAN_OPERATORS=str(OPERATOR),
        WINGMAN_VIEWERS=str(VIEWER),
        WINGMAN_CONTAINER_ALLOWLIST=f"{resources.prefix}-*",
        WINGMAN_DEPLOY_TIMEOUT_SECONDS="20",
    )
    return env


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Look again until ``check`` holds (the executor runs in another process: no event to wait on)."""
    try:
        async with asyncio.timeout(60):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")


class LockChain:
    """Holders of an EXCLUSIVE lock on one table, each queued behind the executor's write."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, table
        self.holders: list[tuple[Any, Any, asyncio.Future[Any]]] = []
        self.watcher: Any = None

    async def __aenter__(self) -> LockChain:
        import asyncpg

        self.watcher = await asyncpg.connect(_plain(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn, _, _ in self.holders:
            await conn.close()
        await self.watcher.close()

    async def waiting(self) -> set[int]:
        rows = await self.watcher.fetch("SELECT pid FROM pg_locks WHERE relation = $1::regclass AND NOT granted", self.table)
        return {int(r["pid"]) for r in rows}

    async def executor_waits(self) -> bool:
        return bool(await self.waiting() - {conn.get_server_pid() for conn, _, _ in self.holders})

    async def queue(self) -> None:
        """One more holder, granted the lock only after the executor's pending write."""
        import asyncpg

        conn = await asyncpg.connect(_plain(self.url))
        transaction = conn.transaction()
        await transaction.start()
        locking = asyncio.ensure_future(conn.execute(f"LOCK TABLE {self.table} IN EXCLUSIVE MODE"))
        self.holders.append((conn, transaction, locking))
        if len(self.holders) > 1:
            pid = conn.get_server_pid()
            await until(lambda: self._queued(pid), "the next holder to queue")
        else:
            await locking

    async def _queued(self, pid: int) -> bool:
        return pid in await self.waiting()

    async def hand_on(self) -> None:
        """The oldest holder lets go: the executor's write goes through, its next one waits."""
        conn, transaction, locking = self.holders.pop(0)
        await locking
        await transaction.rollback()
        await conn.close()
        await self.holders[0][2]  # the next holder has the lock now


async def start_executor(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """``wingman executor`` in a process of its own, once it says it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wingman", "executor", cwd=cwd, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    said: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await process.stderr.readline()).decode(errors="replace")
            if not line:
                pytest.fail(f"the executor ended before listening: {''.join(said)}")
            said.append(line)
            if "executor listening on" in line:
                break

    async def drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    asyncio.ensure_future(drain(process.stderr))
    return process


@pytest.mark.parametrize(
    ("locked", "left", "changes", "ends", "image"),
    [
        ("audit_log", "approved", {}, "done", "v2"),  # approved, not started: started at the next start
        ("audit_log", "approved", {"read_only": True}, "refused", "v1"),  # ... decided again first
        ("deployments", "running", {}, "failed", "v1"),  # running, nothing touched yet: ended
    ],
    ids=["approved-then-run", "approved-then-refused", "running-then-ended"],
)
async def test_an_executor_killed_after_the_vote_resolves_the_approval_at_its_next_start(
    make_harness: Any,
    tmp_path: Path,
    socket_dir: Path,
    bot_key: SigningKey,
    pg_url: str,
    resources: Resources,
    images: BuiltImages,
    engine: APIClient,
    locked: str,
    left: str,
    changes: dict[str, Any],
    ends: str,
    image: str,
) -> None:
    import asyncpg

    web = resources.container(images.ref("v1"), "web")
    name = resources.name("web")
    socket = socket_dir / "executor.sock"
    executor = await start_executor(executor_env(tmp_path, socket, bot_key, pg_url, resources), tmp_path)
    client = ExecutorClient(socket, bot_key, timeout=60)
    holder = await asyncpg.connect(_plain(pg_url))
    watcher = await asyncpg.connect(_plain(pg_url))
    tap: asyncio.Task[Any] | None = None
    try:
        reply = await client.call(OPERATOR, "deploy", {"target": name, "image": images.ref("v2")})
        assert reply.status == "pending", reply
        approval_id = reply.result["approval"]["id"]

        hold = holder.transaction()
        await hold.start()
        await holder.execute(f"LOCK TABLE {locked} IN EXCLUSIVE MODE")
        tap = asyncio.ensure_future(client.call(APPROVER, "approval.approve", {"id": approval_id}))
        async with asyncio.timeout(60):
            while True:  # until the executor is stuck on the lock with the approval where we want it
                state = await watcher.fetchval("SELECT state FROM approvals WHERE id = $1", approval_id)
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted", locked
                )
                if state == left and waiting:
                    break
                assert state in ("pending", "approved", "running"), state
                await asyncio.sleep(0.05)
        executor.send_signal(signal.SIGKILL)
        assert await executor.wait() == -signal.SIGKILL
        await hold.rollback()
        with contextlib.suppress(Exception):
            await tap  # the connection died with the executor
        assert await watcher.fetchval("SELECT state FROM approvals WHERE id = $1", approval_id) == left
        assert engine.inspect_container(web["Id"])["Image"] == images.id("v1")
    finally:
        if executor.returncode is None:
            executor.kill()
            await executor.wait()
        await client.close()
        await holder.close()
        await watcher.close()

    harness: Harness = await make_harness(
        db_url=pg_url, container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20, **changes
    )
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == ends, outcome
    assert engine.inspect_container(name)["Image"] == images.id(image)
    assert engine.inspect_container(name)["State"]["Running"]
    if ends == "refused":
        assert outcome["outcome"]["reason"] == "refused at run time: read-only mode: only reads are allowed"
    if left == "running":
        assert "interrupted by an executor restart before it changed anything" in outcome["outcome"]["reason"]
    entries = await harness.executor.audit.tail(30)
    resumed = [e.outcome for e in entries if e.action == "approval.resume"]
    assert len(resumed) == 1 and approval_id in str(resumed[0])
    assert (await verify_chain(harness.executor.audit, None, {})).ok


async def test_an_executor_killed_half_way_through_an_approved_deploy_ends_it_with_what_recovery_found(
    make_harness: Any,
    tmp_path: Path,
    socket_dir: Path,
    bot_key: SigningKey,
    pg_url: str,
    resources: Resources,
    images: BuiltImages,
    engine: APIClient,
) -> None:
    web = resources.container(images.ref("v1"), "web")
    name = resources.name("web")
    socket = socket_dir / "executor.sock"
    executor = await start_executor(executor_env(tmp_path, socket, bot_key, pg_url, resources), tmp_path)
    client = ExecutorClient(socket, bot_key, timeout=60)
    try:
        reply = await client.call(OPERATOR, "deploy", {"target": name, "image": images.ref("v2")})
        assert reply.status == "pending", reply
        approval_id = reply.result["approval"]["id"]
        async with LockChain(pg_url, "deployments") as chain:

            async def deploy_state() -> str | None:
                return await chain.watcher.fetchval("SELECT state FROM deployments WHERE service = $1", name)

            await chain.queue()
            tap = asyncio.ensure_future(client.call(APPROVER, "approval.approve", {"id": approval_id}))
            await until(chain.executor_waits, "the executor to wait to record the deploy")
            await chain.queue()
            await chain.hand_on()  # recorded; waits to mark it "replacing"
            await until(chain.executor_waits, "the executor to wait to mark the deploy replacing")
            assert await deploy_state() == "recorded"
            await chain.queue()
            await chain.hand_on()  # old container set aside, new one created; waits to mark it "starting"

            async def between() -> bool:
                return await chain.executor_waits() and await deploy_state() == "replacing"

            await until(between, "the executor to wait to mark the deploy starting")
            executor.send_signal(signal.SIGKILL)
            assert await executor.wait() == -signal.SIGKILL
        with contextlib.suppress(Exception):
            await tap
        names = [n for c in resources.ours() for n in c["Names"]]
        assert f"/{name}" in names and len(names) == 2, names  # the new one under the name, the old one aside
    finally:
        if executor.returncode is None:
            executor.kill()
            await executor.wait()
        await client.close()

    harness: Harness = await make_harness(db_url=pg_url, container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)
    outcome = await finished(harness, approval_id)
    assert outcome["approval"]["state"] == "failed", outcome
    reason = outcome["outcome"]["reason"]
    assert reason.startswith(f"interrupted by an executor restart: {name}: undid interrupted deploy"), reason
    info = engine.inspect_container(name)
    assert info["Id"] == web["Id"] and info["Image"] == images.id("v1") and info["State"]["Running"]
    assert [c["Names"] for c in resources.ours()] == [[f"/{name}"]]
    assert (await verify_chain(harness.executor.audit, None, {})).ok
