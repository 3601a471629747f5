"""Durable, private file writes for checkpoints and exports: written whole or not at all,
readable by the executor's user only (0600 files in 0700 directories), whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from audit.errors import ExportError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dir(directory: Path, mode: int = PRIVATE_DIR) -> bool:
    """Create ``directory`` and its missing parents with ``mode`` whatever the umask; an
    existing directory is left as it is (``wingman check`` flags a wide one). Raises OSError.
    Returns whether it was created."""
    missing: list[Path] = []
    level = directory
    while not level.exists() and level != level.parent:
        missing.append(level)
        level = level.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs to set
        os.chmod(path, mode)
    return bool(missing)


def create_private(path: Path, *, exclusive: bool = False) -> int:
    """Open ``path`` for writing as a new or truncated file of mode 0600, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_private(path: Path) -> BinaryIO:
    return os.fdopen(create_private(path), "wb")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> Path:
    """Create ``directory`` if needed and prove it writable, or say why not."""
    try:
        make_private_dir(directory)
    except OSError as exc:
        raise ExportError(f"{directory}: cannot create the directory: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"{directory}: not writable by this user; fix its owner or mode")
    return directory


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsynced, then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open_private(tmp) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write: {exc.strerror}") from None
