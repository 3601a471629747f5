"""What a local user can do to the executor's socket by opening connections: nothing lasting.

A storm of refused connections adds a bounded number of audit entries whose counts add up;
idle and slow connections from one allowed uid are closed on time and never take the bot's
share; a client that drops mid-body is one log line; accept() failing is logged once per
burst. Real daemon, real socket, clients in processes of their own as ``nobody`` (which
needs root, as in test_peercred.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from audit import AuditEntry, verify_chain
from executor.connections import REFUSAL_WINDOW
from executor.protocol import MAX_CONNECTIONS_PER_UID
from tests.executor.test_peercred import NO_DOCKER, NOBODY_UID, as_nobody, make_traversable  # noqa: F401 (as_nobody: a fixture)
from tests.harness import ADMIN, Harness

MakeHarness = Callable[..., Awaitable[Harness]]
STORM = 3000

# Connects ``n`` times and waits each time until the executor has closed the connection.
STORM_CLIENT = r"""
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    try:
        sock.recv(1)  # b"" or a reset: either way the executor has let go
    except OSError:
        pass
    sock.close()
"""

# Opens slow-header, slow-body and idle connections (in that order), says "holding", keeps
# the slow ones trickling a byte at a time, and reports, once the executor has closed every
# one of them (or after two minutes), what each kind was answered.
HOLD_CLIENT = r"""
import json, resource, selectors, socket, sys, time
path = sys.argv[1]
kinds = {"slow_header": int(sys.argv[2]), "slow_body": int(sys.argv[3]), "idle": int(sys.argv[4])}
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
HEADER = b"POST /v1/request HTTP/1.1\r\nHost: executor\r\nContent-Type: application/jwt\r\nContent-Length: 1000\r\n\r\n"
conns = {}
for kind, n in kinds.items():
    for _ in range(n):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.setblocking(False)
        try:
            if kind == "slow_header":
                sock.send(b"POST /v1/request HTTP/1.1\r\nX-Slow: ")
            elif kind == "slow_body":
                sock.send(HEADER)
        except OSError:
            pass  # already closed by the executor: seen below
        conns[sock] = {"kind": kind, "answer": b""}
print("holding", flush=True)
selector = selectors.DefaultSelector()
for sock in conns:
    selector.register(sock, selectors.EVENT_READ)
still_open = set(conns)
deadline = time.monotonic() + 120
next_trickle = 0.0
while still_open and time.monotonic() < deadline:
    for key, _ in selector.select(timeout=0.2):
        sock = key.fileobj
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            conns[sock]["answer"] += data
        else:
            selector.unregister(sock)
            still_open.discard(sock)
    if time.monotonic() >= next_trickle:  # a byte every 0.2 s: never a whole header or body in time
        next_trickle = time.monotonic() + 0.2
        for sock in still_open:
            if conns[sock]["kind"] != "idle":
                try:
                    sock.send(b"a")
                except OSError:
                    pass
report = {kind: {"total": 0, "left_open": 0, "answers": []} for kind in kinds}
for sock, conn in conns.items():
    line = report[conn["kind"]]
    line["total"] += 1
    line["left_open"] += sock in still_open
    line["answers"].append(conn["answer"].split(b"\r\n", 1)[0].decode("latin-1"))
