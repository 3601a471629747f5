"""Updates found by the update checks, so each is announced once and pending ones are recalled.

Revision ID: e0005
Revises: e0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0005"
down_revision = "e0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "updates",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("current_tag", sa.Text, nullable=False),
        sa.Column("new_tag", sa.Text, nullable=False),
        sa.Column("current_digest", sa.Text, nullable=False),
        sa.Column("new_digest", sa.Text, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=True),
        sa.Column("found_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("announced_at", sa.Float, nullable=True),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_index("ix_updates_target", "updates", ["target"])
    op.create_index("ix_updates_announced_at", "updates", ["announced_at"])
    op.create_index("ix_updates_state", "updates", ["state"])


def downgrade() -> None:
    op.drop_table("updates")
