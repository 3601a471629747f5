"""Prometheus metrics of the executor, served on its socket at ``GET /v1/metrics``.

Counted here: requests by decision (since the daemon started). Read from the database at
each scrape: approvals pending, deployments by state, and the audit chain's length (its
one head row). The time of the last successful scheduled verification is held here too:
looked up in the audit log once, at the first scrape, then kept by the verify job, so a
scrape never searches the log (which grows without bound).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import AuditStore
from executor.approvals import PENDING
from executor.deployments import deployments
from executor.schema import approvals
from scheduler.runs import last_run


class RequestCounter:
    """Audit decisions seen since start, by decision."""

    def __init__(self) -> None:
        self.by_decision: Counter[str] = Counter()

    def count(self, decision: str) -> None:
        self.by_decision[decision] += 1


class LastVerification:
    """When the scheduled verification last found the chain intact (None: never)."""

    def __init__(self) -> None:
        self._at: datetime | None = None
        self._known = False

    def record(self, at: datetime) -> None:
        self._at, self._known = at, True

    async def get(self, engine: AsyncEngine) -> datetime | None:
        if not self._known:
            found = await last_run(engine, "verify", since=datetime(1970, 1, 1, tzinfo=timezone.utc), decisions=("ok",))
            if not self._known:  # a verification that ended meanwhile is newer
                self._at, self._known = (found.at if found is not None else None), True
        return self._at


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


async def render(counter: RequestCounter, audit: AuditStore, engine: AsyncEngine, last_verified: LastVerification) -> str:
    async with engine.connect() as conn:
        pending = (await conn.execute(select(func.count()).select_from(approvals).where(approvals.c.state == PENDING))).scalar_one()
        states = (await conn.execute(select(deployments.c.state, func.count()).group_by(deployments.c.state))).all()
    head = await audit.head()
    verified = await last_verified.get(engine)
    lines = [
        "# HELP wingman_requests_total Audited decisions since the executor started, by decision.",
        "# TYPE wingman_requests_total counter",
        *(f'wingman_requests_total{{decision="{_label(d)}"}} {n}' for d, n in sorted(counter.by_decision.items())),
        "# HELP wingman_approvals_pending Requests waiting for approval.",
        "# TYPE wingman_approvals_pending gauge",
        f"wingman_approvals_pending {pending}",
        "# HELP wingman_deploys Deployments on record, by state.",
        "# TYPE wingman_deploys gauge",
        *(f'wingman_deploys{{state="{_label(state)}"}} {n}' for state, n in sorted(states)),
        "# HELP wingman_audit_chain_length Entries in the audit chain (its newest seq).",
        "# TYPE wingman_audit_chain_length gauge",
        f"wingman_audit_chain_length {head.seq}",
        "# HELP wingman_last_verification_timestamp_seconds When the scheduled verification last found the chain intact (0: never).",
        "# TYPE wingman_last_verification_timestamp_seconds gauge",
        f"wingman_last_verification_timestamp_seconds {verified.timestamp() if verified else 0:.0f}",
    ]
    return "\n".join(lines) + "\n"
