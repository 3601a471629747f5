"""Signed checkpoints: the chain head, written outside the database, so truncation shows.

A checkpoint is a JSON file ``checkpoint-<seq>-<time>.json`` under
``<WINGMAN_AUDIT_EXPORT_PATH>/checkpoints/`` holding ``origin`` (the chain's identity),
``seq``, ``entry_hash``, ``time``, ``kid`` (the audit key's id) and ``signature``: base64
Ed25519 over ``b"wingman-checkpoint-v1\\n"`` followed by the canonical JSON (see
``audit.canonical``) of the other five fields. Export manifests are signed the same way
with their own purpose line (see ``audit.exports``).

How often: the executor writes one every ``WINGMAN_CHECKPOINT_EVERY`` entries and at least
every ``CHECKPOINT_INTERVAL`` while entries were added, besides daily, at clean shutdown and
on demand. Verification therefore expects every entry older than ``UNCOVERED_LIMIT`` to be
covered by a checkpoint (or a signed export), and warns when the newest checkpoint is older
than ``STALE_LIMIT``.

A **witness line** is a checkpoint in one line of text, for a copy kept where an attacker on
this host cannot edit it (the team chat)::

    wingman-checkpoint v1 <kid> <chain-id> <seq> <entry_hash> <time> <signature>

The signature is the checkpoint's own, in unpadded base64url; ``<chain-id>`` is the part of
``origin`` after ``wingman-audit/``. Pasted back (``wingman audit verify --witness``) it is
checked like a checkpoint file that was never on this host.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.canonical import TS_FORMAT, format_ts
from audit.errors import CheckpointError, Tampered
from audit.files import ensure_dir, write_atomic
from audit.signing import KID_PATTERN, SigningKey, check_signature, signature_holds, signed_message
from audit.store import Head

CHECKPOINT_PURPOSE = b"wingman-checkpoint-v1\n"
CHECKPOINT_FIELDS = ("origin", "seq", "entry_hash", "time", "kid")
ORIGIN_PREFIX = "wingman-audit/"
WITNESS_TAG = "wingman-checkpoint"
WITNESS_VERSION = "v1"

# The schedule (the executor's scheduler keeps it) and what verification expects of it.
CHECKPOINT_INTERVAL = timedelta(hours=1)
# An entry may wait for its checkpoint an interval plus slack for a late or slow run.
UNCOVERED_LIMIT = CHECKPOINT_INTERVAL + timedelta(minutes=30)
# A checkpoint is written at least daily: a newest one older than a day plus slack means
# the executor's checkpoints stopped.
STALE_LIMIT = timedelta(hours=26)

_WITNESS = re.compile(
    rf"{WITNESS_TAG} {WITNESS_VERSION} (?P<kid>\S+) (?P<chain>[0-9a-f]{{32}}) (?P<seq>0|[1-9][0-9]{{0,18}}) "
    r"(?P<hash>[0-9a-f]{64}) (?P<time>\S+) (?P<sig>[A-Za-z0-9_-]{86})"
)


class WitnessError(CheckpointError):
    """A witness line that cannot be used: not the format, or its signature does not hold."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    seq: int
    entry_hash: str
    time: str
    kid: str
    path: Path | None  # None: a witness line, never a file here
    signature: str = ""  # base64, as in the file
    label: str = ""  # where it came from when not a file ("witness line 2")

    @property
    def name(self) -> str:
        """How a person finds it: the file name, or the witness line's number."""
        return self.path.name if self.path is not None else self.label

    def witness_line(self) -> str:
        """This checkpoint as one line to keep outside the host (see the module docstring)."""
        chain = self.origin.removeprefix(ORIGIN_PREFIX)
        signature = base64.urlsafe_b64encode(base64.b64decode(self.signature)).decode("ascii").rstrip("=")
        return f"{WITNESS_TAG} {WITNESS_VERSION} {self.kid} {chain} {self.seq} {self.entry_hash} {self.time} {signature}"


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
    return Checkpoint(head.origin, head.seq, head.entry_hash, document["time"], key.kid, path, document["signature"])


def newest_checkpoint_seq(export_path: Path) -> int:
    """The seq the newest checkpoint file claims by its name (0: none); unchecked, for scheduling."""
    directory = checkpoint_dir(export_path)
    if not directory.is_dir():
        return 0
    return max((_claimed_seq(path) for path in directory.glob("checkpoint-*.json")), default=0)


def newest_checkpoint(export_path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Checkpoint | None:
    """The checkpoint file with the highest seq, its signature checked; None when there is none."""
    directory = checkpoint_dir(export_path)
    if not directory.is_dir():
        return None
    paths = sorted(directory.glob("checkpoint-*.json"), key=lambda path: (_claimed_seq(path), path.name))
    return _read_checkpoint(paths[-1], trusted) if paths else None


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
    return Checkpoint(
        document["origin"], seq, document["entry_hash"], document["time"], document["kid"], path, document["signature"]
    )


def parse_witness(line: str, label: str, trusted: Mapping[str, Ed25519PublicKey]) -> Checkpoint:
    """A witness line as a checkpoint, its signature checked; ``WitnessError`` says what is wrong."""
    match = _WITNESS.fullmatch(line.strip())
    if match is None:
        raise WitnessError(
            f"{label} is not a checkpoint line: expected "
            f"'{WITNESS_TAG} {WITNESS_VERSION} <kid> <chain-id> <seq> <hash> <time> <signature>' as the chat shows it"
        )
    kid, time = match["kid"], match["time"]
    if not KID_PATTERN.fullmatch(kid):
        raise WitnessError(f"{label}: {kid!r} is not a key id")
    try:
        datetime.strptime(time, TS_FORMAT)
    except ValueError:
        raise WitnessError(f"{label}: {time!r} is not a checkpoint time") from None
    if kid not in trusted:
        known = ", ".join(sorted(trusted)) or "none"
        raise WitnessError(f"{label}: signed by unknown key {kid!r} (trusted audit keys: {known}); pass its public key with --key FILE")
    signature = base64.b64encode(base64.urlsafe_b64decode(match["sig"] + "==")).decode("ascii")
    document = {"origin": ORIGIN_PREFIX + match["chain"], "seq": int(match["seq"]), "entry_hash": match["hash"], "time": time, "kid": kid}
    if not signature_holds(trusted[kid], signature, signed_message(CHECKPOINT_PURPOSE, document)):
        raise WitnessError(f"{label}: the signature does not hold (the line was altered or cut when copied); copy it again from the chat")
    return Checkpoint(document["origin"], document["seq"], match["hash"], time, kid, None, signature, label)
