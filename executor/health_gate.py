"""The health gate: whether a container a deploy started has proved itself, polled through the driver.

Healthy within the timeout; without a health check, still running after a window. An
unhealthy verdict, an exit or any restart fails at once. The deployer (``executor.deploy``)
passes every new container through it before the old one is removed, and start-up
recovery (``executor.recovery``) asks it about a new container a crash left behind.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from executor.docker_driver import DockerDriver, health_log_lines, health_of
from executor.progress import Progress, emit, no_progress


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """How a new container did at the gate: passed or not, why, and what its health check said."""

    ok: bool
    reason: str  # why it failed, or how it passed ("healthy", "running for 10 s")
    health_log: list[str]
    elapsed: float


def has_healthcheck(info: dict[str, Any]) -> bool:
    """Whether the container (its inspect) has a health check of its own or from its image."""
    test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


async def health_gate(
    driver: DockerDriver,
    container_id: str,
    *,
    timeout: float,
    window: float,
    poll_interval: float,
    progress: Progress = no_progress,
    running_for: float = 0.0,
) -> GateVerdict:
    """Healthy within ``timeout``; without a health check, still running after ``window``.

    Fails at once on unhealthy, an exit, or any restart (a restart loop shows as a rising
    RestartCount). ``running_for`` counts time the container already ran (recovery).
    Progress "waiting for health" is emitted about once a second.
    """
    began = time.monotonic()
    emitted = -1
    while True:
        info = await driver.run(lambda api: api.inspect_container(container_id))
        elapsed = time.monotonic() - began
        state = info.get("State") or {}
        has_check = has_healthcheck(info)
        health = health_of(info)
        restarts = int(info.get("RestartCount") or 0)
        if restarts > 0 or state.get("Restarting"):
            return GateVerdict(False, f"it keeps restarting ({restarts} restarts)", health_log_lines(info), elapsed)
        if not state.get("Running"):
            oom = ", out of memory" if state.get("OOMKilled") else ""
            return GateVerdict(False, f"it exited with code {state.get('ExitCode')}{oom}", health_log_lines(info), elapsed)
        if has_check:
            if health == "healthy":
                return GateVerdict(True, "healthy", health_log_lines(info), elapsed)
            if health == "unhealthy":
                return GateVerdict(False, "its health check failed", health_log_lines(info), elapsed)
            if elapsed >= timeout:
                return GateVerdict(
                    False, f"it was not healthy within {timeout:g} s (still {health})", health_log_lines(info), elapsed
                )
        elif running_for + elapsed >= window:
            return GateVerdict(True, f"running for {window:g} s", [], elapsed)
        if int(elapsed) > emitted:
            emitted = int(elapsed)
            await emit(
                progress,
                "waiting for health",
                {"elapsed": emitted, "health": health or "no health check", "timeout": timeout if has_check else window},
            )
        await asyncio.sleep(poll_interval)
