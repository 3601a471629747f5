"""Executor schema revisions, oldest first."""
