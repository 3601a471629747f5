"""Who may hold a connection to the executor's socket, how many, and how refusals are recorded.

The executor accepts connections itself (``SocketGate``) rather than through asyncio's
server, so that every connection's peer uid (``SO_PEERCRED``) is known before a transport
exists, and no local user can wear the daemon down:

- A uid that is not allowed is closed unread. So is a connection beyond
  ``MAX_CONNECTIONS_PER_UID`` open at once from one allowed uid.
- Each allowed uid's quota is reserved for it: at start-up the open-files limit is raised
  to cover every allowed uid's full quota at once (or the executor stops, saying what to
  raise), so one allowed client (however many idle connections it opens) cannot starve
  another, such as the bot.
- Timeouts (``executor.protocol``): a complete request header within ``IDLE_TIMEOUT`` of
  opening or of the previous reply, the body within ``BODY_TIMEOUT`` of the header (see
  ``executor.server``), and a reply the client stops reading is cut after
  ``BODY_TIMEOUT``.
- ``accept()`` failing (out of files, say) is logged once when it starts and once when it
  ends, with the count in between, not once per attempt.
- Refusals are audited through ``RefusalRecord``: the first of a kind from a peer at once,
  the rest within ``REFUSAL_WINDOW`` as one entry with a count, so a storm of refused
  connections adds a bounded number of entries and the counts add up to every refusal.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audit import AuditStore
from executor.errors import StartupError
from executor.protocol import BODY_TIMEOUT, MAX_CONNECTIONS_PER_UID

log = logging.getLogger("wingman.executor")

REFUSAL_WINDOW = 60.0
ACCEPT_BATCH = 512  # connections accepted in one go (as many as the backlog holds)
ACCEPT_RETRY = 0.5  # out of files: how long to leave the backlog alone before trying again
FILES_HEADROOM = 256  # database, Docker, Proxmox, exports, logs: the daemon's own files
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
NOT_ALLOWED = "uid not allowed"


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def reserve_open_files(allowed: frozenset[int], per_uid: int = MAX_CONNECTIONS_PER_UID) -> int:
    """Raise the soft open-files limit so every allowed uid can hold its whole quota at once;
    returns the limit. Stops start-up when the hard limit is too low for that."""
    needed = len(allowed) * per_uid + FILES_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise StartupError(
                f"WINGMAN_ALLOWED_UIDS: {len(allowed)} uids (with the executor's own) may each hold "
                f"{per_uid} connections, which needs {needed} open files, but the hard limit is {hard}; "
                "raise it (LimitNOFILE= in the systemd unit, ulimit -Hn) or allow fewer uids"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return int(soft)


# -- refusals in the audit chain ------------------------------------------------------------


@dataclass
class _Window:
    """Refusals of one kind from one peer since the last entry written for them."""

    timer: asyncio.TimerHandle
    pending: int = 0


@dataclass
class RefusalRecord:
    """Audits refused connections without letting a storm of them flood the chain.

    The first refusal of a kind (same uid, same reason) is written at once; the ones that
    follow within ``window`` seconds become one entry with their count when the window
    ends (a new window then opens while they keep coming). ``close`` writes what is still
    pending. Every entry's ``params.count`` says how many refusals it stands for."""

    audit: AuditStore
    window: float = REFUSAL_WINDOW
    _windows: dict[tuple[int, str], _Window] = field(default_factory=dict)
    _writes: set[asyncio.Task[Any]] = field(default_factory=set)

    def refused(self, uid: int, reason: str) -> None:
        key = (uid, reason)
        open_window = self._windows.get(key)
        if open_window is not None:
            open_window.pending += 1
            return
        log.warning("refused a connection from uid %s: %s", uid, reason)
        self._write(uid, reason, 1)
        self._open(key)

    def _open(self, key: tuple[int, str]) -> None:
        timer = asyncio.get_running_loop().call_later(self.window, self._window_ends, key)
        self._windows[key] = _Window(timer)

    def _window_ends(self, key: tuple[int, str]) -> None:
        ended = self._windows.pop(key)
        if ended.pending:
            uid, reason = key
            log.warning("refused %d more connections from uid %s within %g s: %s", ended.pending, uid, self.window, reason)
            self._write(uid, reason, ended.pending)
            self._open(key)  # a storm that goes on is summed up once a window

    def _write(self, uid: int, reason: str, count: int) -> None:
        outcome = reason if count == 1 else f"{reason} ({count} connections within {self.window:g} s)"
        task = asyncio.ensure_future(
            self.audit.append(
                actor=f"uid:{uid}", action="connect", decision="refused", outcome=outcome, params={"count": count}
            )
        )
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not audit a refused connection: %s", task.exception())

    async def close(self) -> None:
        """Write every pending count, and wait until all entries are written."""
        for (uid, reason), window in list(self._windows.items()):
            window.timer.cancel()
            if window.pending:
                self._write(uid, reason, window.pending)
        self._windows.clear()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


