"""``wingman backup``: a consistent copy of the executor's state, verified before it is kept.

What goes into ``<out>/wingman-backup-<UTC time>/`` (mode 0700), laid out like a data
directory so that restoring is copying it into an empty ``WINGMAN_DATA_DIR``::

    wingman.db            SQLite: the online backup API's copy (consistent while the executor runs)
    wingman.pgdump        PostgreSQL instead: ``pg_dump --format=custom`` (needs pg_dump on PATH)
    audit/checkpoints/    the signed checkpoints     } copies of WINGMAN_AUDIT_EXPORT_PATH
    audit/exports/        the retention exports      }
    <audit kid>.pub       the audit key's PUBLIC half (what verification needs)
    keys/<kid>.pub        the trusted request-signing public keys (and the bot's, when present)
    MANIFEST.json         when, from where, and every file's SHA-256

Private keys (``<audit kid>.key``, ``keys/<bot kid>.key``) and the approvers' one-time
code secrets (``approver-codes/``) only with ``--include-private-keys``; keep such a
backup encrypted.

Order matters for consistency: checkpoints first, then exports, then the database, then
exports again. A checkpoint copied before the database can only vouch for entries the
database copy holds (the chain only grows); an export written while the database was being
copied is picked up by the second pass (its rows are then in both, which verification
accepts). A SQLite backup is then verified in place (``audit.verify_chain`` against the
copied checkpoints and exports); the directory gets its final name only when that holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from audit import AuditError, AuditStore, load_public_key, verify_chain
from audit.signing import KeyFileError
from audit.database import describe, normalize_url, sqlite_path
from bot.settings import BotSettings
from executor.settings import ExecutorSettings
from process.settings import SettingsError, load_settings

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


class BackupError(Exception):
    """The backup could not be made; ``str()`` is one line saying why and what to do."""


@dataclass
class BackupResult:
    directory: Path
    database: str  # "wingman.db" or "wingman.pgdump"
    files: list[str] = field(default_factory=list)
    verified: str | None = None  # verify_chain's summary, for SQLite
    notes: list[str] = field(default_factory=list)


def _stamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# -- files ------------------------------------------------------------------------------------


def _copy_tree(source: Path, target: Path, *, only_new: bool = False) -> None:
    """Copy ``source`` into ``target``: data files before manifests, temporary files never.

    An export's manifest is written after its data file, so copying data files first means
    a copied manifest always has its data beside it.
    """
    if not source.is_dir():
        return
    files = [path for path in source.rglob("*") if path.is_file() and not path.name.startswith(".")]
    files.sort(key=lambda path: (path.name.endswith(".manifest.json"), str(path)))
    for path in files:
        destination = target / path.relative_to(source)
        if only_new and destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _write_public(path: Path, public: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    os.chmod(path, 0o644)


def _copy_private(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(source.read_bytes())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the database ---------------------------------------------------------------------------


def _sqlite_backup(source: Path, target: Path) -> None:
    """The online backup API: a consistent copy while the executor keeps writing."""
    if not source.is_file():
        raise BackupError(f"{source}: no such database file; is WINGMAN_DATA_DIR / WINGMAN_DB_URL right?")
    src = sqlite3.connect(source, timeout=30)  # reads only; may replay a WAL left by a crash
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            status = dst.execute("PRAGMA integrity_check").fetchone()
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: the SQLite backup failed: {exc}") from None
    finally:
        src.close()
    if not status or status[0] != "ok":
        raise BackupError(f"{target}: the copy fails SQLite's integrity check ({status}); the source may be damaged")


def _pg_dump(url: Any, target: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    shown = describe(url)
    if pg_dump is None:
        raise BackupError(
            f"{shown} is PostgreSQL and pg_dump is not on PATH: install the PostgreSQL client of the server's "
            "major version (Debian: apt-get install postgresql-client), or dump it yourself with "
            "pg_dump --format=custom --file wingman.pgdump <database>"
        )
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)  # not on the command line, where ps shows it
    plain = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    completed = subprocess.run(
        [pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--file", str(target), "--dbname", plain],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        reason = " ".join(completed.stderr.split())[:300] or f"exit status {completed.returncode}"
        raise BackupError(f"pg_dump of {shown} failed: {reason}")


# -- the whole backup -----------------------------------------------------------------------


async def make_backup(
    executor: ExecutorSettings,
    bot: BotSettings | None,
    out: Path,
    *,
    now: datetime,
    include_private_keys: bool = False,
) -> BackupResult:
    """Write and verify one backup under ``out``; raise BackupError (one line) if it cannot."""
    try:
        url = normalize_url(executor.database_url)
    except AuditError as exc:
        raise BackupError(f"WINGMAN_DB_URL: {exc}") from None
    name = f"wingman-backup-{_stamp(now)}"
    final = out / name
    if final.exists():
        raise BackupError(f"{final} already exists; wait a second or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = out / f".{name}.partial"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(mode=0o700)
    except OSError as exc:
        raise BackupError(f"{out}: cannot write the backup there: {exc.strerror}") from None

    try:
        result = await _fill(executor, bot, url, work, include_private_keys)
        manifest = {
            "created": now.astimezone(timezone.utc).isoformat(),
            "database": describe(url),
            "database_file": result.database,
            "export_path": str(executor.export_path),
            "private_keys_included": include_private_keys,
            "verified": result.verified,
            "files": {
                str(path.relative_to(work)): _sha256(path)
                for path in sorted(work.rglob("*"))
                if path.is_file()
            },
        }
        (work / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        result.files = sorted(manifest["files"])
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.directory = final
    return result


async def _fill(
    executor: ExecutorSettings, bot: BotSettings | None, url: Any, work: Path, include_private_keys: bool
) -> BackupResult:
    export_path = executor.export_path
    try:
        _copy_tree(export_path / "checkpoints", work / "audit" / "checkpoints")
        _copy_tree(export_path / "exports", work / "audit" / "exports")
    except OSError as exc:
        raise BackupError(f"{export_path}: cannot copy the audit files: {exc}") from None

    source = sqlite_path(url)
    if url.get_backend_name() == "sqlite":
        if source is None:
            raise BackupError(f"{describe(url)}: an in-memory database cannot be backed up")
        database = "wingman.db"
        await asyncio.to_thread(_sqlite_backup, source, work / database)
    else:
        database = "wingman.pgdump"
        await asyncio.to_thread(_pg_dump, url, work / database)
    try:
        _copy_tree(export_path / "exports", work / "audit" / "exports", only_new=True)
    except OSError as exc:
        raise BackupError(f"{export_path}: cannot copy the audit files: {exc}") from None

    result = BackupResult(work, database)
    trusted = _copy_keys(executor, bot, work, include_private_keys, result.notes)

    if database == "wingman.db":
        copy_url = f"sqlite+aiosqlite:///{work / database}"
        try:
            store = await AuditStore.open(copy_url, migrate=False)
            try:
                report = await verify_chain(store, work / "audit", trusted)
            finally:
                await store.close()
        except AuditError as exc:
            raise BackupError(f"the backup cannot be verified: {exc}") from None
        await asyncio.to_thread(_settle, work / database)
        if not report.ok:
            raise BackupError(f"the backup does not verify ({report.summary()}); the source chain is broken: run wingman audit verify")
        result.verified = report.summary()
    else:
        result.notes.append("a PostgreSQL dump is verified after restoring it (see the restore steps)")
    return result


def _settle(path: Path) -> None:
    """Verification opened the copy in WAL mode: fold it back into one file."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()


