"""Pending approvals, stored in the database, bound to exact parameters, run exactly once.

An approval moves ``pending → approved → running → done | failed | refused`` (refused: the
policy no longer allowed it when it was to run), or ends ``rejected``, ``cancelled`` or
``expired``. Every move is a compare-and-set (``UPDATE … WHERE state =
<expected>``) inside a write transaction, so of twenty simultaneous approvals exactly one
wins the move to ``approved`` and runs the action; an approval never leaves a final state.

The binding: when an approval is made, the executor signs what it is bound to (id, action,
target, arguments, requester, chat, tier, approvals needed, times, request id) with its
audit key, and stores ``ed25519:<kid>:<signature>`` in ``binding``; the requester's display
name is bound too when the request carried one, so the name an approver reads is the one
the requester's signed request carried. Every load checks the
signature (``Approval.intact``); a vote on, or a run of, an approval whose stored row no
longer matches its signature is refused, so someone who can write the database but does
not hold the audit key cannot change what an approver sees or what runs. Rows from before
signing (a bare SHA-256, which anyone could recompute) are never intact.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit.canonical import canonical_json
from audit.signing import SigningKey, signature_holds
from executor.codes import MISSING, CodeCheck
from executor.schema import approval_votes, approvals

PENDING, APPROVED, RUNNING, DONE, FAILED = "pending", "approved", "running", "done", "failed"
REJECTED, CANCELLED, EXPIRED = "rejected", "cancelled", "expired"
REFUSED = "refused"  # not run: policy no longer allowed it, or the stored request no longer matched its signature
FINAL = (DONE, FAILED, REFUSED, REJECTED, CANCELLED, EXPIRED)


BINDING_PURPOSE = b"wingman-approval-v1\x00"
# Every column a person or the executor relies on; state, votes and results move later.
BOUND_COLUMNS = (
    "id", "action", "target", "args", "requester", "context", "tier", "approvals_needed",
    "created_at", "expires_at", "request_id",
)  # fmt: skip


def _bound_message(row: dict[str, Any]) -> bytes:
    """The bytes the binding signs: the stored columns, as stored (times as repr text: no floats).

    The requester's name is in them only when there is one, so rows from before names were
    kept still verify, and a name removed from or added to a row breaks its signature."""
    document = {k: repr(float(row[k])) if k in ("created_at", "expires_at") else row[k] for k in BOUND_COLUMNS}
    if row.get("requester_name") is not None:
        document["requester_name"] = row["requester_name"]
    return BINDING_PURPOSE + canonical_json(document).encode("utf-8")


def sign_binding(key: SigningKey, row: dict[str, Any]) -> str:
    return f"ed25519:{key.kid}:{key.sign(_bound_message(row))}"


def binding_holds(key: SigningKey, row: dict[str, Any]) -> bool:
    """Whether ``row`` (the stored columns) still carries the executor's signature over itself."""
    scheme, _, rest = str(row.get("binding") or "").partition(":")
    kid, _, signature = rest.partition(":")
    if scheme != "ed25519" or kid != key.kid:
        return False
    try:
        message = _bound_message(row)
    except (KeyError, TypeError, ValueError):
        return False
    return signature_holds(key.public, signature, message)


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    action: str
    target: str | None
    args: dict[str, Any]
    binding: str
    requester: str
    context: dict[str, Any]
    tier: int
    approvals_needed: int
    state: str
    created_at: float
    expires_at: float
    decided_by: str | None
    decided_at: float | None
    result: str | None
    request_id: str
    votes: tuple[str, ...] = ()
    intact: bool = False  # the stored row still carries the executor's signature (checked at load)
    # How the people above appeared in the chat ("tg:1001" → "@alice"), for display only:
    # the requester's (bound), each voter's, and whoever rejected or cancelled.
    names: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "args": self.args,
            "requester": self.requester,
            "tier": self.tier,
            "approvals_needed": self.approvals_needed,
            "approved_by": list(self.votes),
            "state": self.state,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "decided_by": self.decided_by,
            "result": self.result,
            "names": dict(self.names),
        }


@dataclass(frozen=True, slots=True)
class Vote:
    """What one approver's tap did."""

    approval: Approval | None
    outcome: str  # "counted", "approved" (this vote completed it), or a refusal below
    reason: str
    factor: str = "none"  # what the vote carried besides its signature: "totp" or "none"
    code_required: bool = False  # the vote lacked the one-time code it needs: ask the approver


