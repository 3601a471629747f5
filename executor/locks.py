"""One action at a time per target: a container name, a VM's number.

A second action on a target that is busy is refused (:class:`executor.errors.Busy`, naming
who holds it), not queued: the person asking learns at once and can try again. Both drivers
keep one :class:`TargetLocks` (``DockerDriver.locks``, ``ProxmoxDriver.locks``); the
deployer and crash recovery take the Docker driver's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from executor.errors import Busy

K = TypeVar("K", bound=Hashable)


class TargetLocks(Generic[K]):
    """Who holds each target now; ``hold`` refuses (raises Busy) when another does.

    The event loop is single-threaded and ``hold`` never awaits between looking and taking,
    so two coroutines cannot both take the same target.
    """

    def __init__(self) -> None:
        self._holders: dict[K, str] = {}

    def holder(self, target: K) -> str | None:
        return self._holders.get(target)

    @contextlib.contextmanager
    def hold(self, target: K, holder: str, *, label: str | None = None) -> Iterator[None]:
        """Hold ``target`` for ``holder`` ("tg:1001 (deploy)"); ``label`` names it in the refusal."""
        current = self._holders.get(target)
        if current is not None:
            shown = label if label is not None else str(target)
            raise Busy(f"{shown} is busy: {current} is acting on it; try again when that has finished", holder=current)
        self._holders[target] = holder
        try:
            yield
        finally:
            del self._holders[target]
