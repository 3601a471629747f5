"""An executor SIGKILLed between the vote's commit and the action: its next start resolves it.

The executor runs as its own process (``wingman executor``) on PostgreSQL. To stop it at an
exact point, the test holds a real table lock that the executor's next write needs: with
``audit_log`` locked, the executor commits the vote (the approval is ``approved``) and
then waits on the vote's audit entry, before anything is started; with ``deployments``
locked, it has moved the approval to ``running`` and waits on the deploy's record, before
any container is touched. Once PostgreSQL shows the executor waiting on that lock, the
test kills it with SIGKILL, releases the lock and starts the executor again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
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
    # The same settings as the in-process Harness that takes over afterwards.
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
    executor = await start_executor(env, tmp_path)
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