class Approvals:
    def __init__(self, engine: AsyncEngine, key: SigningKey) -> None:
        self.engine = engine
        self.key = key  # the executor's audit key: signs and checks each approval's binding

    async def create(
        self,
        *,
        action: str,
        target: str | None,
        args: dict[str, Any],
        requester: str,
        context: dict[str, Any],
        tier: int,
        approvals_needed: int,
        request_id: str,
        now: float,
        ttl: float,
        requester_name: str | None = None,
    ) -> Approval:
        approval_id = secrets.token_hex(6)
        row = {
            "id": approval_id,
            "action": action,
            "target": target,
            "args": canonical_json(args),
            "requester": requester,
            "context": canonical_json(context),
            "tier": tier,
            "approvals_needed": approvals_needed,
            "state": PENDING,
            "created_at": now,
            "expires_at": now + ttl,
            "request_id": request_id,
            "requester_name": requester_name,
        }
        row["binding"] = sign_binding(self.key, row)
        async with self.engine.begin() as conn:
            await conn.execute(insert(approvals).values(**row))
        return await self._require(approval_id)

    async def get(self, approval_id: str) -> Approval | None:
        async with self.engine.connect() as conn:
            return await self._load(conn, approval_id)

    async def _require(self, approval_id: str) -> Approval:
        found = await self.get(approval_id)
        assert found is not None
        return found

    async def _load(self, conn: AsyncConnection, approval_id: str, *, lock: bool = False) -> Approval | None:
        query = select(approvals).where(approvals.c.id == approval_id)
        if lock:
            # PostgreSQL: concurrent votes on one approval queue here, so each sees the
            # votes before it (SQLite's BEGIN IMMEDIATE already serializes writers).
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        voters = (
            await conn.execute(
                select(approval_votes.c.approver, approval_votes.c.approver_name)
                .where(approval_votes.c.approval_id == approval_id)
                .order_by(approval_votes.c.at, approval_votes.c.approver)
            )
        ).all()
        return _approval(row, tuple((v.approver, v.approver_name) for v in voters), self.key)

    async def pending(self, now: float) -> list[Approval]:
        async with self.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(approvals.c.id)
                    .where(approvals.c.state == PENDING, approvals.c.expires_at > now)
                    .order_by(approvals.c.created_at)
                )
            ).scalars().all()
            return [a for a in [await self._load(conn, i) for i in ids] if a is not None]

    async def unfinished(self) -> list[Approval]:
        """Approvals approved or running, oldest first: at start-up, none of them is running."""
        async with self.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(approvals.c.id)
                    .where(approvals.c.state.in_((APPROVED, RUNNING)))
                    .order_by(approvals.c.created_at)
                )
            ).scalars().all()
            return [a for a in [await self._load(conn, i) for i in ids] if a is not None]

    async def vote(
        self,
        approval_id: str,
        approver: str,
        now: float,
        check: Callable[[Approval], tuple[bool, str]],
        *,
        code_required: Callable[[Approval], bool] = lambda approval: False,
        code: CodeCheck | None = None,
        approver_name: str | None = None,
    ) -> Vote:
        """Count ``approver``'s approval; ``check`` applies policy to the approval as stored.

        When ``code_required`` says so, the vote counts only if ``code`` is right and unspent;
        it is spent in the same transaction that counts the vote.
        """
        factor = code.factor if code is not None else "none"
        async with self.engine.begin() as conn:
            approval, refusal = await self._open_for_decision(conn, approval_id, now)
            if refusal is not None:
                return refusal
            assert approval is not None
            if not approval.intact:
                # Ended here, so that it can never run; the caller audits and tells the chat.
                reason = "refused: the stored request does not match its signature (changed after it was made); ask again"
                await _move(conn, approval_id, PENDING, REFUSED, now, result=reason)
                return Vote(await self._load(conn, approval_id), "changed", reason)
            allowed, reason = check(approval)
            if not allowed:
                return Vote(approval, "refused", reason)
            if approver in approval.votes:
                return Vote(approval, "refused", "you already approved this")
            needs_code = code_required(approval)
            if needs_code:
                refusal = MISSING if code is None else await code.spend(conn)
                if refusal is not None:
                    return Vote(approval, "refused", refusal, factor, code_required=refusal == MISSING)
            else:
                factor = "none"  # a code given where none is needed is neither checked nor spent
            await conn.execute(
                insert(approval_votes).values(approval_id=approval_id, approver=approver, at=now, approver_name=approver_name)
            )
            votes = approval.votes + (approver,)
            if len(votes) < approval.approvals_needed:
                reason = f"approval {len(votes)} of {approval.approvals_needed} counted"
                return Vote(await self._load(conn, approval_id), "counted", reason, factor)
            won = await _move(conn, approval_id, PENDING, APPROVED, now, decided_by=",".join(votes))
            updated = await self._load(conn, approval_id)
        if not won:
            return Vote(updated, "closed", "this request was already decided", factor)
        return Vote(updated, "approved", "approved", factor)

    async def decide(
        self,
        approval_id: str,
        actor: str,
        to_state: str,
        now: float,
        check: Callable[[Approval], tuple[bool, str]],
        actor_name: str | None = None,
    ) -> Vote:
        """Reject (by an approver) or cancel (by the requester) a pending approval."""
        async with self.engine.begin() as conn:
            approval, refusal = await self._open_for_decision(conn, approval_id, now)
            if refusal is not None:
                return refusal
            assert approval is not None
            allowed, reason = check(approval)
            if not allowed:
                return Vote(approval, "refused", reason)
            won = await _move(conn, approval_id, PENDING, to_state, now, decided_by=actor, decided_by_name=actor_name)
            updated = await self._load(conn, approval_id)
        if not won:
            return Vote(updated, "closed", "this request was already decided")
        return Vote(updated, to_state, to_state)

    async def _open_for_decision(
        self, conn: AsyncConnection, approval_id: str, now: float
    ) -> tuple[Approval | None, Vote | None]:
        """The approval, locked, if it is still open; else the refusal to answer with."""
        approval = await self._load(conn, approval_id, lock=True)
        if approval is None:
            return None, Vote(None, "unknown", "there is no such request")
        if approval.state == EXPIRED or (approval.state == PENDING and approval.expires_at <= now):
            # Shown as expired, so that the notice the caller sends edits the message (the
            # same text again is no edit at all to Telegram). The move itself is the expiry
            # sweep's, which announces it again: a notice lost here is made good within its
            # interval.
            shown = replace(approval, state=EXPIRED)
            return shown, Vote(shown, EXPIRED, "this request has expired")
        if approval.state != PENDING:
            return approval, Vote(approval, "closed", f"this request was already decided ({approval.state})")
        return approval, None

    async def move(self, approval_id: str, from_state: str, to_state: str, now: float, result: str | None = None) -> bool:
        async with self.engine.begin() as conn:
            return await _move(conn, approval_id, from_state, to_state, now, result=result)

    async def due(self, now: float) -> list[Approval]:
        """Pending approvals past their time, oldest first (the expiry sweep moves them)."""
        async with self.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(approvals.c.id)
                    .where(approvals.c.state == PENDING, approvals.c.expires_at <= now)
                    .order_by(approvals.c.created_at)
                )
            ).scalars().all()
            return [a for a in [await self._load(conn, i) for i in ids] if a is not None]


