"""Alembic migrations of the executor's tables, and what ``audit.database.upgrade_schema``
needs to know of them without loading Alembic."""

from pathlib import Path

from audit.database import Migrations

MIGRATIONS = Migrations(Path(__file__).parent, "executor_alembic_version", heads=frozenset({"e0007"}))
