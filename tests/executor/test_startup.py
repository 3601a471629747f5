"""Starting and stopping ``wingman executor`` as an operator does: one line on error, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from audit import generate_key_pair
from executor.errors import StartupError
from tests.audit.test_cli import wingman
from tests.harness import Harness

ROOT = Path(__file__).resolve().parents[2]


def test_a_policy_file_that_does_not_parse_stops_the_daemon_naming_the_line(tmp_path: Path, socket_dir: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("roles:\n  admins: [1]\nactions:\n  exec: {tier: 1}\n")
    result = wingman("executor", cwd=tmp_path, WINGMAN_POLICY=str(policy), WINGMAN_SOCKET=str(socket_dir / "x.sock"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"wingman: {policy}:4: ") and "exec" in line
    assert not (socket_dir / "x.sock").exists()


def test_a_policy_file_taking_a_tier_3_action_below_tier_2_stops_the_daemon_naming_the_line(
    tmp_path: Path, socket_dir: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("roles:\n  admins: [1]\nactions:\n  deploy: {tier: 2}\n  vm.rollback: {tier: 1}\n")
    result = wingman("executor", cwd=tmp_path, WINGMAN_POLICY=str(policy), WINGMAN_SOCKET=str(socket_dir / "x.sock"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"wingman: {policy}:5: vm.rollback is a tier-3")
    assert not (socket_dir / "x.sock").exists()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"WINGMAN_TRUSTED_KEYS": "/nonexistent/bot.pub"}, "WINGMAN_TRUSTED_KEYS: /nonexistent/bot.pub: no such key file"),
        ({"WINGMAN_DB_URL": "mysql://x/y"}, "WINGMAN_DB_URL:"),
        ({"WINGMAN_APPROVAL_TTL_SECONDS": "-5"}, "WINGMAN_APPROVAL_TTL_SECONDS:"),
    ],
)
def test_bad_settings_stop_the_daemon_with_one_line(tmp_path: Path, socket_dir: Path, env: dict[str, str], needle: str) -> None:
    result = wingman("executor", cwd=tmp_path, WINGMAN_SOCKET=str(socket_dir / "x.sock"), **env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert needle in line


def test_sigterm_shuts_down_cleanly_with_a_checkpoint(tmp_path: Path, socket_dir: Path) -> None:
    generate_key_pair(tmp_path / "keys", "bot")
    sock = socket_dir / "executor.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(PYTHONPATH=str(ROOT), WINGMAN_SOCKET=str(sock), WINGMAN_TRUSTED_KEYS=str(tmp_path / "keys" / "bot.pub"))
    daemon = subprocess.Popen([sys.executable, "-m", "wingman", "executor"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:  # the daemon says when it listens
            if "executor listening on" in line:
                break
        assert sock.is_socket()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert not sock.exists()
    checkpoints = sorted((tmp_path / "data" / "audit" / "checkpoints").glob("checkpoint-*.json"))
    assert checkpoints and json.loads(checkpoints[-1].read_text())["seq"] == 2  # executor.start, executor.stop
    assert wingman("audit", "verify", cwd=tmp_path).returncode == 0


async def test_a_second_daemon_on_the_same_database_refuses_to_start(harness: Harness) -> None:
    second = Harness(harness.home, harness.settings.socket_path.parent, harness.bot_key, {})
    try:
        with pytest.raises(StartupError, match="^WINGMAN_DB_URL: another executor holds .*wingman.db \\(host .*, pid") as caught:
            await second.start()
        assert "\n" not in str(caught.value)
    finally:
        await second.stop()  # as serve() does after a failed start: the first keeps its lease and socket
    assert (await harness.client().call(1, "whoami")).status == "done"


def test_a_socket_in_a_shared_directory_is_refused_and_the_directory_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    result = wingman("executor", cwd=tmp_path, WINGMAN_SOCKET=str(shared / "executor.sock"))
    assert result.returncode == 2
    assert "is shared with other users; put the socket in a directory of its own" in result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_two_trusted_keys_with_one_id_stop_the_daemon_naming_both(tmp_path: Path, socket_dir: Path) -> None:
    first = generate_key_pair(tmp_path / "old", "bot")[1]
    second = generate_key_pair(tmp_path / "new", "bot")[1]
    sock = socket_dir / "x.sock"
    result = wingman("executor", cwd=tmp_path, WINGMAN_SOCKET=str(sock), WINGMAN_TRUSTED_KEYS=f"{first},{second}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(first) in line and str(second) in line and "same key id 'bot'" in line
    assert not sock.exists()


def test_files_are_private_whatever_the_umask(tmp_path: Path, socket_dir: Path) -> None:
    from wingman.doctor import check_private_files
    from executor.settings import ExecutorSettings

    generate_key_pair(tmp_path / "keys", "bot")
    sock = socket_dir / "executor.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(PYTHONPATH=str(ROOT), WINGMAN_SOCKET=str(sock), WINGMAN_TRUSTED_KEYS=str(tmp_path / "keys" / "bot.pub"))

    def loose_umask() -> None:
        os.umask(0o022)  # the usual login default, under which data/ was 0755 and wingman.db 0644

    daemon = subprocess.Popen(
        [sys.executable, "-m", "wingman", "executor"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=loose_umask,
    )  # fmt: skip
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if "executor listening on" in line:
                break
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()

    data = tmp_path / "data"

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    directories = [data, data / "audit", data / "audit" / "checkpoints"]
    files = [data / "wingman.db", data / "audit.key", *(data / "audit" / "checkpoints").iterdir()]
    files += [path for path in (data / "wingman.db-wal", data / "wingman.db-shm") if path.exists()]
    assert len(files) >= 3
    assert {str(d): mode(d) for d in directories} == {str(d): 0o700 for d in directories}
    assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}

    settings = ExecutorSettings(_env_file=None, data_dir=data, socket=sock)
    assert check_private_files(settings).ok, check_private_files(settings).line()
    os.chmod(data, 0o755)
    os.chmod(data / "wingman.db", 0o644)
    result = check_private_files(settings)
    assert not result.ok
    assert f"{data} (0755)" in result.problem and f"{data / 'wingman.db'} (0644)" in result.problem
    assert result.fix == f"chmod 0700 {data} && chmod 0600 {data / 'wingman.db'}"