print(json.dumps(report), flush=True)
"""


def open_to_everyone(harness: Harness) -> Path:
    """Only the peer-uid check is left in the way (as in test_peercred.py)."""
    path = harness.settings.socket_path
    make_traversable(harness)
    os.chmod(path.parent, 0o755)  # not 0777: a restart refuses a directory others may write to
    os.chmod(path, 0o777)
    return path


async def run_as_nobody(command: list[str], script: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, "-c", script, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def entries_of(harness: Harness, actor: str) -> list[AuditEntry]:
    store = harness.executor.audit
    return [e for e in await store.tail(await store.count()) if e.actor == actor]


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# -- refusals ---------------------------------------------------------------------------------


async def test_a_refusal_storm_adds_a_bounded_number_of_entries_whose_counts_add_up(
    make_harness: MakeHarness, as_nobody: list[str]
) -> None:
    harness = await make_harness(docker_host=NO_DOCKER)
    path = open_to_everyone(harness)
    actor = f"uid:{NOBODY_UID}"
    started = time.monotonic()

    await run_as_nobody(as_nobody, STORM_CLIENT, str(path), "1")

    async def first_is_there() -> bool:
        return bool(await entries_of(harness, actor))

    await eventually(first_is_there, "the first refusal audited at once")
    [first] = await entries_of(harness, actor)
    assert (first.action, first.decision, first.outcome, first.params) == ("connect", "refused", "uid not allowed", {"count": 1})

    await run_as_nobody(as_nobody, STORM_CLIENT, str(path), str(STORM - 1))
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    await harness.restart()  # a clean shutdown writes the counts still pending
    elapsed = time.monotonic() - started

    refused = await entries_of(harness, actor)
    assert sum(e.params["count"] for e in refused) == STORM
    # The first at once, one per window while the storm lasts, one at shutdown.
    assert len(refused) <= 2 + math.ceil(elapsed / REFUSAL_WINDOW), [(e.outcome, e.params) for e in refused]
    assert {(e.action, e.decision) for e in refused} == {("connect", "refused")}
    report = await verify_chain(harness.executor.audit, None, {})
    assert report.ok, report.summary()


# -- idle and slow connections ------------------------------------------------------------------


async def test_idle_and_slow_connections_from_one_uid_cannot_starve_the_bot(
    make_harness: MakeHarness, as_nobody: list[str]
) -> None:
    # nobody is an allowed client; the test's own uid (the executor's) stands for the bot.
    harness = await make_harness(allowed_uids=[NOBODY_UID], docker_host=NO_DOCKER)
    path = open_to_everyone(harness)
    bot = harness.client()
    reply = await bot.call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    files_before, rss_before = open_files(), rss_bytes()

    slow_headers, slow_bodies, idle = 20, 20, 1500
    process = await asyncio.create_subprocess_exec(
        *as_nobody, "-c", HOLD_CLIENT, str(path), str(slow_headers), str(slow_bodies), str(idle),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    assert line == b"holding\n", line + await process.stderr.read()  # type: ignore[union-attr]

    # While nobody holds all it may (and asks for more), the bot is answered every time and
    # the daemon holds no more than one uid's share of files for nobody.
    files_held = open_files()
    for _ in range(20):
        reply = await bot.call(ADMIN, "whoami")
        assert (reply.http_status, reply.status) == (200, "done")
    assert files_held - files_before <= MAX_CONNECTIONS_PER_UID + 16, (files_before, files_held)

    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    # Every connection was closed by the daemon: the slow bodies answered 408, the rest unanswered.
    assert {kind: line["left_open"] for kind, line in report.items()} == {"slow_header": 0, "slow_body": 0, "idle": 0}
    assert report["slow_body"]["answers"] == ["HTTP/1.1 408 Request Timeout"] * slow_bodies
    assert set(report["slow_header"]["answers"]) == {""}
    assert set(report["idle"]["answers"]) == {""}

    reply = await bot.call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    assert open_files() - files_before <= 8
    assert rss_bytes() - rss_before < 64 * 1024 * 1024, (rss_before, rss_bytes())

    await harness.restart()
    over = await entries_of(harness, f"uid:{NOBODY_UID}")
    assert {e.outcome.split(" (")[0] for e in over if e.outcome} <= {
        f"more than {MAX_CONNECTIONS_PER_UID} connections open at once"
    }
    assert sum(e.params["count"] for e in over) <= slow_headers + slow_bodies + idle - MAX_CONNECTIONS_PER_UID
    timeouts = [e for e in await entries_of(harness, "unverified") if e.outcome and "did not arrive" in e.outcome]
    assert len(timeouts) == slow_bodies


async def test_a_client_that_stops_reading_its_replies_is_cut(make_harness: MakeHarness) -> None:
    harness = await make_harness(docker_host=NO_DOCKER)
    path = str(harness.settings.socket_path)
    asked = 20_000  # pipelined: far more replies than the socket's buffers hold

    def pipeline_without_reading() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(120)
            sock.connect(path)
            with contextlib.suppress(OSError):  # the executor lets go while we are still sending
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: executor\r\n\r\n" * asked)
            received = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(1 << 16):
                    received += chunk
            return received.count(b"HTTP/1.1 200 ")

    answered = await asyncio.to_thread(pipeline_without_reading)
    assert 0 < answered < asked  # cut once its replies went unread, not served to the end
    daemon = harness.daemon
    assert daemon is not None and daemon.gate is not None
    gate = daemon.gate
    await eventually(lambda: gate.open_connections[os.getuid()] == 0, "the connection let go")
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")


# -- what the log says ----------------------------------------------------------------------------


async def test_a_client_that_drops_mid_body_is_one_log_line(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await make_harness(docker_host=NO_DOCKER)
    reader, writer = await asyncio.open_unix_connection(str(harness.settings.socket_path))
    writer.write(
        b"POST /v1/request HTTP/1.1\r\nHost: executor\r\nContent-Type: application/jwt\r\n"
        b"Content-Length: 1000\r\n\r\neyJhbGciOi"
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def audited() -> bool:
        return any("middle of the body" in (e.outcome or "") for e in await entries_of(harness, "unverified"))

    await eventually(audited, "the dropped request audited")
    lines = [r for r in caplog.records if "before sending the whole request body" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")


async def test_accept_failures_are_logged_once_per_burst(make_harness: MakeHarness, caplog: pytest.LogCaptureFixture) -> None:
    harness = await make_harness(docker_host=NO_DOCKER)
    daemon = harness.daemon
    assert daemon is not None and daemon.gate is not None
    gate = daemon.gate
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]  # their files made beforehand
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        # Out of open files: no number left below the limit for the daemon to accept into.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1, hard))
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        for client in clients:
            client.setblocking(False)
            client.connect(str(harness.settings.socket_path))  # waits in the backlog
        await eventually(lambda: gate.failed_accepts >= 3, "several failed accept() calls")
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await eventually(lambda: gate.failed_accepts == 0, "accepting again")
    failed = [r for r in caplog.records if r.getMessage().startswith("cannot accept connections")]
    again = [r for r in caplog.records if r.getMessage().startswith("accepting connections again")]
    assert len(failed) == 1 and len(again) == 1, [r.getMessage() for r in caplog.records]
    assert failed[0].levelno == logging.ERROR and not failed[0].exc_info
    assert int(again[0].getMessage().split("after ")[1].split()[0]) >= 3
    for client in clients:
        client.close()
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
