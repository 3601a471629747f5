"""Migrations: Alembic applies them; a database already at the head does not need Alembic loaded.

``upgrade_schema`` compares the head revisions each package's migrations declare with the
applied ones in the version table; only when they differ does it import Alembic and upgrade.
What is declared is held here to what Alembic itself reads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from audit.database import applied_revisions
from audit.migrations import MIGRATIONS as AUDIT_MIGRATIONS
from executor.migrations import MIGRATIONS as EXECUTOR_MIGRATIONS

REPO = Path(__file__).resolve().parents[2]

START_DAEMON_STORES = """
import asyncio, sys
from audit import AuditStore
from tests.stores import open_deployment_store

async def main(url):
    store = await AuditStore.open(url)          # the audit tables
    deployments = await open_deployment_store(url)  # the executor's tables
    await store.append(actor="system", action="executor.start", decision="done")
    await deployments.engine.dispose()
    await store.close()

asyncio.run(main(sys.argv[1]))
print("alembic" in sys.modules)
"""


def test_the_declared_heads_are_alembics() -> None:
    for migrations in (AUDIT_MIGRATIONS, EXECUTOR_MIGRATIONS):
        config = Config()
        config.set_main_option("script_location", str(migrations.location))
        assert migrations.heads == set(ScriptDirectory.from_config(config).get_heads()), (
            f"{migrations.location}/__init__.py: declare the heads Alembic finds"
        )
        # env.py configures Alembic with the version table upgrade_schema reads.
        assert "version_table=MIGRATIONS.version_table" in (migrations.location / "env.py").read_text()


def test_the_applied_revisions_are_the_ones_alembic_reads(tmp_path: Path) -> None:
    start(f"sqlite+aiosqlite:///{tmp_path / 'wingman.db'}")  # migrated by the daemon's stores
    engine = create_engine(f"sqlite:///{tmp_path / 'wingman.db'}")
    with engine.connect() as connection:
        for migrations in (AUDIT_MIGRATIONS, EXECUTOR_MIGRATIONS):
            context = MigrationContext.configure(connection, opts={"version_table": migrations.version_table})
            assert applied_revisions(connection, migrations.version_table) == set(context.get_current_heads())
            assert set(context.get_current_heads()) == migrations.heads
        assert applied_revisions(connection, "no_such_alembic_version") is None
    engine.dispose()


def start(url: str) -> bool:
    """Open the daemon's stores in a fresh interpreter; whether it imported Alembic."""
    done = subprocess.run([sys.executable, "-c", START_DAEMON_STORES, url], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1] == "True"


def test_a_new_database_is_migrated_and_a_migrated_one_is_not_touched(db_url: str) -> None:
    assert start(db_url) is True  # a new database: Alembic creates the tables
    assert start(db_url) is False  # at the head already: Alembic is not even imported
