"""One executor per database: a second ``wingman executor`` (or ``wingman up``) on the same
database stops with exit 2 and names the holder; a killed holder's lease is free at once.

Real processes on both backends: the lease is a lock that dies with its process, so only
separate processes (and a real SIGKILL) show it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from audit import generate_key_pair
from audit.database import normalize_url
from executor.lease import Lease, LeaseError
from tests.audit.test_cli import wingman

ROOT = Path(__file__).resolve().parents[2]


def executor_env(home: Path, sock: Path, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINGMAN_", "TELEGRAM_", "PROXMOX_", "RETENTION_"))}
    env.update(PYTHONPATH=str(ROOT), WINGMAN_SOCKET=str(sock), WINGMAN_TRUSTED_KEYS=str(home / "keys" / "bot.pub"))
    env["DOCKER_HOST"] = f"unix://{home}/no-docker.sock"  # the lease needs no Docker
    if db_url is not None:
        env["WINGMAN_DB_URL"] = db_url
    return env


def start_executor(home: Path, sock: Path, db_url: str | None) -> subprocess.Popen[str]:
    """``wingman executor`` in ``home``, returned once it listens."""
    daemon = subprocess.Popen(
        [sys.executable, "-m", "wingman", "executor"], cwd=home, env=executor_env(home, sock, db_url),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert daemon.stderr is not None
    seen = []
    for line in daemon.stderr:
        seen.append(line)
        if "executor listening on" in line:
            return daemon
    daemon.wait(timeout=30)
    raise AssertionError("the executor did not start:\n" + "".join(seen))


def stop(daemon: subprocess.Popen[str]) -> None:
    if daemon.poll() is None:
        daemon.kill()
        daemon.wait(timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    generate_key_pair(tmp_path / "keys", "bot")
    return tmp_path


def lease_url(backend: str, db_url: str) -> str | None:
    return None if backend == "sqlite" else db_url  # SQLite: the default database in the data directory


def assert_names_the_holder(result: subprocess.CompletedProcess[str], holder: subprocess.Popen[str]) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("wingman: WINGMAN_DB_URL: another executor holds"), line
    assert f"host {socket.gethostname()}, pid {holder.pid}, since 20" in line, line


def test_a_second_executor_exits_2_naming_the_holder_and_a_killed_holder_frees_the_lease(
    home: Path, socket_dir: Path, backend: str, db_url: str
) -> None:
    url = lease_url(backend, db_url)
    first = start_executor(home, socket_dir / "one.sock", url)
    try:
        second = wingman("executor", cwd=home, **executor_env(home, socket_dir / "two.sock", url))
        assert_names_the_holder(second, first)
        assert not (socket_dir / "two.sock").exists()  # it stopped before doing anything
        assert (socket_dir / "one.sock").is_socket()  # and left the holder alone

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = start_executor(home, socket_dir / "two.sock", url)  # at once: the lock died with its holder
        try:
            third.send_signal(signal.SIGTERM)
            assert third.wait(timeout=30) == 0
        finally:
            stop(third)
    finally:
        stop(first)
    # Both runs that started are on the chain, and it holds.
    assert wingman("audit", "verify", cwd=home, **({"WINGMAN_DB_URL": url} if url else {})).returncode == 0


def test_wingman_up_on_a_database_an_executor_holds_exits_2_naming_it(home: Path, socket_dir: Path) -> None:
    first = start_executor(home, socket_dir / "one.sock", None)
    try:
        with socket.socket() as probe:  # Telegram is never reached: the executor part stops first
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        result = wingman(
            "up", cwd=home, WINGMAN_SOCKET=str(socket_dir / "two.sock"), TELEGRAM_BOT_TOKEN="42:TEST-token",
            TELEGRAM_API_BASE=f"http://127.0.0.1:{closed_port}", WINGMAN_CHAT_ID="-100",
            WINGMAN_BOT_KEY=str(home / "keys" / "bot.key"), DOCKER_HOST=f"unix://{home}/no-docker.sock",
        )  # fmt: skip
        assert_names_the_holder(result, first)
        assert not (socket_dir / "two.sock").exists()
    finally:
        stop(first)


async def test_two_spellings_of_one_sqlite_database_share_one_lease(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    direct = normalize_url(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'wingman.db'}")
    linked = normalize_url(f"sqlite+aiosqlite:///{tmp_path / 'link' / 'wingman.db'}")
    first = await Lease.take(direct)
    try:
        with pytest.raises(LeaseError, match=f"another executor holds {tmp_path / 'data' / 'wingman.db'} \\(host "):
            await Lease.take(linked)
    finally:
        await first.release()
    second = await Lease.take(linked)  # released: free again
    await second.release()
