"""The tamper-evident audit chain: append-only entries hash-linked in the database.

Public face: open an :class:`AuditStore`, ``append`` entries, ``verify_chain`` them (with
signed checkpoints and retention exports kept outside the database). Knows nothing of
Telegram, Docker or Proxmox.
"""

from audit.canonical import GENESIS_HASH, canonical_json, chain_hash, entry_object, format_ts, hash_row
from audit.checkpoints import Checkpoint, load_checkpoints, write_checkpoint
from audit.errors import AuditError, CheckpointError, ExportError, StoreUnavailable, Tampered
from audit.exports import ExportResult, Manifest, export_older_than, load_manifests
from audit.signing import KeyFileError, SigningKey, generate_key_pair, load_public_key, load_signing_key
from audit.store import AuditEntry, AuditStore, Head, normalize_url
from audit.verify import VerifyReport, verify_chain

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
    "verify_chain",
    "write_checkpoint",
]
