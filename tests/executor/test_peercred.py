"""Who may reach the executor's socket: file modes, the peer-uid check, stale and live sockets.

The refusal cases run a real client process as ``nobody`` (``setpriv``), so they need root;
without it they skip, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from audit import AuditEntry
from executor.errors import StartupError
from executor.protocol import make_token
from executor.server import Daemon, serve
from tests.harness import ADMIN, AUDIENCE, Harness
from executor.settings import ExecutorSettings

MakeHarness = Callable[..., Awaitable[Harness]]
# None of this needs Docker: keep the daemon's start-up recovery away from the host's engine
# (and from the containers of whatever else runs on it).
NO_DOCKER = "unix:///nonexistent/docker.sock"
NOBODY = pwd.getpwnam("nobody")
NOBODY_UID, NOBODY_GID = NOBODY.pw_uid, NOBODY.pw_gid  # nogroup on Debian

# A client written against the socket with nothing but the standard library: it prints what
# happened as JSON (the errno name of a failed connect, the bytes answered, a read error).
CLIENT = r"""
import errno, json, os, socket, sys
path, body = sys.argv[1], sys.argv[2].encode()
request = (
    b"POST /v1/request HTTP/1.1\r\nHost: executor\r\nContent-Type: application/jwt\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
) + body
result = {"uid": os.getuid(), "connect": None, "error": None, "answer": ""}
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
try:
    sock.connect(path)
except OSError as exc:
    result["connect"] = errno.errorcode.get(exc.errno, str(exc))
else:
    data = b""
    try:
        sock.sendall(request)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        result["error"] = errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    result["answer"] = data.decode("latin-1")
