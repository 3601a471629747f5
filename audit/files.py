"""Durable file writes for checkpoints and exports: written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from audit.errors import ExportError


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> Path:
    """Create ``directory`` if needed and prove it writable, or say why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{directory}: cannot create the directory: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"{directory}: not writable by this user; fix its owner or mode")
    return directory


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsynced, then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write: {exc.strerror}") from None
