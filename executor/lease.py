"""The executor's lease on its database: one executor per database, enforced.

Replay claims are held in memory, crash recovery assumes no other executor is deploying,
and scheduled jobs assume they run once; a second executor on the same database would
break all three. So before anything else at start-up the executor takes a lease, and holds
it until it stops:

- SQLite: an exclusive ``flock`` on ``<database>.lock`` beside the database file. The file
  says who holds it (one line: host, pid, since when), written once the lock is ours.
- PostgreSQL: a session advisory lock (``pg_advisory_lock``, waiting at most
  ``ADVISORY_WAIT`` seconds) held by a connection of its own for the daemon's life. The holder's name travels as that connection's
  ``application_name`` (``wingman-executor pid=… since=… host=…``); a second executor reads
  it from ``pg_stat_activity`` joined to ``pg_locks`` on the backend that holds the lock.
  No table and no migration: nothing is written, so nothing can go stale, and the name
  shown is always that of the session that holds the lock right now.

Either lock dies with its holder (the kernel closes the file or the socket of a killed
process), so a lease left by a killed executor is free at once: the file lock when the
process is gone, the advisory lock as soon as the server notices the closed connection,
which the short wait covers. An in-memory SQLite
database needs no lease: no other process can open it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from audit.database import describe, sqlite_path

# The advisory lock's key: any fixed 64-bit number; this is b"wingman\x00" read as an integer.
ADVISORY_KEY = int.from_bytes(b"wingman\x00", "big")
APPLICATION = "wingman-executor"
NAME_LIMIT = 63  # PostgreSQL keeps this many bytes of application_name (NAMEDATALEN - 1)
ADVISORY_WAIT = 3.0  # seconds a second executor waits before it gives up on a held lock
LOCK_NOT_AVAILABLE = "55P03"


class LeaseError(Exception):
    """The lease cannot be taken; ``str()`` is one line naming the holder or the problem."""


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    since: str  # UTC, e.g. 2026-12-07T00:35:54Z

    @classmethod
    def me(cls) -> Holder:
        since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(socket.gethostname(), os.getpid(), since)

    def line(self) -> str:
        return f"pid={self.pid} since={self.since} host={self.host}"

    @classmethod
    def parse(cls, line: str) -> Holder | None:
        fields = dict(part.partition("=")[::2] for part in line.split() if "=" in part)
        pid = fields.get("pid", "")
        if not pid.isdigit() or "since" not in fields or "host" not in fields:
            return None
        return cls(fields["host"], int(pid), fields["since"])

    def __str__(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since}"


def held_by(holder: Holder | None, where: str) -> LeaseError:
    who = str(holder) if holder is not None else "it has not said who it is yet"
    return LeaseError(f"another executor holds {where} ({who}); stop it first, or give this one its own database")


class Lease:
    """A held lease; :meth:`release` gives it back (stopping the daemon does)."""

    def __init__(
        self, where: str, *, fd: int | None = None, conn: AsyncConnection | None = None, engine: AsyncEngine | None = None
    ) -> None:
        self.where = where
        self._fd = fd
        self._conn = conn
        self._engine = engine

    @classmethod
    async def take(cls, url: URL) -> Lease:
        path = sqlite_path(url)
        if path is not None:
            path = path.resolve()  # two spellings of one database (a symlink, ./data) share one lock
            return cls._take_file(path, path.with_name(path.name + ".lock"))
        if url.get_backend_name() == "postgresql":
            return await cls._take_advisory(url)
        return cls("an in-memory database")

    @classmethod
    def _take_file(cls, database: Path, path: Path) -> Lease:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # No O_TRUNC: the holder's line must survive a second executor's open.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LeaseError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = Holder.parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            finally:
                os.close(fd)
            raise held_by(holder, str(database)) from None
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"cannot lock {path}: {exc.strerror}") from None
        line = (Holder.me().line() + "\n").encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"cannot write the lock file {path}: {exc.strerror}") from None
        return cls(str(path), fd=fd)

    @classmethod
    async def _take_advisory(cls, url: URL) -> Lease:
        where = describe(url)
        name = f"{APPLICATION} {Holder.me().line()}".encode("ascii", "replace")[:NAME_LIMIT].decode()
        engine = create_async_engine(
            url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"server_settings": {"application_name": name}}
        )
        try:
            conn = await engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise LeaseError(f"{where}: cannot connect to take the executor's lease: {_text(exc)}") from None
        try:
            taken = await _wait_for_lock(conn)
            holder = None if taken else await _advisory_holder(conn)
        except (SQLAlchemyError, OSError) as exc:
            await conn.close()
            await engine.dispose()
            raise LeaseError(f"{where}: cannot take the executor's lease: {_text(exc)}") from None
        if not taken:
            await conn.close()
            await engine.dispose()
            raise held_by(holder, where)
        return cls(where, conn=conn, engine=engine)

    async def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # The line stays: it is only read while the file is locked by someone.
            os.close(fd)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.close()
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()


async def _wait_for_lock(conn: AsyncConnection) -> bool:
    """Whether the lock is ours, waiting a little for it: the server ends a killed holder's
    session (and its lock) only once it notices the closed connection, a moment after."""
    await conn.execute(text(f"SET lock_timeout = '{int(ADVISORY_WAIT * 1000)}ms'"))
    try:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
    except DBAPIError as exc:
        if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        return False
    await conn.execute(text("SET lock_timeout = 0"))
    return True


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


async def _advisory_holder(conn: AsyncConnection) -> Holder | None:
    """Who holds the lock: the application_name of the backend that holds it."""
    high, low = divmod(ADVISORY_KEY, 1 << 32)
    row = (
        await conn.execute(
            text(
                "SELECT a.application_name "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = :high AND l.objid = :low AND l.objsubid = 1"
            ),
            {"high": high, "low": low},
        )
    ).first()
    if row is None:
        return None  # released meanwhile; the next start will take it
    return Holder.parse(row[0] or "")


def _text(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    return " ".join(str(reason).split()) or type(reason).__name__