# -- connections ------------------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: passes everything through, tells the gate
    when the connection ends, and cuts a client that stops reading its reply."""

    def __init__(self, inner: asyncio.Protocol, ended: Callable[[], None]) -> None:
        self._inner = inner
        self._ended = ended
        self._transport: asyncio.Transport | None = None
        self._stalled: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        # The client is not reading what we send: give it BODY_TIMEOUT, then let go.
        if self._stalled is None and self._transport is not None:
            self._stalled = asyncio.get_running_loop().call_later(BODY_TIMEOUT, self._transport.abort)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
        try:
            self._inner.connection_lost(exc)
        finally:
            self._ended()


class SocketGate:
    """Accepts connections on the listening socket and lets in only those it should.

    As asyncio's own server does: each time the socket is readable, everything waiting in
    the backlog is accepted at once (up to ``ACCEPT_BATCH``), so a connection that waits
    there is not overtaken by requests on connections already open."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: Callable[[], asyncio.Protocol],
        allowed: frozenset[int],
        refusals: RefusalRecord,
        *,
        per_uid: int = MAX_CONNECTIONS_PER_UID,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._allowed = allowed
        self._refusals = refusals
        self._per_uid = per_uid
        self.open_connections = Counter[int]()  # by uid
        self.failed_accepts = 0  # in the current burst of accept() failures
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._handing_over: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._accept_waiting)

    async def close(self) -> None:
        """Stop accepting (connections already in are left to their HTTP server)."""
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            if self._retry is not None:
                self._retry.cancel()
            if self._handing_over:
                await asyncio.gather(*self._handing_over, return_exceptions=True)
            self._loop = None
        self._sock.close()

    def _accept_waiting(self) -> None:
        assert self._loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the backlog is empty
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that one client gave up on its own
                self._accept_failed(exc)
                # Leave the backlog alone for a moment rather than spin on it.
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(ACCEPT_RETRY, self._resume)
                return
            if self.failed_accepts:
                log.warning("accepting connections again, after %d failed attempts", self.failed_accepts)
                self.failed_accepts = 0
            self._admit(conn)

    def _resume(self) -> None:
        self._retry = None
        if self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept_waiting)

    def _accept_failed(self, exc: OSError) -> None:
        if self.failed_accepts == 0:
            hint = " (out of open files or memory)" if exc.errno in OUT_OF_RESOURCES else ""
            log.error("cannot accept connections: %s%s; retrying quietly until it works again", exc.strerror or exc, hint)
        self.failed_accepts += 1

    def _admit(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
        except OSError:
            conn.close()  # gone before we could ask who it was
            return
        if uid not in self._allowed:
            conn.close()
            self._refusals.refused(uid, NOT_ALLOWED)
            return
        if self.open_connections[uid] >= self._per_uid:
            conn.close()
            self._refusals.refused(uid, f"more than {self._per_uid} connections open at once")
            return
        self.open_connections[uid] += 1
        task = asyncio.ensure_future(self._hand_over(conn, uid))
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)

    async def _hand_over(self, conn: socket.socket, uid: int) -> None:
        """Give an admitted connection its transport and aiohttp's protocol behind ours."""
        released = False

        def ended() -> None:
            nonlocal released
            if not released:  # once, whichever of the two paths below gets here first
                released = True
                self.open_connections[uid] -= 1
                if self.open_connections[uid] <= 0:
                    del self.open_connections[uid]

        conn.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: Connection(self._protocol(), ended), sock=conn)
        except OSError as exc:
            log.warning("could not take a connection from uid %s: %s", uid, exc.strerror or exc)
            conn.close()
            ended()
