"""Progress reporting shared by the drivers: the callback type, a no-op, and a safe emit.

Long actions (a deploy, a VM start) report stages as they go; the executor routes them into
its notification outbox so the approval message shows them live. Both the Docker and the
Proxmox driver use this module, neither imports the other for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# The progress callback every long action takes: a stage name and its details (seconds
# elapsed, health, image…). The executor routes it into its notification outbox.
Progress = Callable[[str, dict[str, Any]], Awaitable[None]]


async def no_progress(stage: str, details: dict[str, Any]) -> None:
    """The progress callback used when the caller passes none."""


async def emit(progress: Progress, stage: str, details: dict[str, Any]) -> None:
    """Report progress; a failing callback is logged, never allowed to break the action."""
    try:
        await progress(stage, details)
    except Exception:  # the outbox is informational here; the action goes on
        log.exception("progress callback failed at stage %r", stage)


def format_duration(seconds: float) -> str:
    """A duration for people, two units at most: ``3d 4h``, ``2h 5m``, ``1m 30s``, ``12s``."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