async def _move(
    conn: AsyncConnection,
    approval_id: str,
    from_state: str,
    to_state: str,
    now: float,
    *,
    decided_by: str | None = None,
    decided_by_name: str | None = None,
    result: str | None = None,
) -> bool:
    values: dict[str, Any] = {"state": to_state}
    if decided_by is not None:
        values.update(decided_by=decided_by, decided_at=now, decided_by_name=decided_by_name)
    if result is not None:
        values["result"] = result
    outcome = await conn.execute(
        update(approvals).where(and_(approvals.c.id == approval_id, approvals.c.state == from_state)).values(**values)
    )
    return outcome.rowcount == 1


def _approval(row: Row[Any], votes: tuple[tuple[str, str | None], ...], key: SigningKey) -> Approval:
    m = row._mapping
    names = {voter: name for voter, name in votes if name}
    if m["decided_by_name"] and m["decided_by"] and "," not in m["decided_by"]:
        names[m["decided_by"]] = m["decided_by_name"]
    if m["requester_name"]:
        names[m["requester"]] = m["requester_name"]  # the bound name wins
    return Approval(
        id=m["id"],
        action=m["action"],
        target=m["target"],
        args=json.loads(m["args"]),
        binding=m["binding"],
        requester=m["requester"],
        context=json.loads(m["context"]),
        tier=m["tier"],
        approvals_needed=m["approvals_needed"],
        state=m["state"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
        result=m["result"],
        request_id=m["request_id"],
        votes=tuple(voter for voter, _ in votes),
        intact=binding_holds(key, dict(m)),
        names=names,
    )
