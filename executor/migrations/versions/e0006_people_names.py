"""People's display names beside their ids: on approvals and votes, and the names last seen.

Revision ID: e0006_names
Revises: e0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0006_names"
down_revision = "e0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows from before have no name, and are shown by id.
    op.add_column("approvals", sa.Column("requester_name", sa.Text, nullable=True))
    op.add_column("approvals", sa.Column("decided_by_name", sa.Text, nullable=True))
    op.add_column("approval_votes", sa.Column("approver_name", sa.Text, nullable=True))
    op.create_table(
        "people",
        sa.Column("user", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("people")
    with op.batch_alter_table("approval_votes") as batch:
        batch.drop_column("approver_name")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("decided_by_name")
        batch.drop_column("requester_name")
