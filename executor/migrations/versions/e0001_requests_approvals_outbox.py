"""Replay protection, approvals and the notification outbox.

Revision ID: e0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_tokens",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("exp", sa.Float, nullable=False),
    )
    op.create_index("ix_seen_tokens_exp", "seen_tokens", ["exp"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("binding", sa.Text, nullable=False),
        sa.Column("requester", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("tier", sa.Integer, nullable=False),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("request_id", sa.Text, nullable=False),
    )
    op.create_index("ix_approvals_state", "approvals", ["state"])
    op.create_table(
        "approval_votes",
        sa.Column("approval_id", sa.Text, sa.ForeignKey("approvals.id"), primary_key=True),
        sa.Column("approver", sa.Text, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("chat_id", sa.BigInteger, nullable=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_notifications_delivered_at", "notifications", ["delivered_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("approval_votes")
    op.drop_index("ix_approvals_state", "approvals")
    op.drop_table("approvals")
    op.drop_index("ix_seen_tokens_exp", "seen_tokens")
    op.drop_table("seen_tokens")
