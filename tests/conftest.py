"""Shared fixtures: real SQLite files, a real PostgreSQL server, audit keys.

PostgreSQL comes from ``WINGMAN_TEST_PG_URL`` (a database the tests may use to create and
drop their own databases, e.g. ``postgresql+asyncpg://wingman:wingman@127.0.0.1/wingman_test``;
``.ci/run`` sets it up). Without it the PostgreSQL cases skip, saying so; with ``CI=true``
a missing service fails the run instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from audit import AuditStore, SigningKey, generate_key_pair, load_signing_key

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("WINGMAN_TEST_PG_URL", "")


def service_missing(reason: str) -> None:
    """Skip locally, fail in CI: a service the suite needs is not there."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped on exit."""
    if not PG_URL:
        service_missing("WINGMAN_TEST_PG_URL is not set: point it at a PostgreSQL database (see .ci/run)")
    import asyncpg

    try:
        admin = await asyncpg.connect(_plain_pg_url(PG_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at WINGMAN_TEST_PG_URL is unreachable: {exc}")
    name = f"wingman_t_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'wingman.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on each backend in turn."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'wingman.db'}"
    else:
        async with fresh_pg_database() as url:
            yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[AuditStore]:
    opened = await AuditStore.open(db_url)
    yield opened
    await opened.close()


@pytest.fixture
def export_path(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def audit_key(tmp_path: Path) -> SigningKey:
    key_path, _ = generate_key_pair(tmp_path / "keys", "audit-test")
    return load_signing_key(key_path)


@pytest.fixture
def trusted(audit_key: SigningKey) -> dict[str, object]:
    return {audit_key.kid: audit_key.public}


# Shared fixtures of the whole suite, defined beside what they serve (imported last: those
# modules use service_missing above).
from tests.docker.engine import engine, images, resources  # noqa: E402,F401
from tests.docker.registry import registry  # noqa: E402,F401
from tests.harness import bot_key, harness, make_harness, socket_dir  # noqa: E402,F401