def _copy_keys(
    executor: ExecutorSettings, bot: BotSettings | None, work: Path, include_private_keys: bool, notes: list[str]
) -> dict[str, Any]:
    """Public halves always, private keys only when asked; the audit keys trusted, by id."""
    trusted: dict[str, Any] = {}
    audit_key = executor.audit_key_path
    try:
        public = load_public_key(audit_key if audit_key.exists() else audit_key.with_suffix(".pub"))
    except KeyFileError as exc:
        raise BackupError(f"WINGMAN_AUDIT_KEY: {exc}; without the audit key's public half the checkpoints cannot be checked") from None
    trusted[audit_key.stem] = public
    _write_public(work / f"{audit_key.stem}.pub", public)
    if include_private_keys:
        if audit_key.exists():
            _copy_private(audit_key, work / audit_key.name)
        else:
            notes.append(f"{audit_key} is not on this host: its private half is not in the backup")
        # Approvers' one-time code secrets: without them every approver enrolls again.
        codes = executor.data_dir / "approver-codes"
        for secret in sorted(codes.iterdir()) if codes.is_dir() else ():
            if secret.is_file() and not secret.name.startswith("."):
                _copy_private(secret, work / "approver-codes" / secret.name)

    for path in executor.trusted_keys:
        try:
            _write_public(work / "keys" / f"{path.stem}.pub", load_public_key(path))
        except KeyFileError as exc:
            notes.append(f"trusted key skipped: {exc}")
    if bot is not None:
        from bot.app import bot_key_path

        bot_key = bot_key_path(bot)
        if bot_key.exists():
            try:
                _write_public(work / "keys" / f"{bot_key.stem}.pub", load_public_key(bot_key))
                if include_private_keys:
                    _copy_private(bot_key, work / "keys" / bot_key.name)
            except (KeyFileError, OSError) as exc:
                notes.append(f"bot key skipped: {exc}")
    return trusted


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def backup_main(
    out: Path,
    *,
    include_private_keys: bool = False,
    echo: Callable[[str], None] = print,
    complain: Callable[[str], None] = _to_stderr,
) -> int:
    """``wingman backup [--out DIR] [--include-private-keys]``.

    Exit 0 with the backup's path; 2 and one line on stderr when no backup was made.
    """
    try:
        executor = load_settings(ExecutorSettings)
    except SettingsError as exc:
        complain(f"wingman: {exc}")
        return EXIT_ERROR
    try:
        bot: BotSettings | None = load_settings(BotSettings)
    except SettingsError:
        bot = None  # the executor's host need not have the bot's settings
    try:
        result = asyncio.run(
            make_backup(executor, bot, out, now=datetime.now(timezone.utc), include_private_keys=include_private_keys)
        )
    except BackupError as exc:
        complain(f"wingman: backup failed: {exc}")
        return EXIT_ERROR
    except (AuditError, OSError) as exc:
        complain(f"wingman: backup failed: {' '.join(str(exc).split())}")
        return EXIT_ERROR
    echo(f"backup written to {result.directory} ({len(result.files)} files, database {result.database})")
    if result.verified:
        echo(f"verified: {result.verified}")
    for note in result.notes:
        echo(f"note: {note}")
    return EXIT_OK
