"""deploy/ssh/ as shipped, in a real sshd: what each side's settings and the key line allow.

The README's "Remote executors" section says what OpenSSH's settings do and do not cover
for Unix-socket forwards; each claim is a case here, run against Debian's sshd with the
shipped files (the tunnel user replaced by this one, the key's ``from`` by 127.0.0.1).
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.client import ExecutorClient
from tests.conftest import service_missing
from tests.harness import ADMIN, Harness
from tests.ssh import Forward, Sshd, answers, start_sshd, stop_sshd

SSH = Path(__file__).resolve().parents[2] / "deploy" / "ssh"
ME = pwd.getpwuid(os.getuid()).pw_name


def shipped_match(name: str) -> str:
    """A deploy/ssh/*.sshd.conf file for this user."""
    return (SSH / name).read_text().replace("Match User wingman-tunnel", f"Match User {ME}")


def shipped_key_options() -> str:
    line = next(line for line in (SSH / "authorized_keys.example").read_text().splitlines() if line and not line.startswith("#"))
    return re.sub(r'from="[^"]*"', 'from="127.0.0.1"', line.split()[0])


@pytest.fixture
def sshd_as(request: pytest.FixtureRequest) -> Iterator[Sshd]:
    """``sshd`` with the settings the test names (parametrized indirectly)."""
    try:
        running = start_sshd(**request.param)
    except RuntimeError as exc:
        service_missing(f"no sshd for the forwarding tests: {exc}")
    try:
        yield running
    finally:
        stop_sshd(running)


def refused(sshd: Sshd, local: Path, remote: Path, *, reverse: bool) -> str:
    """Start a forward that must fail; what ssh or sshd said."""
    forward = Forward(sshd, local, remote, reverse)
    sshd.forwards.append(forward)
    try:
        forward.start()
    except RuntimeError as exc:
        return str(exc)
    # ssh -L binds locally before any connection: refusal shows when a connection is made.
    assert not reverse
    with pytest.raises(ConnectionError):
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(local))
            probe.settimeout(5)
            probe.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            if not probe.recv(1):
                raise ConnectionResetError("closed")
    return sshd.log()


async def whoami(path: Path, harness: Harness) -> str:
    async with ExecutorClient(path, harness.bot_key, executor_name=harness.name, timeout=10) as client:
        return (await client.call(ADMIN, "whoami")).status


EXECUTOR_HOST = {"key_options": shipped_key_options(), "match": shipped_match("executor-host.sshd.conf")}
BOT_HOST = {"key_options": shipped_key_options(), "match": shipped_match("bot-host.sshd.conf")}


@pytest.mark.parametrize("sshd_as", [EXECUTOR_HOST], indirect=True, ids=["executor-host.sshd.conf"])
async def test_the_executor_hosts_settings_let_the_socket_out_by_ssh_L_and_nothing_in(
    sshd_as: Sshd, harness: Harness, socket_dir: Path
) -> None:
    forwarded = socket_dir.parent / "nas.sock"
    sshd_as.forward(forwarded, harness.settings.socket_path)
    assert await whoami(forwarded, harness) == "done"
    # No ssh -R into this host.
    said = refused(sshd_as, harness.settings.socket_path, socket_dir.parent / "in.sock", reverse=True)
    assert "remote port forwarding failed" in said
    # Said honestly in the file: TCP ssh -L from this host still works for this key.
    assert "AllowTcpForwarding local" in (SSH / "executor-host.sshd.conf").read_text()


@pytest.mark.parametrize("sshd_as", [BOT_HOST], indirect=True, ids=["bot-host.sshd.conf"])
async def test_the_bot_hosts_settings_take_the_socket_in_by_ssh_R_and_allow_nothing_else(
    sshd_as: Sshd, harness: Harness, socket_dir: Path
) -> None:
    bot_side = socket_dir.parent / "from-nas.sock"
    sshd_as.forward(harness.settings.socket_path, bot_side, reverse=True)
    assert await whoami(bot_side, harness) == "done"
    assert stat.S_IMODE(bot_side.stat().st_mode) == 0o660  # StreamLocalBindMask 0117: the bot's group may connect
    # No ssh -L out of the bot's host, socket or TCP.
    said = refused(sshd_as, socket_dir.parent / "out.sock", harness.settings.socket_path, reverse=False)
    assert "refused streamlocal port forward" in said or "denied" in said
    # No TCP listening port (PermitListen none) ...
    tcp = subprocess.run(
        ["ssh", "-N", "-F", "/dev/null", "-i", str(sshd_as.client_key), "-p", str(sshd_as.port),
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={sshd_as.known_hosts}",
         "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9", f"{ME}@127.0.0.1"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert tcp.returncode != 0 and "remote port forwarding failed" in tcp.stderr
    # ... but PermitListen does not cover Unix sockets: the key may make one elsewhere too.
    elsewhere = socket_dir.parent / "anywhere.sock"
    sshd_as.forward(harness.settings.socket_path, elsewhere, reverse=True)
    assert answers(elsewhere)


@pytest.mark.parametrize(
    "sshd_as", [{"key_options": 'restrict,port-forwarding,permitopen="127.0.0.1:1"'}], indirect=True, ids=["permitopen"]
)
async def test_any_permitopen_on_the_key_forbids_every_unix_socket_ssh_L(
    sshd_as: Sshd, harness: Harness, socket_dir: Path
) -> None:
    said = refused(sshd_as, socket_dir.parent / "nas.sock", harness.settings.socket_path, reverse=False)
    assert "request was denied" in said


@pytest.mark.parametrize("sshd_as", [{"key_options": "restrict"}], indirect=True, ids=["restrict"])
async def test_restrict_alone_forbids_socket_forwarding(sshd_as: Sshd, harness: Harness, socket_dir: Path) -> None:
    said = refused(sshd_as, socket_dir.parent / "nas.sock", harness.settings.socket_path, reverse=False)
    assert "refused streamlocal port forward" in said
