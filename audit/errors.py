"""The audit package's exceptions; each carries a one-line reason meant for an operator."""

from __future__ import annotations


class AuditError(Exception):
    """Something about the audit store that an operator must fix; ``str()`` is one line."""


class StoreUnavailable(AuditError):
    """The database cannot be opened or read (missing file, not a database, unreachable)."""


class ExportError(AuditError):
    """A retention export, its manifest or the export directory is unusable."""


class CheckpointError(AuditError):
    """A checkpoint file cannot be read, is malformed, or its signature does not hold."""


class Tampered(Exception):
    """Evidence outside the database does not hold: verification reports a broken chain."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason
