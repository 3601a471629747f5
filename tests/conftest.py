"""Shared fixtures: real SQLite files, a real PostgreSQL server, audit keys.

PostgreSQL comes from ``WINGMAN_TEST_PG_URL`` (a database the tests may use to create and
drop their own databases, e.g. ``postgresql+asyncpg://wingman:wingman@127.0.0.1/wingman_test``;
``.ci/run`` sets it up). Without it the PostgreSQL cases skip, saying so; with ``CI=true``
a missing service fails the run instead.

The fast inner loop is ``pytest -m "not slow"``: every test that needs the Docker engine
(anything under tests/docker/, or using the engine, images, resources, registry or second-engine fixtures)
or a PostgreSQL database (``pg_url``, or ``db_url``'s PostgreSQL case) is marked ``slow``
here, without a mark of its own, and so is a new one; so is every hypothesis property
test (hundreds of examples each), every test using ``sshd``, and so are the files and tests
in ``SLOW`` (they start daemons, the wingman command or fresh interpreters, or feed big inputs).
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


DOCKER_FIXTURES = frozenset({"engine", "images", "resources", "registry", "secure_registry", "second_engine", "second_resources", "own_engine"})
TESTS = Path(__file__).parent
DOCKER_TESTS = TESTS / "docker"


SLOW = {
    "audit/test_cli.py": "runs the wingman command in a child process per test",
    "audit/test_witness.py": "runs the wingman command in a child process per test",
    "bot/test_lazy_types.py": "builds every aiogram type in fresh interpreters",
    "bot/test_lifecycle.py": "starts the bot as a process",
    "bot/test_pictures.py": "draws with matplotlib, in child interpreters too",
    "deploy/test_compose.py": "runs docker compose",
    "deploy/test_forwarding.py": "starts sshd and ssh",
    "executor/test_big_verify.py": "verifies a big chain",
    "executor/test_codes.py::test_wingman_approvers_enroll": "runs the wingman command",
    "executor/test_connections.py": "clients in child processes, connections held open for seconds",
    "executor/test_lease.py": "starts executors as processes",
    "executor/test_startup.py": "starts executors as processes",
    "ops/test_backup.py": "runs the wingman command in child processes",
    "wingman/test_migrations.py": "opens the daemon's stores in fresh interpreters",
}


def _listed_slow(item: pytest.Item) -> bool:
    file = item.path.relative_to(TESTS).as_posix()
    return file in SLOW or f"{file}::{getattr(item, 'originalname', item.name)}" in SLOW


def _needs_postgres(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    callspec = getattr(item, "callspec", None)
    return "pg_url" in fixtures or (callspec is not None and callspec.params.get("backend") == "postgresql")


PROCESS_FIXTURES = frozenset({"sshd"})  # they start daemons


def _starts_processes(item: pytest.Item) -> bool:
    return not PROCESS_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def _needs_docker(item: pytest.Item) -> bool:
    return DOCKER_TESTS in item.path.parents or not DOCKER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a service ``slow`` (and ``postgres``): see the docstring."""
    for item in items:
        if _needs_postgres(item):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)
        elif _needs_docker(item) or _starts_processes(item) or _listed_slow(item) or hasattr(getattr(item, "obj", None), "hypothesis"):
            item.add_marker(pytest.mark.slow)


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
from tests.docker.engines import own_engine, second_engine, second_resources  # noqa: E402,F401
from tests.docker.registry import registry, secure_registry  # noqa: E402,F401
from tests.harness import bot_key, harness, make_harness, make_host, socket_dir  # noqa: E402,F401
from tests.ssh import sshd  # noqa: E402,F401
