"""Pruning the executor's operational rows once they are past retention.

The scheduler's retention job calls :func:`prune_operational` (``JobContext.prune``, wired in
``executor.scheduling``) after it has exported the old audit entries.

These rows are working state, not the record: every request, decision, approval and
execution is in the audit chain, which retention only ever moves into verified exports
(``audit.export_older_than``). What is removed here, each by its own setting:

=====================  ===============================================  =============================
rows                   when                                             setting
=====================  ===============================================  =============================
deployments            ``succeeded``, finished before the cutoff,       RETENTION_EXECUTIONS_DAYS (7)
                       except each service's newest successful deploys
                       (``keep_deploys_per_service``: ``/rollback``
                       walks back through them)
deployments            ``rolled_back`` or ``rollback_failed``           RETENTION_FAILED_DAYS (14)
deployments            ended any other way (``recovered``)              RETENTION_OTHER_DAYS (30)
notifications          delivered before the cutoff (never undelivered)  RETENTION_NOTIFICATIONS_DAYS (30)
chat_messages          whose subject has no notification left           (follows the notifications)
approvals + votes      in a final state, decided (or expired) before    RETENTION_APPROVALS_DAYS (30)
seen_tokens            expired (a replay of those fails on expiry)      none
=====================  ===============================================  =============================

A deployment that has not ended (``finished_at`` is null) and an approval that is not in a
final state are never removed: start-up recovery and the approval flow still need them.
A dry run counts the same rows and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.approvals import FINAL
from executor.deployments import deployments
from executor.schema import approval_votes, approvals, chat_messages, notifications, seen_tokens
from scheduler.config import ScheduleConfig

SUCCEEDED = ("succeeded",)
FAILED = ("rolled_back", "rollback_failed")
# Seen token ids are kept this long past their expiry (allowing for the protocol's clock skew).
TOKEN_MARGIN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of row to remove: a name for the report, its table and the condition."""

    name: str
    table: Table
    where: ColumnElement[bool]


def rules(config: ScheduleConfig, now: datetime) -> Sequence[Rule]:
    """What the retention run removes at ``now``, in the order it is removed (votes before
    their approvals)."""

    def cutoff(days: int) -> float:
        return (now - timedelta(days=days)).timestamp()

    d = deployments.c
    ranked = (
        select(
            d.id,
            func.row_number()
            .over(partition_by=d.service, order_by=(d.started_at.desc(), d.id.desc()))
            .label("recency"),
        )
        .where(d.action == "deploy", d.state.in_(SUCCEEDED))
        .subquery()
    )
    protected = select(ranked.c.id).where(ranked.c.recency <= config.keep_deploys_per_service)
    ended = d.finished_at.is_not(None)

    n = notifications.c
    delivered_past = n.delivered_at.is_not(None) & (n.delivered_at < cutoff(config.retention_notifications_days))
    # A message link is useful while a notification about its subject may still come.
    kept_notification = exists(select(n.id).where(n.ref == chat_messages.c.ref, ~delivered_past))

    a = approvals.c
    decided = a.state.in_(FINAL) & (func.coalesce(a.decided_at, a.expires_at) < cutoff(config.retention_approvals_days))
    old_approvals = select(a.id).where(decided)

    return (
        Rule(
            "deployments succeeded",
            deployments,
            ended & d.state.in_(SUCCEEDED) & (d.finished_at < cutoff(config.retention_executions_days)) & d.id.not_in(protected),
        ),
        Rule("deployments failed", deployments, ended & d.state.in_(FAILED) & (d.finished_at < cutoff(config.retention_failed_days))),
        Rule(
            "deployments other",
            deployments,
            ended & d.state.not_in(SUCCEEDED + FAILED) & (d.finished_at < cutoff(config.retention_other_days)),
        ),
        Rule("notifications", notifications, delivered_past),
        Rule("chat messages", chat_messages, ~kept_notification),
        Rule("approval votes", approval_votes, approval_votes.c.approval_id.in_(old_approvals)),
        Rule("approvals", approvals, decided),
        Rule("seen tokens", seen_tokens, seen_tokens.c.exp < now.timestamp() - TOKEN_MARGIN_SECONDS),
    )


async def prune_operational(engine: AsyncEngine, config: ScheduleConfig, now: datetime, *, dry_run: bool) -> dict[str, int]:
    """Remove (or with ``dry_run`` only count) the rows past retention; counts by rule name.

    One transaction: either every kind of row is pruned or, on an error, none.
    """
    removed: dict[str, int] = {}
    async with engine.begin() as conn:
        for rule in rules(config, now):
            if dry_run:
                query = select(func.count()).select_from(rule.table).where(rule.where)
                removed[rule.name] = int((await conn.execute(query)).scalar_one())
            else:
                result = await conn.execute(delete(rule.table).where(rule.where))
                removed[rule.name] = int(result.rowcount or 0)
    return removed
