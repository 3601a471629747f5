"""The project's database plumbing: URLs, engines and schema migrations.

Both processes' stores sit on it (the audit store here, the executor's deployments, lease
and request tables), as do ``wingman check`` and ``wingman backup``. SQLite (aiosqlite) and
PostgreSQL (asyncpg) through SQLAlchemy's asyncio API. It knows nothing of the audit chain,
the executor or the bot: the only thing of ours it imports is the error it raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from audit.errors import StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> URL:
    """The URL with its async driver; anything but SQLite or PostgreSQL is refused."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreUnavailable(
            f"database URL {url!r} cannot be parsed: use sqlite+aiosqlite:///path/to/wingman.db "
            "or postgresql+asyncpg://user:password@host/dbname"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise StoreUnavailable(
        f"database URL scheme {parsed.drivername!r} is not supported: use sqlite+aiosqlite:///path "
        "or postgresql+asyncpg://user:password@host/dbname"
    )


def describe(url: URL) -> str:
    """The URL as it may be shown to a person (no password)."""
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)



def lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")



def make_engine(url: URL, *, writer: bool) -> AsyncEngine:
    """An engine for ``url``; a writer's transactions take SQLite's write lock at BEGIN."""
    if url.get_backend_name() == "postgresql":
        # Readers see one snapshot for a whole verification, whatever is appended meanwhile.
        isolation = "READ COMMITTED" if writer else "REPEATABLE READ"
        return create_async_engine(url, isolation_level=isolation, pool_size=2, max_overflow=4)

    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's begin event below open transactions, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        if not writer:
            # Text that is not UTF-8 (a byte flipped on disk) must reach verification as a
            # broken entry, not stop the read with a decoding error.
            record.driver_connection.text_factory = lenient_text
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if writer:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # The writer takes the lock before it reads the head; a reader's BEGIN keeps one
        # snapshot for as long as it streams.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


@dataclass(frozen=True, slots=True)
class Migrations:
    """One package's Alembic migrations: where they are, the table Alembic records the
    applied revisions in (as their env.py configures it), and the head revisions they end at.

    The heads are declared beside the migrations, not asked of Alembic's ``ScriptDirectory``:
    importing any part of Alembic (it brings Mako) costs a daemon about 9 MB that stays for
    as long as it runs, even once the modules are dropped, and a daemon whose database is
    already migrated has no other use for it. tests/wingman/test_migrations.py holds the
    declaration to ``ScriptDirectory.get_heads()`` and to env.py's version table, so a new
    migration without its heads updated fails the suite rather than a start.
    """

    location: Path
    version_table: str
    heads: frozenset[str]


async def upgrade_schema(engine: AsyncEngine, migrations: Migrations) -> None:
    """Bring the database to ``migrations``' heads with Alembic (its env.py takes the connection).

    A database already at the heads is left alone without importing Alembic at all.
    """
    async with engine.connect() as conn:
        applied = await conn.run_sync(applied_revisions, migrations.version_table)
    if applied == migrations.heads:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations.location))

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


def applied_revisions(connection: Connection, version_table: str) -> set[str] | None:
    """The revisions recorded in ``version_table``; None when there is no such table."""
    if not inspect(connection).has_table(version_table):
        return None
    return {str(row[0]) for row in connection.execute(text(f"SELECT version_num FROM {version_table}"))}


def unavailable(url: URL, exc: BaseException) -> StoreUnavailable:
    reason = getattr(exc, "orig", None) or exc
    text = " ".join(str(reason).split()) or type(reason).__name__
    return StoreUnavailable(f"{describe(url)}: {text}")
