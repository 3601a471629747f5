"""The audit tables, as SQLAlchemy Core metadata (the migrations create the same)."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, MetaData, Table, Text, UniqueConstraint

metadata = MetaData()

# Every text column is TEXT on both backends, so no database truncates or pads what was
# hashed; params hold their canonical JSON text (see audit.canonical).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=True),
    Column("params", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("outcome", Text, nullable=True),
    Column("request_id", Text, nullable=True),
    Column("prev_hash", Text, nullable=False),
    Column("entry_hash", Text, nullable=False),
    # A fork (two entries claiming the same predecessor) fails loudly even if locking were wrong.
    UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
    Index("ix_audit_log_ts", "ts"),
)

# One row: the chain's identity and its newest entry. Appends lock and advance it, so the
# sequence continues correctly after retention has moved every entry out to exports.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("chain_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", Text, nullable=False),
    CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)

# Column order of the rows that verification streams.
ROW_COLUMNS = (
    audit_log.c.seq,
    audit_log.c.ts,
    audit_log.c.actor,
    audit_log.c.action,
    audit_log.c.target,
    audit_log.c.params,
    audit_log.c.decision,
    audit_log.c.outcome,
    audit_log.c.request_id,
    audit_log.c.prev_hash,
    audit_log.c.entry_hash,
)
ROW_FIELDS = tuple(column.name for column in ROW_COLUMNS)
