"""Alembic migrations of the audit tables (version table ``audit_alembic_version``)."""
