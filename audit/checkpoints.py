"""Signed checkpoints: the chain head, written outside the database, so truncation shows.

A checkpoint is a JSON file ``checkpoint-<seq>-<time>.json`` under
``<WINGMAN_AUDIT_EXPORT_PATH>/checkpoints/`` holding ``origin`` (the chain's identity),
``seq``, ``entry_hash``, ``time``, ``kid`` (the audit key's id) and ``signature``: base64
Ed25519 over ``b"wingman-checkpoint-v1\\n"`` followed by the canonical JSON (see
``audit.canonical``) of the other five fields. Export manifests are signed the same way
with their own purpose line (see ``audit.exports``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.canonical import format_ts
from audit.errors import CheckpointError, Tampered
from audit.files import ensure_dir, write_atomic
from audit.signing import SigningKey, check_signature, signed_message
from audit.store import Head

CHECKPOINT_PURPOSE = b"wingman-checkpoint-v1\n"
CHECKPOINT_FIELDS = ("origin", "seq", "entry_hash", "time", "kid")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    seq: int
    entry_hash: str
    time: str
    kid: str
    path: Path


def checkpoint_dir(export_path: Path) -> Path:
    return export_path / "checkpoints"


def write_checkpoint(head: Head, export_path: Path, key: SigningKey, now: datetime) -> Checkpoint:
    """Sign ``head`` and write it as a new checkpoint file."""
    directory = ensure_dir(checkpoint_dir(export_path))
    document: dict[str, Any] = {
        "origin": head.origin,
        "seq": head.seq,
        "entry_hash": head.entry_hash,
        "time": format_ts(now),
        "kid": key.kid,
    }
    document["signature"] = key.sign(signed_message(CHECKPOINT_PURPOSE, document))
    stamp = document["time"].replace("-", "").replace(":", "").replace(".", "")
    path = directory / f"checkpoint-{head.seq:012d}-{stamp}.json"
    write_atomic(path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return Checkpoint(head.origin, head.seq, head.entry_hash, document["time"], key.kid, path)


def load_checkpoints(export_path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> list[Checkpoint]:
    """Every checkpoint, its signature checked, oldest seq first."""
    directory = checkpoint_dir(export_path)
    if not directory.is_dir():
        return []
    found: list[Checkpoint] = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        found.append(_read_checkpoint(path, trusted))
    found.sort(key=lambda checkpoint: (checkpoint.seq, checkpoint.time))
    return found


def _claimed_seq(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def _read_checkpoint(path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Checkpoint:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise Tampered(_claimed_seq(path), f"{path.name}: not valid JSON (the file was altered)") from None
    if not isinstance(document, dict) or set(document) != {*CHECKPOINT_FIELDS, "signature"}:
        raise Tampered(_claimed_seq(path), f"{path.name}: not a checkpoint (fields changed)")
    seq = document["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise Tampered(_claimed_seq(path), f"{path.name}: seq is not a count")
    check_signature(path, document, CHECKPOINT_PURPOSE, trusted, seq, CheckpointError)
    return Checkpoint(document["origin"], seq, document["entry_hash"], document["time"], document["kid"], path)
