"""Following the Docker engine's event stream, in a thread of its own, across engine restarts.

The docker SDK's ``events()`` is a blocking generator: it runs in a dedicated thread (never
on the event loop, never in the driver's pool, which it would hold forever). When the
stream ends or fails (the engine restarted, the socket vanished), the thread connects
again after a back-off (0.5 s doubling to 10 s) and says so: every (re)connection is
announced *after* the new stream is subscribed, so whoever compares the engine's state at
that moment misses nothing between the comparison and the first event.

What the thread hands over, through ``deliver`` (called in the thread; it must be
thread-safe, e.g. ``loop.call_soon_threadsafe``): ``Signal("connected")``,
``Signal("event", event)`` with the engine's decoded event, ``Signal("lost", reason)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker

log = logging.getLogger("wingman.executor")

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# What alerts need: deaths, OOM kills, health changes, and starts (a container back up).
CONTAINER_EVENTS = {"type": ["container"], "event": ["die", "oom", "health_status", "start"]}


@dataclass(frozen=True, slots=True)
class Signal:
    kind: str  # connected | event | lost
    event: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


class EngineEvents:
    """One thread reading ``base_url``'s container events until :meth:`stop`."""

    def __init__(self, base_url: str | None, deliver: Callable[[Signal], None], *, filters: dict[str, Any] | None = None) -> None:
        self.base_url = base_url or DEFAULT_SOCKET
        self._deliver = deliver
        self._filters = filters or CONTAINER_EVENTS
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._client: docker.DockerClient | None = None
        self._subscribed = False
        self._thread = threading.Thread(target=self._run, name="wingman-engine-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the stream (closing it wakes the blocked read) and wait for the thread."""
        self._stopping.set()
        with self._lock:
            stream, client = self._stream, self._client
        for closing in (stream, client):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # noqa: BLE001 - already closed or broken: the thread ends anyway
                    pass
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._subscribed = False
            try:
                self._follow()
                reason = "the engine ended the event stream"
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            if self._stopping.is_set():
                return
            failures = 1 if self._subscribed else failures + 1  # a stream that worked starts the back-off anew
            self._deliver(Signal("lost", reason=reason))
            self._stopping.wait(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(failures - 1, 8)))

    def _follow(self) -> None:
        # No read timeout: the stream is quiet for as long as nothing happens; an engine
        # that restarts closes the socket, which ends the read.
        client = docker.DockerClient(base_url=self.base_url, version="auto", timeout=None)
        try:
            stream = client.api.events(decode=True, filters=self._filters)
            with self._lock:
                self._stream, self._client = stream, client
            if self._stopping.is_set():
                return
            self._subscribed = True
            self._deliver(Signal("connected"))
            for event in stream:
                if self._stopping.is_set():
                    return
                if isinstance(event, dict):
                    self._deliver(Signal("event", event=event))
        finally:
            with self._lock:
                self._stream, self._client = None, None
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
