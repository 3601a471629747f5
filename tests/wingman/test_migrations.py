"""Migrations: Alembic applies them; a database already at the head does not need Alembic loaded.

``upgrade_schema`` reads the head revisions from the migration files and the applied ones
from the version table; only when they differ does it import Alembic and upgrade.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from audit.store import MIGRATIONS as AUDIT_MIGRATIONS
from audit.database import migration_heads
from executor.server import MIGRATIONS as EXECUTOR_MIGRATIONS

REPO = Path(__file__).resolve().parents[2]

START_DAEMON_STORES = """
import asyncio, sys
from audit import AuditStore
from executor.deployments import DeploymentStore

async def main(url):
    store = await AuditStore.open(url)          # the audit tables
    deployments = await DeploymentStore.open(url)  # the executor's tables
    await store.append(actor="system", action="executor.start", decision="done")
    await deployments.close()
    await store.close()

asyncio.run(main(sys.argv[1]))
print("alembic" in sys.modules)
"""


def test_heads_read_from_the_files_are_alembics() -> None:
    for location in (AUDIT_MIGRATIONS, EXECUTOR_MIGRATIONS):
        config = Config()
        config.set_main_option("script_location", str(location))
        assert migration_heads(location) == set(ScriptDirectory.from_config(config).get_heads())
        # upgrade_schema finds the version table by the package's name, as env.py names it.
        assert f'"{location.parent.name}_alembic_version"' in (location / "env.py").read_text()


def start(url: str) -> bool:
    """Open the daemon's stores in a fresh interpreter; whether it imported Alembic."""
    done = subprocess.run([sys.executable, "-c", START_DAEMON_STORES, url], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1] == "True"


def test_a_new_database_is_migrated_and_a_migrated_one_is_not_touched(db_url: str) -> None:
    assert start(db_url) is True  # a new database: Alembic creates the tables
    assert start(db_url) is False  # at the head already: Alembic is not even imported
