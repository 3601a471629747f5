"""The audit store: opening the database, appending entries durably, reading them back.

SQLite (aiosqlite, the default) and PostgreSQL (asyncpg), opened through ``audit.database``.

Appends are serialized twice over: inside one process a single writer task takes every
pending append in turn and writes whatever has queued up meanwhile in one transaction
(group commit); across processes each transaction locks the chain head first (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT … FOR UPDATE`` on the one-row ``audit_head``).
``append`` returns only after its transaction has committed: SQLite runs in WAL mode with
``synchronous=FULL``, PostgreSQL with its default synchronous commit, so a returned entry
survives a crash of the process or the machine.

Why this file is longer than about 500 lines: the SQLite writer thread, the group-commit
append and the read snapshots are the two sides of one durability contract (what a
returned append promises, what a reader sees) and are checked against each other here.
The database plumbing is in ``audit.database``, the batching in ``audit.batching``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.batching import GroupCommit
from audit.canonical import encode_text, canonical_json, chain_hash, entry_object, format_ts
from audit.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    describe,
    lenient_text,
    make_engine,
    normalize_url,
    sqlite_path,
    unavailable,
    upgrade_schema,
)
from audit.errors import AuditError, StoreUnavailable
from audit.files import create_private, make_private_dir
from audit.migrations import MIGRATIONS
from audit.schema import ROW_COLUMNS, ROW_FIELDS, audit_head, audit_log

Row = tuple[Any, ...]  # in the order of audit.schema.ROW_FIELDS
T = TypeVar("T")
STREAM_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    target: str | None
    params: dict[str, Any]
    decision: str
    outcome: str | None
    request_id: str | None
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        seq, ts, actor, action, target, params, decision, outcome, request_id, prev, entry_hash = row
        return cls(seq, ts, actor, action, target, json.loads(params), decision, outcome, request_id, prev, entry_hash)


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries of one page of the trail, oldest first, and whether there is more either side."""

    entries: list[AuditEntry]
    older: bool
    newer: bool


@dataclass(frozen=True, slots=True)
class Head:
    chain_id: str
    seq: int
    entry_hash: str

    @property
    def origin(self) -> str:
        return f"wingman-audit/{self.chain_id}"


@dataclass(frozen=True, slots=True)
class Along:
    """A row of another table to write in the same transaction as an audit entry, so that
    both are durable or neither is (e.g. the executor's claim of a request's token id).
    A row whose primary key is already there is left as it is."""

    table: Table
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Pending:
    actor: str
    action: str
    target: str | None
    params: dict[str, Any]
    params_json: str
    decision: str
    outcome: str | None
    request_id: str | None
    along: Along | None = None


