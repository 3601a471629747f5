"""A deploy run in a child process, to be SIGKILLed at a chosen stage by the recovery tests.

    python -m tests.docker.deploy_child --db URL --name NAME --image REF --pause-at STAGE

Prints ``STAGE <stage>`` for each progress report; on reaching ``--pause-at`` it prints
``PAUSED <stage>`` and waits for ever (the test kills it there, so the kill lands at that
exact point of the deploy and not a little before or after). With ``--pause-at none`` it
runs to the end and prints ``RESULT <outcome>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from executor.deploy import Deployer
from executor.docker_driver import DockerDriver
from executor.errors import ActionError
from tests.stores import open_deployment_store


async def main(args: argparse.Namespace) -> int:
    store = await open_deployment_store(args.db)
    driver = DockerDriver(os.environ.get("DOCKER_HOST") or None)
    deployer = Deployer(driver, store, health_timeout=args.timeout, running_window=2, poll_interval=0.1)

    async def progress(stage: str, details: dict[str, Any]) -> None:
        print(f"STAGE {stage}", flush=True)
        if stage == args.pause_at:
            print(f"PAUSED {stage}", flush=True)
            await asyncio.Event().wait()

    try:
        result = await deployer.deploy(args.name, args.image, requested_by="tg:1001", progress=progress)
        print(f"RESULT {result.summary}", flush=True)
    except ActionError as exc:
        print(f"RESULT {type(exc).__name__}: {exc}", flush=True)
    finally:
        await driver.close()
        await store.engine.dispose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--pause-at", default="none")
    parser.add_argument("--timeout", type=float, default=20)
    sys.exit(asyncio.run(main(parser.parse_args())))
