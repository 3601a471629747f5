"""Real OpenSSH for the tests: an ``sshd`` on 127.0.0.1 and socket forwards through it.

``sshd`` (a fixture) starts Debian's ``openssh-server`` as this user (root in CI: sshd needs
``/run/sshd``, which it gets) on ``127.0.0.1:<free port>`` with a throwaway host key and one
throwaway client key in its authorized keys, as ``restrict,port-forwarding`` (the key line
``deploy/`` recommends); public keys only, no PAM, no TTY, forwarding on, with
``StreamLocalBindUnlink yes`` (what ``deploy/`` asks of the bot's host for ``ssh -R``).
OpenSSH 9.2 lets a Unix socket through only where ``AllowTcpForwarding`` also allows that
direction (tests/executor/test_forwarded.py holds what the README says about it);
``start_sshd(key_options=..., config=...)`` tries other lines. The client trusts the
host key and nothing else (``StrictHostKeyChecking yes`` against a known_hosts file).

``Sshd.forward(local, remote)`` runs ``ssh -N -L <local>:<remote>`` (``reverse=True``:
``ssh -N -R <remote>:<local>``, the executor's host dialling out) with
``ExitOnForwardFailure yes`` and ``StreamLocalBindUnlink yes``, and returns once the
forwarded socket accepts connections (a deadline; ssh's stderr in the failure). A
``Forward`` can be ``kill()``-ed (SIGKILL, as a dropped link would leave it) and
``start()``-ed again. Usage::

    def test_x(sshd: Sshd, harness: Harness) -> None:
        fwd = sshd.forward(tmp / "b.sock", harness.settings.socket_path)
        ...   # connect to tmp / "b.sock": it reaches the executor through sshd
        fwd.kill(); fwd.start()

With ``-L`` the executor's peer check sees sshd's session process, i.e. the login user
(here: this user); with ``-R`` it sees the ``ssh`` client's user on the executor's host.
Registered for the whole suite by tests/conftest.py; a test using it is marked ``slow``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import service_missing

START_DEADLINE = 20.0
SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(path: Path) -> bool:
    """Whether a Unix socket at ``path`` accepts a connection now."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


@dataclass
class Forward:
    """One ``ssh -N -L`` (or ``-R``) process, restartable."""

    sshd: Sshd
    local: Path
    remote: Path
    reverse: bool = False
    process: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.sshd.root / f"ssh-{os.urandom(4).hex()}.log"

    @property
    def command(self) -> list[str]:
        spec = f"{self.remote}:{self.local}" if self.reverse else f"{self.local}:{self.remote}"
        return [
            "ssh", "-N", "-R" if self.reverse else "-L", spec,
            "-F", "/dev/null",  # no user or system client config
            "-i", str(self.sshd.client_key),
            "-p", str(self.sshd.port),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.sshd.known_hosts}",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "StreamLocalBindUnlink=yes",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=2",
            f"{self.sshd.user}@127.0.0.1",
        ]  # fmt: skip

    @property
    def forwarded(self) -> Path:
        """The socket this forward makes: the local one with -L, the remote one with -R."""
        return self.remote if self.reverse else self.local

    def start(self) -> Forward:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + START_DEADLINE
        while not answers(self.forwarded):
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"ssh exited with status {code}: {self.stderr()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the forward was not up within {START_DEADLINE:g} s: {self.stderr()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL, as a dropped link leaves it: the forwarded socket file stays, and
        nobody answers on it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace").strip()[-2000:] or "(nothing on stderr)"
        except OSError:
            return "(no stderr)"


@dataclass
class Sshd:
    """A running sshd and what a client needs to log in to it."""

    root: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]
    forwards: list[Forward] = field(default_factory=list)

    def forward(self, local: Path, remote: Path, *, reverse: bool = False) -> Forward:
        made = Forward(self, local, remote, reverse)
        self.forwards.append(made)
        return made.start()

    def log(self) -> str:
        try:
            return (self.root / "sshd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wingman-test", "-f", str(path)], check=True)


def start_sshd(*, key_options: str = "restrict,port-forwarding", config: str = "", match: str = "") -> Sshd:
    """Start sshd on a free port of 127.0.0.1; raises ``RuntimeError`` saying why not.
    ``key_options`` go before the client key in authorized_keys (``restrict,...``);
    ``config`` lines are put first in sshd_config (the first value of a keyword wins);
    ``match`` (``Match`` blocks) goes last."""
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        raise RuntimeError("OpenSSH is not installed (Debian: openssh-server and openssh-client, see .ci/run)")
    if os.geteuid() != 0:
        raise RuntimeError("the sshd of the tests runs as root (it needs /run/sshd and to switch to the login user)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    root = Path(tempfile.mkdtemp(prefix="wm-ssh-", dir="/tmp"))
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    (root / "authorized_keys").write_text(f"{key_options} {(root / 'client_key.pub').read_text()}".lstrip())
    port = free_port()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {(root / 'host_key.pub').read_text()}")
    (root / "sshd_config").write_text(
        config + f"""\
ListenAddress 127.0.0.1:{port}
HostKey {root / 'host_key'}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PermitTTY no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
ClientAliveInterval 5
LogLevel VERBOSE
"""
        + match
    )
    log = (root / "sshd.log").open("ab")
    try:
        # -D: stay in the foreground; -e: log to stderr (the file above).
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()
    running = Sshd(root, port, pwd.getpwuid(os.getuid()).pw_name, root / "client_key", root / "known_hosts", process)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        code = process.poll()
        if code is not None:
            raise RuntimeError(f"sshd exited with status {code}: {running.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(4).startswith(b"SSH-"):
                    return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_sshd(running)
            raise RuntimeError(f"sshd did not answer within {START_DEADLINE:g} s: {running.log()}")
        time.sleep(0.05)


def stop_sshd(running: Sshd) -> None:
    for forward in running.forwards:
        forward.kill()
    if running.process.poll() is None:
        running.process.terminate()
        try:
            running.process.wait(10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait(10)
    shutil.rmtree(running.root, ignore_errors=True)


@pytest.fixture
def sshd() -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1; see the module docstring."""
    try:
        running = start_sshd()
    except RuntimeError as exc:
        service_missing(f"no sshd for the forwarding tests: {exc}")
    try:
        yield running
    finally:
        stop_sshd(running)
