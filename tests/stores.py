"""Stores opened the way the executor opens its database, for tests and benchmarks that run without the daemon.

The executor builds one writer engine at start-up, brings the schema up to date and hands
the engine to each store (``executor.server``); this does the same for one store. Close
it with ``await store.engine.dispose()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from audit.database import make_engine, normalize_url, sqlite_path, upgrade_schema
from executor.deployments import DeploymentStore
from executor.migrations import MIGRATIONS


async def open_deployment_store(url: str, *, clock: Callable[[], float] = time.time) -> DeploymentStore:
    """A deployment store on its own writer engine, the executor's schema brought up to date."""
    parsed = normalize_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(parsed, writer=True)
    try:
        await upgrade_schema(engine, MIGRATIONS)
    except BaseException:
        await engine.dispose()
        raise
    return DeploymentStore(engine, clock=clock)
