"""Alembic environment for the audit tables; run programmatically by ``audit.database.upgrade_schema``.

The caller hands over an open synchronous connection (inside ``AsyncConnection.run_sync``)
through ``config.attributes["connection"]``; nothing here reads the environment.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from audit.migrations import MIGRATIONS
from audit.schema import metadata

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Two processes starting at once must not both create the tables.
    connection.execute(text("SELECT pg_advisory_xact_lock(7061746)"))
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=MIGRATIONS.version_table,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
)
context.run_migrations()