print(json.dumps(result))
"""


def nobody_python() -> list[str] | None:
    """The command that runs Python as nobody (its own group, no others), if this host has one."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    for python in dict.fromkeys([sys.executable, shutil.which("python3"), "/usr/bin/python3"]):
        if not python:
            continue
        command = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups", python]
        probe = subprocess.run([*command, "-c", "import errno, json, socket"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return command
    return None


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness(docker_host=NO_DOCKER)


@pytest.fixture(scope="module")
def as_nobody() -> list[str]:
    command = nobody_python()
    if command is None:
        pytest.skip("needs root, setpriv and a Python that user nobody can run")
    return command


async def connect_as_nobody(command: list[str], socket_path: Path, body: str = "not-a-token") -> dict[str, Any]:
    # Asynchronous: the daemon runs in this event loop and must go on serving meanwhile.
    process = await asyncio.create_subprocess_exec(
        *command, "-c", CLIENT, str(socket_path), body, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    assert result["uid"] == NOBODY_UID
    return result


def make_traversable(harness: Harness) -> None:
    """Let others through the temporary parent (mkdtemp makes it 0700), not yet into the socket's directory."""
    parent = harness.settings.socket_path.parent.parent
    os.chmod(parent, 0o755)


async def audit_entries(harness: Harness) -> list[AuditEntry]:
    store = harness.executor.audit
    return await store.tail(await store.count())


async def wait_for_entry(harness: Harness, match: Callable[[AuditEntry], bool], timeout: float = 5.0) -> AuditEntry:
    # The refusal is audited by a task of its own, after the connection is already closed.
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in await audit_entries(harness) if match(e)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no such audit entry"
        await asyncio.sleep(0.05)


# -- the socket file ----------------------------------------------------------------------------


async def test_socket_is_0660_in_a_0750_directory_right_after_start(harness: Harness) -> None:
    path = harness.settings.socket_path
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750


async def test_a_stale_socket_from_a_crash_is_replaced(make_harness: MakeHarness, socket_dir: Path) -> None:
    path = socket_dir / "executor.sock"
    socket_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # as a crash leaves it: the file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with pytest.raises(ConnectionRefusedError):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(path))

    harness = await make_harness(docker_host=NO_DOCKER)
    assert harness.settings.socket_path == path
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def elsewhere(harness: Harness) -> ExecutorSettings:
    """The harness's settings but another database: past the lease, on to the socket."""
    return harness.settings.model_copy(update={"db_url": f"sqlite+aiosqlite:///{harness.home / 'other.db'}"})


async def test_a_second_daemon_on_a_live_socket_refuses_to_start(harness: Harness) -> None:
    second = Daemon(elsewhere(harness))
    try:
        with pytest.raises(StartupError, match="another executor is already serving") as caught:
            await second.start()
        assert str(harness.settings.socket_path) in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        await second.stop()  # as serve() does after a failed start: it must not take the socket along
    assert harness.settings.socket_path.is_socket()
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")
    stops = [e for e in await audit_entries(harness) if e.action == "executor.stop"]
    assert stops == []  # the one that never started did not record a stop


async def test_the_first_daemon_keeps_its_socket_when_a_second_gives_up(harness: Harness) -> None:
    """As `wingman executor` run twice does it: serve() on the same settings."""
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(StartupError, match="another executor is already serving"):
            await serve(elsewhere(harness))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    assert harness.settings.socket_path.is_socket()
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")


async def test_a_regular_file_at_the_socket_path_is_not_deleted(make_harness: MakeHarness, socket_dir: Path) -> None:
    path = socket_dir / "executor.sock"
    socket_dir.mkdir(parents=True)
    path.write_text("not a socket")
    with pytest.raises(StartupError, match="is not a socket"):
        await make_harness(docker_host=NO_DOCKER)
    assert path.read_text() == "not a socket"


# -- the peer's uid ---------------------------------------------------------------------------------


async def test_nobody_cannot_even_reach_the_socket_through_its_modes(harness: Harness, as_nobody: list[str]) -> None:
    make_traversable(harness)  # only the socket's own 0750 directory and 0660 mode are in the way
    result = await connect_as_nobody(as_nobody, harness.settings.socket_path)
    assert result["connect"] == "EACCES"
    assert result["answer"] == ""
    assert not [e for e in await audit_entries(harness) if e.actor.startswith("uid:")]


async def test_a_uid_not_allowed_is_refused_before_a_byte_is_read(harness: Harness, as_nobody: list[str]) -> None:
    path = harness.settings.socket_path
    make_traversable(harness)
    os.chmod(path.parent, 0o777)
    os.chmod(path, 0o777)  # the file modes let nobody in: only the peer-uid check is left
    signed = make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami")
    for body in ("not-a-token", signed):
        result = await connect_as_nobody(as_nobody, path, body)
        assert result["connect"] is None, result  # it did connect
        assert result["answer"] == "", result  # and heard nothing back: closed or reset
        assert result["error"] in (None, "ECONNRESET", "EPIPE"), result
    entry = await wait_for_entry(harness, lambda e: e.actor == f"uid:{NOBODY_UID}")
    assert (entry.action, entry.decision) == ("connect", "refused")
    entries = await audit_entries(harness)
    assert not [e for e in entries if e.decision == "executed"]  # the signed whoami did not run
    assert not [e for e in entries if e.actor == "unverified"]  # nor was anything read from it
    reply = await harness.client().call(ADMIN, "whoami")
    assert (reply.http_status, reply.status) == (200, "done")


async def test_an_allowed_uid_gets_through(make_harness: MakeHarness, as_nobody: list[str]) -> None:
    harness = await make_harness(allowed_uids=[NOBODY_UID], docker_host=NO_DOCKER)
    path = harness.settings.socket_path
    make_traversable(harness)
    # As deployed: the client shares the socket's group; the modes stay 0750 and 0660.
    os.chown(path.parent, -1, NOBODY_GID)
    os.chown(path, -1, NOBODY_GID)
    result = await connect_as_nobody(as_nobody, path, "not-a-token")
    assert result["connect"] is None, result
    assert result["answer"].startswith("HTTP/1.1 401 "), result
    assert '"status": "refused"' in result["answer"]
    entries = await audit_entries(harness)
    assert [(e.actor, e.decision) for e in entries if e.actor == "unverified"] == [("unverified", "refused")]
    assert not [e for e in entries if e.actor.startswith("uid:")]
