"""Replay protection: each token id accepted once, on record before the request changes anything.

A claimed id is written in the same transaction as the request's first audit entry; the
requests whose first change is not an audit entry (approval votes, the outbox, a request
that waits for approval) write it on their own first. Both backends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from audit import AuditStore
from audit.database import make_engine, normalize_url, upgrade_schema
from audit.store import Along
from executor.protocol import make_token
from executor.replay import FORGET_AFTER_SECONDS, ReplayGuard
from executor.schema import seen_tokens
from executor.migrations import MIGRATIONS
from tests.harness import ADMIN, APPROVER, AUDIENCE, VIEWER, Harness


async def seen(harness: Harness) -> dict[str, float]:
    async with harness.daemon._engine.connect() as conn:  # type: ignore[union-attr]
        return {jti: exp for jti, exp in await conn.execute(select(seen_tokens.c.jti, seen_tokens.c.exp))}


def jti_of(token: str) -> str:
    claims = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["jti"])


async def test_each_kind_of_request_leaves_its_token_id_on_record(make_harness: Any, db_url: str, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("actions:\n  verify: {tier: 2}\n")  # a request that waits, without Docker
    harness: Harness = await make_harness(db_url=db_url, policy=tmp_path / "policy.yaml")
    client = harness.client()
    tokens = {
        "executed": make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami"),
        "denied": make_token(harness.bot_key, audience=AUDIENCE, user_id=VIEWER, action="verify"),
        "waiting for approval": make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="verify"),
        "outbox poll (not audited)": make_token(harness.bot_key, audience=AUDIENCE, user_id=None, action="outbox.poll", args={"wait": 0}),
    }
    for name, token in tokens.items():
        reply = await client.send_token(token)
        assert reply.http_status in (200, 202, 403), (name, reply)
    approval = (await client.call(ADMIN, "pending")).result["approvals"][0]["id"]
    vote = make_token(harness.bot_key, audience=AUDIENCE, user_id=APPROVER, action="approval.reject", args={"id": approval})
    assert (await client.send_token(vote)).status == "done"
    tokens["approval vote"] = vote

    on_record = await seen(harness)
    for name, token in tokens.items():
        assert jti_of(token) in on_record, name
    await harness.restart()
    for name, token in tokens.items():
        again = await harness.client().send_token(token)
        assert (again.http_status, again.status) == (401, "refused") and "replay" in again.reason, name


async def test_the_claim_and_the_audit_entry_are_one_transaction(db_url: str) -> None:
    """Written together, and a claim already on record does not fail the others' batch."""
    store = await AuditStore.open(db_url)
    engine = make_engine(normalize_url(db_url), writer=True)
    try:
        await upgrade_schema(engine, MIGRATIONS)  # the executor's tables beside the audit's
        before = (await store.head()).seq
        await store.append(actor="tg:1", action="whoami", decision="executed", along=Along(seen_tokens, {"jti": "a" * 32, "exp": 1.0}))
        await asyncio.gather(
            store.append(actor="tg:1", action="whoami", decision="executed", along=Along(seen_tokens, {"jti": "a" * 32, "exp": 2.0})),
            store.append(actor="tg:1", action="whoami", decision="executed", along=Along(seen_tokens, {"jti": "b" * 32, "exp": 3.0})),
        )
        async with engine.connect() as conn:
            rows = dict((await conn.execute(select(seen_tokens.c.jti, seen_tokens.c.exp))).all())
        assert rows == {"a" * 32: 1.0, "b" * 32: 3.0}
        assert (await store.head()).seq == before + 3
    finally:
        await engine.dispose()
        await store.close()


async def test_an_id_is_forgotten_only_after_its_token_cannot_verify_any_more(harness: Harness) -> None:
    guard: ReplayGuard = harness.executor.replay
    now = time.time()
    assert guard.claim("c" * 32, now + 30, now) is not None
    assert guard.claim("c" * 32, now + 30, now + 30 + FORGET_AFTER_SECONDS) is None
    assert guard.claim("d" * 32, now, now + FORGET_AFTER_SECONDS + 1) is not None  # prunes "c…"
    assert guard.claim("c" * 32, now + 30, now + 31 + FORGET_AFTER_SECONDS) is not None
