"""The deployment record: what every deploy and rollback replaced, with what, and how it ended.

A deployment is recorded BEFORE anything is touched and updated at each step, so that

- ``/rollback`` can find the image a service ran before, by image id (a tag that has
  moved since does not matter), and
- after a crash, recovery at start-up finds every deploy that was recorded but not
  finished, with the old container's full inspect JSON, and puts the service right.

States, in order: ``recorded`` (nothing touched yet) → ``replacing`` (old container being
stopped and renamed aside) → ``starting`` (new container created) → ``verifying`` (new
container started, health gate running) → ``healthy`` (gate passed, old container being
removed) → ``succeeded``. On failure: → ``rolling_back`` → ``rolled_back`` or
``rollback_failed``. Recovery finishes interrupted ones as ``recovered`` (back on the old
image) or ``succeeded`` (the new container proved healthy). ``finished_at`` is set exactly
when a deployment has ended.

SQLAlchemy Core, async; the table lives on ``executor.schema.metadata`` and is created by
the Alembic revision ``e0002``. Times are seconds since the epoch, like the other executor
tables.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, Table, Text, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from executor.schema import metadata


# States in which a deployment has not ended: recovery looks at these after a crash.
OPEN_STATES = ("recorded", "replacing", "starting", "verifying", "healthy", "rolling_back")
ENDED_STATES = ("succeeded", "rolled_back", "rollback_failed", "recovered")

deployments = Table(
    "deployments",
    metadata,
    Column("id", Text, primary_key=True),  # 12 hex digits; part of the old container's aside name
    Column("service", Text, nullable=False),  # the container name
    Column("action", Text, nullable=False),  # deploy | rollback
    Column("requested_by", Text, nullable=False),  # "tg:<user id>", "wingman"…
    Column("approved_by", Text, nullable=True),
    Column("requested_image", Text, nullable=False),  # as asked for ("app:2"; the image id for a rollback)
    Column("prev_image_id", Text, nullable=False),  # sha256:…
    Column("prev_image_tag", Text, nullable=False),
    Column("new_image_id", Text, nullable=False),
    Column("new_image_tag", Text, nullable=False),
    Column("prev_container_id", Text, nullable=False),
    Column("prev_container", Text, nullable=False),  # the old container's full inspect JSON
    Column("new_container_id", Text, nullable=True),
    Column("state", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("outcome", Text, nullable=True),  # one line for people
    Column("detail", Text, nullable=True),  # JSON: health log, last log lines, recovery notes
)
Index("ix_deployments_service_started", deployments.c.service, deployments.c.started_at)
Index("ix_deployments_finished_at", deployments.c.finished_at)


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    service: str
    action: str
    requested_by: str
    approved_by: str | None
    requested_image: str
    prev_image_id: str
    prev_image_tag: str
    new_image_id: str
    new_image_tag: str
    prev_container_id: str
    prev_container: dict[str, Any]
    new_container_id: str | None
    state: str
    started_at: float
    finished_at: float | None
    outcome: str | None
    detail: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def prev_was_running(self) -> bool:
        """Whether the old container was running when the deploy began."""
        state = self.prev_container.get("State") or {}
        return bool(state.get("Running") or state.get("Restarting"))

    @classmethod
    def from_row(cls, row: RowMapping) -> Deployment:
        values = dict(row)
        values["prev_container"] = json.loads(values["prev_container"])
        values["detail"] = json.loads(values["detail"]) if values["detail"] else None
        return cls(**values)


def new_deployment_id() -> str:
    return uuid.uuid4().hex[:12]


class DeploymentStore:
    """Deployment records in the executor's database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock

    # -- writing ----------------------------------------------------------------------------

    async def record(
        self,
        *,
        service: str,
        action: str,
        requested_by: str,
        approved_by: str | None,
        requested_image: str,
        prev_image_id: str,
        prev_image_tag: str,
        new_image_id: str,
        new_image_tag: str,
        prev_container: dict[str, Any],
        deployment_id: str | None = None,
    ) -> Deployment:
        """Record a deployment that is about to start (state ``recorded``); returns it."""
        values: dict[str, Any] = {
            "id": deployment_id or new_deployment_id(),
            "service": service,
            "action": action,
            "requested_by": requested_by,
            "approved_by": approved_by,
            "requested_image": requested_image,
            "prev_image_id": prev_image_id,
            "prev_image_tag": prev_image_tag,
            "new_image_id": new_image_id,
            "new_image_tag": new_image_tag,
            "prev_container_id": str(prev_container["Id"]),
            "prev_container": json.dumps(prev_container, sort_keys=True),
            "new_container_id": None,
            "state": "recorded",
            "started_at": self._clock(),
            "finished_at": None,
            "outcome": None,
            "detail": None,
        }
        async with self.engine.begin() as conn:
            await conn.execute(insert(deployments).values(**values))
        values["prev_container"] = prev_container
        return Deployment(**values)

    async def set_state(self, deployment_id: str, state: str, *, new_container_id: str | None = None) -> None:
        """Move an open deployment to ``state`` (one of OPEN_STATES)."""
        if state not in OPEN_STATES:
            raise ValueError(f"{state!r} is not an open deployment state")
        values: dict[str, Any] = {"state": state}
        if new_container_id is not None:
            values["new_container_id"] = new_container_id
        async with self.engine.begin() as conn:
            await conn.execute(update(deployments).where(deployments.c.id == deployment_id).values(**values))

    async def finish(
        self, deployment_id: str, state: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        """End a deployment with one of ENDED_STATES and a one-line outcome."""
        if state not in ENDED_STATES:
            raise ValueError(f"{state!r} is not an ended deployment state")
        values: dict[str, Any] = {"state": state, "outcome": outcome, "finished_at": self._clock()}
        if detail is not None:
            values["detail"] = json.dumps(detail, sort_keys=True)
        async with self.engine.begin() as conn:
            await conn.execute(update(deployments).where(deployments.c.id == deployment_id).values(**values))

    # -- reading ------------------------------------------------------------------------------

    async def get(self, deployment_id: str) -> Deployment | None:
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(deployments).where(deployments.c.id == deployment_id))).mappings().first()
        return None if row is None else Deployment.from_row(row)

    async def unfinished(self) -> list[Deployment]:
        """Deployments recorded but not ended, oldest first (what recovery must look at)."""
        query = select(deployments).where(deployments.c.finished_at.is_(None)).order_by(deployments.c.started_at)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Deployment.from_row(row) for row in rows]

    async def history(self, service: str, limit: int = 20) -> list[Deployment]:
        """The service's deployments, newest first."""
        query = (
            select(deployments)
            .where(deployments.c.service == service)
            .order_by(deployments.c.started_at.desc())
            .limit(max(limit, 0))
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Deployment.from_row(row) for row in rows]

    async def rollback_target(self, service: str, current_image_id: str) -> Deployment | None:
        """The newest successful DEPLOY that put ``current_image_id`` on ``service``.

        Its ``prev_image_id`` is where a rollback goes. Following deploys rather than the
        newest record makes repeated rollbacks walk back through history (v3 → v2 → v1)
        instead of flipping between the last two images.
        """
        query = (
            select(deployments)
            .where(
                deployments.c.service == service,
                deployments.c.action == "deploy",
                deployments.c.state == "succeeded",
                deployments.c.new_image_id == current_image_id,
            )
            .order_by(deployments.c.started_at.desc())
            .limit(1)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else Deployment.from_row(row)

    async def latest_tag(self, service: str, image_id: str) -> str | None:
        """The tag the newest successful deployment of ``image_id`` on ``service`` used."""
        query = (
            select(deployments.c.new_image_tag)
            .where(
                deployments.c.service == service,
                deployments.c.state == "succeeded",
                deployments.c.new_image_id == image_id,
            )
            .order_by(deployments.c.started_at.desc())
            .limit(1)
        )
        async with self.engine.begin() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else str(value)
