"""Alembic environment for the executor's tables; run by ``audit.database.upgrade_schema``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from executor.migrations import MIGRATIONS
from executor.schema import metadata

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    connection.execute(text("SELECT pg_advisory_xact_lock(7061747)"))
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=MIGRATIONS.version_table,
    render_as_batch=True,
)
context.run_migrations()
