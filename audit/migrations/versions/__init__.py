"""Audit schema revisions, oldest first."""
