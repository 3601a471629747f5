"""Retention exports: old entries move to signed, compressed files before leaving the database.

Under ``<WINGMAN_AUDIT_EXPORT_PATH>/exports/`` each export is two files:

``audit-<first>-<last>.jsonl.gz``
    gzip of one line per entry, oldest first: the canonical JSON (see ``audit.canonical``)
    of an object with every ``audit_log`` column, ``params`` as a nested object.
``audit-<first>-<last>.manifest.json``
    ``origin``, ``first_seq``, ``last_seq``, ``count``, ``first_prev_hash``,
    ``last_entry_hash``, ``file`` (the name above), ``sha256`` (of the compressed file),
    ``created``, ``kid`` and ``signature``: base64 Ed25519 over
    ``b"wingman-export-manifest-v1\\n"`` followed by the canonical JSON of the other fields.

Entries leave the database only after their file is fsynced, read back and verified
against the chain (linking to the export before it), and its manifest written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import ChainVerifier
from audit.canonical import GENESIS_HASH, CanonicalError, canonical_json, format_ts
from audit.errors import ExportError, Tampered
from audit.files import ensure_dir, fsync_dir, open_private, write_atomic
from audit.schema import ROW_FIELDS
from audit.signing import SigningKey, check_signature, signed_message
from audit.store import AuditStore, Row

MANIFEST_PURPOSE = b"wingman-export-manifest-v1\n"
MANIFEST_FIELDS = (
    "origin", "first_seq", "last_seq", "count", "first_prev_hash", "last_entry_hash", "file", "sha256", "created", "kid",
)  # fmt: skip
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    origin: str
    first_seq: int
    last_seq: int
    count: int
    first_prev_hash: str
    last_entry_hash: str
    file: str
    sha256: str
    created: str
    kid: str
    path: Path

    @property
    def data_path(self) -> Path:
        return self.path.parent / self.file


@dataclass(frozen=True, slots=True)
class ExportResult:
    exported: int
    first_seq: int | None
    last_seq: int | None
    removed: int
    manifest: Path | None
    dry_run: bool


def export_dir(export_path: Path) -> Path:
    return export_path / "exports"


# -- reading ----------------------------------------------------------------------------


def load_manifests(export_path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> list[Manifest]:
    """Every export manifest, signature checked, in seq order."""
    directory = export_dir(export_path)
    if not directory.is_dir():
        return []
    manifests = [_read_manifest(path, trusted) for path in sorted(directory.glob("audit-*.manifest.json"))]
    manifests.sort(key=lambda manifest: manifest.first_seq)
    return manifests


def _claimed_first(path: Path) -> int:
    try:
        return int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def _read_manifest(path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Manifest:
    claimed = _claimed_first(path)
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise Tampered(claimed, f"{path.name}: not valid JSON (the manifest was altered)") from None
    if not isinstance(document, dict) or set(document) != {*MANIFEST_FIELDS, "signature"}:
        raise Tampered(claimed, f"{path.name}: not an export manifest (fields changed)")
    for name in ("first_seq", "last_seq", "count"):
        value = document[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise Tampered(claimed, f"{path.name}: {name} is not a whole number (the manifest was altered)")
    for name in ("origin", "first_prev_hash", "last_entry_hash", "file", "sha256", "created"):
        if not isinstance(document[name], str):
            raise Tampered(claimed, f"{path.name}: {name} is not text (the manifest was altered)")
    check_signature(path, document, MANIFEST_PURPOSE, trusted, document["first_seq"], ExportError)
    if "/" in document["file"] or document["file"].startswith("."):
        raise Tampered(document["first_seq"], f"{path.name}: names a file outside the export directory")
    fields = {name: document[name] for name in MANIFEST_FIELDS}
    return Manifest(**fields, path=path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def export_rows(manifest: Manifest) -> Iterator[Row]:
    """The entries of one export, after checking its file against the manifest.

    Raises ``Tampered`` when the file is missing, differs from its manifest or cannot be read.
    """
    path = manifest.data_path
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        raise Tampered(manifest.first_seq, f"{manifest.file}: the export file is missing") from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror}") from None
    if actual != manifest.sha256:
        raise Tampered(manifest.first_seq, f"{manifest.file}: the file differs from its signed manifest")
    seq = manifest.first_seq
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                seq = entry["seq"] if isinstance(entry.get("seq"), int) else seq
                yield tuple(
                    canonical_json(entry[field]) if field == "params" else entry[field] for field in ROW_FIELDS
                )
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError, CanonicalError) as exc:
        raise Tampered(seq, f"{manifest.file}: an entry cannot be read ({type(exc).__name__})") from None


# -- writing ----------------------------------------------------------------------------


def _row_line(row: Row) -> bytes:
    entry = dict(zip(ROW_FIELDS, row))
    entry["params"] = json.loads(entry["params"])
    return canonical_json(entry).encode("utf-8") + b"\n"


async def export_older_than(
    store: AuditStore,
    export_path: Path,
    key: SigningKey,
    cutoff: datetime,
    now: datetime,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    dry_run: bool = False,
) -> ExportResult:
    """Export the entries older than ``cutoff`` (an unbroken run from the oldest), then prune.

    Nothing is removed unless the export was written, read back and verified whole.
    """
    directory = export_dir(export_path) if dry_run else ensure_dir(export_dir(export_path))
    manifests = load_manifests(export_path, trusted)
    exported_through = manifests[-1].last_seq if manifests else 0
    link = manifests[-1].last_entry_hash if manifests else GENESIS_HASH

    async with store.snapshot() as snapshot:
        last = await snapshot.rows_before(format_ts(cutoff))
        origin = snapshot.head.origin
        if last is None or last <= exported_through:
            if not dry_run and exported_through:
                # A crash between writing an export and pruning leaves its rows behind.
                await store.delete_through(exported_through)
            return ExportResult(0, None, None, 0, None, dry_run)
        first = exported_through + 1
        if dry_run:
            return ExportResult(last - first + 1, first, last, 0, None, True)
        name = f"audit-{first:012d}-{last:012d}"
        data_path = directory / f"{name}.jsonl.gz"
        tmp = directory / f".{name}.jsonl.gz.tmp"
        count = 0
        try:
            with open_private(tmp) as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                    async for batch in snapshot.batches(after_seq=exported_through, through_seq=last):
                        packed.write(b"".join(_row_line(row) for row in batch))
                        count += len(batch)
                raw.flush()
                os.fsync(raw.fileno())
            tmp.replace(data_path)
            fsync_dir(directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ExportError(f"{data_path}: cannot write the export: {exc.strerror}") from None

    if count != last - first + 1:
        data_path.unlink(missing_ok=True)
        raise ExportError(
            f"entries {first}..{last} are not all in the database ({count} found): run `wingman audit verify`"
        )
    # Read it back and verify it against the chain before anything leaves the database.
    document: dict[str, Any] = {
        "origin": origin,
        "first_seq": first,
        "last_seq": last,
        "count": count,
        "first_prev_hash": link,
        "last_entry_hash": "",
        "file": data_path.name,
        "sha256": file_sha256(data_path),
        "created": format_ts(now),
        "kid": key.kid,
    }
    verifier = ChainVerifier(next_seq=first, prev_hash=link)
    unsigned = Manifest(**document, path=data_path)
    try:
        for row in export_rows(unsigned):
            if verifier.feed_one(row) is not None:
                break
    except Tampered as exc:
        verifier.fail(exc.seq, exc.reason)
    if verifier.broken is not None or verifier.next_seq != last + 1:
        data_path.unlink(missing_ok=True)
        seq, reason = verifier.broken or (last, "the export is incomplete")
        raise ExportError(f"export refused, nothing removed: broken at seq {seq}: {reason}")
    document["last_entry_hash"] = verifier.prev_hash
    document["signature"] = key.sign(signed_message(MANIFEST_PURPOSE, document))
    manifest_path = directory / f"{name}.manifest.json"
    write_atomic(manifest_path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    removed = await store.delete_through(last)
    return ExportResult(count, first, last, removed, manifest_path, False)