class SqliteWriter:
    """One sqlite3 connection used from one thread of its own, for the hot write paths.

    SQLAlchemy over aiosqlite costs a thread hop per statement; a group-committed batch
    written here costs one. Durability is the same: WAL, ``synchronous=FULL``, and
    ``BEGIN IMMEDIATE`` so writers in other processes queue on the database lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            self._db = db
        return self._db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(self._connection(), *args))

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=True)


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _along_rows(batch: list[_Pending]) -> dict[Table, list[dict[str, Any]]]:
    rows: dict[Table, list[dict[str, Any]]] = {}
    for pending in batch:
        if pending.along is not None:
            rows.setdefault(pending.along.table, []).append(pending.along.values)
    return rows


class AuditStore:
    """The hash-chained ``audit_log`` of one database."""

    def __init__(self, url: URL, *, clock: Callable[[], datetime] | None = None, max_batch: int = 512) -> None:
        self.url = url
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._writer_engine = make_engine(url, writer=True)
        self._reader_engine = make_engine(url, writer=False)
        path = sqlite_path(url)
        self._sqlite = SqliteWriter(path) if path is not None else None
        self._writer: GroupCommit[_Pending, AuditEntry] = GroupCommit(
            self._write_batch, max_batch=max_batch, translate=self._failure, name="audit-writer"
        )
        self._closed = False
        self._listeners: list[Callable[[int], None]] = []

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(
        cls, url: str | URL, *, migrate: bool = True, clock: Callable[[], datetime] | None = None
    ) -> AuditStore:
        """Open the store; with ``migrate`` create or upgrade the schema, else require it.

        Without ``migrate`` nothing is written: a missing SQLite file is an error, not created.
        """
        parsed = normalize_url(url) if isinstance(url, str) else url
        path = sqlite_path(parsed)
        if path is not None:
            if migrate:
                try:
                    make_private_dir(path.parent)
                except OSError as exc:
                    raise StoreUnavailable(f"{path.parent}: cannot create the data directory: {exc.strerror}") from None
                try:
                    # Born 0600 whatever the umask; SQLite gives its -wal and -shm files the
                    # database file's mode.
                    os.close(create_private(path, exclusive=True))
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise StoreUnavailable(f"{path}: cannot create the database file: {exc.strerror}") from None
            elif not path.is_file():
                raise StoreUnavailable(f"{path}: no such database file")
        store = cls(parsed, clock=clock)
        try:
            if migrate:
                await store._migrate()
            await store.head()
        except AuditError:
            await store.close()
            raise
        except (SQLAlchemyError, OSError) as exc:
            await store.close()
            raise unavailable(parsed, exc) from None
        return store

    async def _migrate(self) -> None:
        await upgrade_schema(self._writer_engine, MIGRATIONS)

    async def close(self) -> None:
        """Write what is queued, then release the database."""
        self._closed = True
        await self._writer.close()
        if self._sqlite is not None:
            await self._sqlite.close()
        await self._writer_engine.dispose()
        await self._reader_engine.dispose()

    # -- appending -------------------------------------------------------------------------

    async def append(
        self,
        *,
        actor: str,
        action: str,
        decision: str,
        target: str | None = None,
        params: dict[str, Any] | None = None,
        outcome: str | None = None,
        request_id: str | None = None,
        along: Along | None = None,
    ) -> AuditEntry:
        """Append one entry (and ``along``'s row); returns once it is durable. Raises
        ``AuditError`` on bad values."""
        if self._closed:
            raise StoreUnavailable("the audit store is closed")
        for name, value, optional in (
            ("actor", actor, False),
            ("action", action, False),
            ("decision", decision, False),
            ("target", target, True),
            ("outcome", outcome, True),
            ("request_id", request_id, True),
        ):
            if value is None and optional:
                continue
            if not isinstance(value, str):
                raise AuditError(f"audit field {name} must be text, not {type(value).__name__}")
            if "\x00" in value:
                # PostgreSQL text cannot hold NUL; refuse it on every backend alike.
                raise AuditError(f"audit field {name} contains a NUL character; escape it before auditing")
            encode_text(value)  # refuses what has no canonical form
        if params is not None and not isinstance(params, dict):
            raise AuditError(f"audit params must be an object, not {type(params).__name__}")
        params = dict(params or {})
        pending = _Pending(actor, action, target, params, canonical_json(params), decision, outcome, request_id, along)
        return await self._writer.submit(pending)

    def _failure(self, exc: Exception) -> BaseException:
        return exc if isinstance(exc, AuditError) else unavailable(self.url, exc)

    def _chain(self, batch: list[_Pending], seq: int, prev: str) -> tuple[list[Row], list[AuditEntry]]:
        """The rows that continue the chain from (seq, prev) with ``batch``."""
        ts = format_ts(self._clock())
        rows: list[Row] = []
        entries: list[AuditEntry] = []
        for p in batch:
            seq += 1
            text = entry_object(
                ts=ts,
                actor=p.actor,
                action=p.action,
                target=p.target,
                params_json=p.params_json,
                decision=p.decision,
                outcome=p.outcome,
                request_id=p.request_id,
            )
            entry_hash = chain_hash(seq, prev, text)
            rows.append((seq, ts, p.actor, p.action, p.target, p.params_json, p.decision, p.outcome, p.request_id, prev, entry_hash))
            entries.append(AuditEntry(seq, ts, p.actor, p.action, p.target, p.params, p.decision, p.outcome, p.request_id, prev, entry_hash))
            prev = entry_hash
        return rows, entries

    def on_append(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Have ``listener(seq)`` told the newest seq after each committed batch; returns the
        function that stops it. It runs on the append path: it may start work, never wait
        for it (the scheduler's checkpoint trigger is one)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def _write_batch(self, batch: list[_Pending]) -> list[AuditEntry]:
        entries = await self._commit_batch(batch)
        for listener in list(self._listeners):
            try:
                listener(entries[-1].seq)
            except Exception:  # a listener's fault must not fail the appends that committed
                logging.getLogger("wingman.audit").exception("an append listener failed")
        return entries

    async def _commit_batch(self, batch: list[_Pending]) -> list[AuditEntry]:
        if self._sqlite is not None:
            return await self._sqlite.run(self._write_batch_sqlite, batch)
        async with self._writer_engine.begin() as conn:
            head = (
                await conn.execute(
                    select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == 1).with_for_update()
                )
            ).one_or_none()
            if head is None:
                raise StoreUnavailable(f"{describe(self.url)}: the audit_head row is missing")
            rows, entries = self._chain(batch, *head)
            await conn.execute(insert(audit_log), [dict(zip(ROW_FIELDS, row)) for row in rows])
            await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=rows[-1][0], entry_hash=rows[-1][-1]))
            for table, values in _along_rows(batch).items():
                await conn.execute(pg_insert(table).on_conflict_do_nothing(), values)
        return entries

    def _write_batch_sqlite(self, db: sqlite3.Connection, batch: list[_Pending]) -> list[AuditEntry]:
        """The same transaction with the sqlite3 module, in the writer's own thread: one
        thread hop per batch instead of one per statement."""
        with write_transaction(db):
            head = db.execute("SELECT seq, entry_hash FROM audit_head WHERE id = 1").fetchone()
            if head is None:
                raise StoreUnavailable(f"{describe(self.url)}: the audit_head row is missing")
            rows, entries = self._chain(batch, *head)
            db.executemany(_INSERT_SQL, rows)
            db.execute("UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", (rows[-1][0], rows[-1][-1]))
            for table, values in _along_rows(batch).items():
                columns = list(values[0])
                db.executemany(
                    f"INSERT OR IGNORE INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                    [tuple(v[c] for c in columns) for v in values],
                )
        return entries

    # -- reading ---------------------------------------------------------------------------

    async def head(self) -> Head:
        try:
            async with self._reader_engine.connect() as conn:
                return await self._read_head(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.url, exc) from None

    async def _read_head(self, conn: AsyncConnection) -> Head:
        try:
            row = (await conn.execute(select(audit_head.c.chain_id, audit_head.c.seq, audit_head.c.entry_hash))).first()
        except SQLAlchemyError as exc:
            if "no such table" in str(exc) or "does not exist" in str(exc):
                raise StoreUnavailable(
                    f"{describe(self.url)}: no audit tables here (not a Wingman database, or never started)"
                ) from None
            raise
        if row is None:
            raise StoreUnavailable(f"{describe(self.url)}: the audit_head row is missing")
        return Head(*row)

    async def entry_hash(self, seq: int) -> str | None:
        """The recorded entry_hash of ``seq``; None when the database has no such entry."""
        try:
            async with self._reader_engine.connect() as conn:
                value = (await conn.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == seq))).scalar_one_or_none()
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.url, exc) from None
        return None if value is None else str(value)

    async def tail(self, n: int) -> list[AuditEntry]:
        query = select(*ROW_COLUMNS).order_by(audit_log.c.seq.desc()).limit(max(n, 0))
        try:
            async with self._reader_engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.url, exc) from None
        return [AuditEntry.from_row(tuple(row)) for row in reversed(rows)]

    async def page(self, n: int, *, before: int | None = None, after: int | None = None) -> AuditPage:
        """``n`` entries, oldest first: the newest ones, those just before seq ``before``, or
        those just after seq ``after``; with whether older and newer entries exist."""
        query = select(*ROW_COLUMNS)
        if after is not None:
            query = query.where(audit_log.c.seq > after).order_by(audit_log.c.seq.asc())
        else:
            if before is not None:
                query = query.where(audit_log.c.seq < before)
            query = query.order_by(audit_log.c.seq.desc())
        try:
            async with self._reader_engine.connect() as conn:
                rows = (await conn.execute(query.limit(max(n, 0)))).all()
                entries = [AuditEntry.from_row(tuple(row)) for row in rows]
                if after is None:
                    entries.reverse()
                if entries:
                    older = await _exists(conn, audit_log.c.seq < entries[0].seq)
                    newer = await _exists(conn, audit_log.c.seq > entries[-1].seq)
                else:  # nothing on that side: the way back is the one that may lead somewhere
                    older = after is not None and await _exists(conn, audit_log.c.seq <= after)
                    newer = before is not None and await _exists(conn, audit_log.c.seq >= before)
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.url, exc) from None
        return AuditPage(entries, older, newer)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        """A consistent read view: the head and the rows as of one moment."""
        path = sqlite_path(self.url)
        if path is not None:
            async with _sqlite_snapshot(self, path) as snapshot:
                yield snapshot
            return
        try:
            async with self._reader_engine.connect() as conn:
                async with conn.begin():
                    snapshot = Snapshot(self, conn, await self._read_head(conn))
                    try:
                        yield snapshot
                    finally:
                        await snapshot.close_streams()
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.url, exc) from None

    async def count(self) -> int:
        async with self._reader_engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(audit_log))).scalar_one())

    async def delete_through(self, last_seq: int) -> int:
        """Remove entries up to ``last_seq`` (retention, after a verified export)."""
        async with self._writer_engine.begin() as conn:
            result = await conn.execute(delete(audit_log).where(audit_log.c.seq <= last_seq))
        return int(result.rowcount or 0)


async def _exists(conn: AsyncConnection, condition: Any) -> bool:
    return (await conn.execute(select(audit_log.c.seq).where(condition).limit(1))).first() is not None


class Snapshot:
    """Rows of one read transaction; see :meth:`AuditStore.snapshot`."""

    def __init__(self, store: AuditStore, conn: AsyncConnection, head: Head) -> None:
        self.store = store
        self.head = head
        self._conn = conn
        self._streams: list[AsyncGenerator[list[Row], None]] = []

    def batches(
        self, *, after_seq: int = 0, through_seq: int | None = None, batch: int = STREAM_BATCH
    ) -> AsyncIterator[list[Row]]:
        """Rows in ``seq`` order, a batch at a time, in constant memory.

        A reader may stop early (verification does at the first broken entry): the stream is
        then closed with the snapshot, while its connection is still open, rather than by
        the garbage collector after it was closed.
        """
        stream = self._stream(after_seq, through_seq, batch)
        self._streams.append(stream)
        return stream

    async def close_streams(self) -> None:
        """Close the streams still open (their read-ahead awaited), before the view closes."""
        streams, self._streams = self._streams, []
        for stream in streams:
            await stream.aclose()

    async def _stream(self, after_seq: int, through_seq: int | None, batch: int) -> AsyncGenerator[list[Row], None]:
        query = select(*ROW_COLUMNS).where(audit_log.c.seq > after_seq)
        if through_seq is not None:
            query = query.where(audit_log.c.seq <= through_seq)
        query = query.order_by(audit_log.c.seq).execution_options(yield_per=batch)
        result = await self._conn.stream(query)
        try:
            async for partition in result.partitions(batch):
                yield [tuple(row) for row in partition]
        finally:
            await result.close()

    async def rows_before(self, cutoff_ts: str) -> int | None:
        """The newest seq of the unbroken prefix of entries older than ``cutoff_ts``."""
        first_newer = (
            await self._conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.ts >= cutoff_ts))
        ).scalar_one()
        query = select(func.max(audit_log.c.seq)).where(audit_log.c.ts < cutoff_ts)
        if first_newer is not None:
            query = query.where(audit_log.c.seq < first_newer)
        value = (await self._conn.execute(query)).scalar_one()
        return None if value is None else int(value)


_INSERT_SQL = f"INSERT INTO audit_log ({', '.join(ROW_FIELDS)}) VALUES ({', '.join('?' for _ in ROW_FIELDS)})"
_ROW_SQL = f"SELECT {', '.join(ROW_FIELDS)} FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq"
_NO_END = 2**63 - 1


class _SqliteSnapshot(Snapshot):
    """The same view read with the sqlite3 module directly, batches fetched in a thread.

    Verification streams every row, and SQLAlchemy's row objects cost more than hashing
    them; plain sqlite3 tuples in one read transaction keep it within reach of the floor.
    """

    def __init__(self, store: AuditStore, connection: sqlite3.Connection, head: Head) -> None:
        self.store = store
        self.head = head
        self._db = connection
        self._streams = []

    async def _stream(self, after_seq: int, through_seq: int | None, batch: int) -> AsyncGenerator[list[Row], None]:
        end = _NO_END if through_seq is None else through_seq
        last = after_seq
        while True:
            cursor = self._db.execute(_ROW_SQL, (last, end))
            # The next batch is read in a thread while the caller works on this one.
            pending = asyncio.ensure_future(asyncio.to_thread(cursor.fetchmany, batch))
            try:
                while rows := await pending:
                    pending = asyncio.ensure_future(asyncio.to_thread(cursor.fetchmany, batch))
                    last = rows[-1][0]
                    yield rows
                return
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc) or self._db.text_factory is lenient_text:
                    raise unavailable(self.store.url, exc) from None
                # Text that is not UTF-8 (a byte flipped on disk): read on from here with
                # the lenient decoder, so verification reports that entry as broken.
                self._db.text_factory = lenient_text
            except sqlite3.Error as exc:
                raise unavailable(self.store.url, exc) from None
            finally:
                if not pending.done():
                    with contextlib.suppress(sqlite3.Error):
                        await pending
                cursor.close()

    async def rows_before(self, cutoff_ts: str) -> int | None:
        (first_newer,) = self._db.execute("SELECT min(seq) FROM audit_log WHERE ts >= ?", (cutoff_ts,)).fetchone()
        (value,) = self._db.execute(
            "SELECT max(seq) FROM audit_log WHERE ts < ? AND seq < ?",
            (cutoff_ts, _NO_END if first_newer is None else first_newer),
        ).fetchone()
        return None if value is None else int(value)


@contextlib.asynccontextmanager
async def _sqlite_snapshot(store: AuditStore, path: Path) -> AsyncIterator[Snapshot]:
    def open_view() -> tuple[sqlite3.Connection, Head]:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        )  # fmt: skip
        try:
            connection.execute("BEGIN")  # one snapshot for every read below
            row = connection.execute("SELECT chain_id, seq, entry_hash FROM audit_head").fetchone()
        except sqlite3.Error as exc:
            connection.close()
            if "no such table" in str(exc):
                raise StoreUnavailable(
                    f"{describe(store.url)}: no audit tables here (not a Wingman database, or never started)"
                ) from None
            raise unavailable(store.url, exc) from None
        if row is None:
            connection.close()
            raise StoreUnavailable(f"{describe(store.url)}: the audit_head row is missing")
        return connection, Head(*row)

    connection, head = await asyncio.to_thread(open_view)
    snapshot = _SqliteSnapshot(store, connection, head)
    try:
        yield snapshot
    finally:
        try:
            await snapshot.close_streams()
        finally:
            connection.close()
