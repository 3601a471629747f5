"""One action at a time per target: a container name, a VM's number.

A second action on a target that is busy is refused (:class:`executor.errors.Busy`, naming
who holds it), not queued: the person asking learns at once and can try again. Both drivers
keep one :class:`TargetLocks` (``DockerDriver.locks``, ``ProxmoxDriver.locks``); the
deployer and crash recovery take the Docker driver's.

The locks also remember when each target was last held (wall-clock time, the time the
Docker engine stamps its events with): alerts ask :meth:`TargetLocks.held_at` whether an
event happened while Wingman itself was acting on the container (a deploy, a rollback, a
restart), and such events raise no alert.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from executor.errors import Busy

K = TypeVar("K", bound=Hashable)


class TargetLocks(Generic[K]):
    """Who holds each target now; ``hold`` refuses (raises Busy) when another does.

    The event loop is single-threaded and ``hold`` never awaits between looking and taking,
    so two coroutines cannot both take the same target.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._holders: dict[K, str] = {}
        self._clock = clock
        self._since: dict[K, float] = {}  # when the current holder took it
        self._last: dict[K, tuple[float, float]] = {}  # the last hold that ended: (taken, released)

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
        self._since[target] = self._clock()
        try:
            yield
        finally:
            del self._holders[target]
            self._last[target] = (self._since.pop(target), self._clock())

    def held_at(self, target: K, when: float, *, slack: float = 1.0) -> bool:
        """Whether ``target`` was held at time ``when`` (give or take ``slack`` seconds)."""
        if target in self._holders and self._since[target] - slack <= when:
            return True
        last = self._last.get(target)
        return last is not None and last[0] - slack <= when <= last[1] + slack
