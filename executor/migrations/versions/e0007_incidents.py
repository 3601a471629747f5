"""Alerts' incidents: one row per container episode, with the message that shows it.

Revision ID: e0007
Revises: e0006_names
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0007"
down_revision = "e0006_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("container", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, index=True),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("incidents")
