"""The chat messages that show an approval or a running action, for edits in place.

Revision ID: e0003
Revises: e0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0003"
down_revision = "e0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("ref", sa.Text, primary_key=True),
        sa.Column("chat_id", sa.BigInteger, primary_key=True),
        sa.Column("message_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chat_messages")
