"""The tamper-evident audit chain: append-only entries hash-linked in the database.

Public face: open an :class:`AuditStore`, ``append`` entries, ``verify_chain`` them (with
signed checkpoints and retention exports kept outside the database). Knows nothing of
Telegram, Docker or Proxmox.
"""

import importlib
from typing import Any

# Loaded on first use: the bot needs only audit.signing, and importing the store would
# bring SQLAlchemy and Alembic into a process that never opens a database.
_EXPORTS = {
    "AuditEntry": "audit.store",
    "AuditError": "audit.errors",
    "AuditStore": "audit.store",
    "Checkpoint": "audit.checkpoints",
    "CheckpointError": "audit.errors",
    "ExportError": "audit.errors",
    "ExportResult": "audit.exports",
    "GENESIS_HASH": "audit.canonical",
    "Head": "audit.store",
    "KeyFileError": "audit.signing",
    "Manifest": "audit.exports",
    "SigningKey": "audit.signing",
    "StoreUnavailable": "audit.errors",
    "Tampered": "audit.errors",
    "VerifyReport": "audit.verify",
    "WitnessError": "audit.checkpoints",
    "canonical_json": "audit.canonical",
    "chain_hash": "audit.canonical",
    "entry_object": "audit.canonical",
    "export_older_than": "audit.exports",
    "format_ts": "audit.canonical",
    "generate_key_pair": "audit.signing",
    "hash_row": "audit.canonical",
    "load_checkpoints": "audit.checkpoints",
    "load_manifests": "audit.exports",
    "load_public_key": "audit.signing",
    "load_signing_key": "audit.signing",
    "normalize_url": "audit.database",
    "parse_witness": "audit.checkpoints",
    "verify_chain": "audit.verify",
    "write_checkpoint": "audit.checkpoints",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditError",
    "AuditStore",
    "Checkpoint",
    "CheckpointError",
    "ExportError",
    "ExportResult",
    "Head",
    "KeyFileError",
    "Manifest",
    "SigningKey",
    "StoreUnavailable",
    "Tampered",
    "VerifyReport",
    "WitnessError",
    "canonical_json",
    "chain_hash",
    "entry_object",
    "export_older_than",
    "format_ts",
    "generate_key_pair",
    "hash_row",
    "load_checkpoints",
    "load_manifests",
    "load_public_key",
    "load_signing_key",
    "normalize_url",
    "parse_witness",
    "verify_chain",
    "write_checkpoint",
]
