"""Alembic migrations of the executor's tables (version table ``executor_alembic_version``)."""
