"""Deployment records: what each deploy and rollback replaced, for /rollback and crash recovery.

Revision ID: e0002
Revises: e0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0002"
down_revision = "e0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=True),
        sa.Column("requested_image", sa.Text, nullable=False),
        sa.Column("prev_image_id", sa.Text, nullable=False),
        sa.Column("prev_image_tag", sa.Text, nullable=False),
        sa.Column("new_image_id", sa.Text, nullable=False),
        sa.Column("new_image_tag", sa.Text, nullable=False),
        sa.Column("prev_container_id", sa.Text, nullable=False),
        sa.Column("prev_container", sa.Text, nullable=False),
        sa.Column("new_container_id", sa.Text, nullable=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_deployments_service_started", "deployments", ["service", "started_at"])
    op.create_index("ix_deployments_finished_at", "deployments", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_deployments_finished_at", "deployments")
    op.drop_index("ix_deployments_service_started", "deployments")
    op.drop_table("deployments")
