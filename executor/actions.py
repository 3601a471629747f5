"""The action handlers: the closed catalogue's actions that this executor can run.

Each handler takes the executor and a ``Call`` (who, the verified arguments, the approval
it runs under) and returns a ``Result``: a one-line summary for the chat and structured
data for the client to format. Policy has already allowed the call; handlers still check
their own arguments. Actions of the catalogue without a handler here answer that they are
not available yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit import verify_chain
from audit.verify import VerifyReport
from executor.approvals import Approval
from executor.errors import ActionRefused
from policy import allowed_actions

if TYPE_CHECKING:
    from executor.service import Executor

AUDIT_TAIL_DEFAULT, AUDIT_TAIL_MAX = 10, 50


@dataclass(frozen=True, slots=True)
class Call:
    user_id: int
    args: dict[str, Any]
    approval: Approval | None = None


@dataclass(frozen=True, slots=True)
class Result:
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[["Executor", Call], Awaitable[Result]]


async def whoami(executor: Executor, call: Call) -> Result:
    role = executor.policy.role_of(call.user_id)
    label = role.name.lower() if role is not None else None
    return Result(f"you are tg:{call.user_id}, {label}", {"user_id": call.user_id, "role": label})


async def help_(executor: Executor, call: Call) -> Result:
    entries = allowed_actions(executor.policy, call.user_id)
    listed = [
        {"action": e.name, "usage": e.usage, "description": e.description, "tier": int(e.tier)} for e in entries
    ]
    return Result(f"{len(listed)} commands available to you", {"commands": listed})


async def pending(executor: Executor, call: Call) -> Result:
    waiting = await executor.approvals.pending(executor.clock())
    return Result(f"{len(waiting)} requests waiting for approval", {"approvals": [a.as_json() for a in waiting]})


def _count(value: Any, default: int, maximum: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise ActionRefused(f"{name} must be a whole number from 1 to {maximum}")
    return value


async def audit_tail(executor: Executor, call: Call) -> Result:
    n = _count(call.args.get("n"), AUDIT_TAIL_DEFAULT, AUDIT_TAIL_MAX, "n")
    entries = await executor.audit.tail(n)
    listed = [
        {
            "seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
            "decision": e.decision, "outcome": e.outcome,
        }
        for e in entries
    ]  # fmt: skip
    return Result(f"the newest {len(listed)} audit entries", {"entries": listed})


async def verify(executor: Executor, call: Call) -> Result:
    report: VerifyReport = await verify_chain(executor.audit, executor.export_path, executor.trusted_audit_keys)
    data = {
        "ok": report.ok,
        "entries": report.entries,
        "last_seq": report.last_seq,
        "broken_seq": report.broken_seq,
        "reason": report.reason,
        "summary": report.summary(),
    }
    return Result(report.summary(), data)


HANDLERS: dict[str, Handler] = {
    "whoami": whoami,
    "help": help_,
    "pending": pending,
    "audit": audit_tail,
    "verify": verify,
}
