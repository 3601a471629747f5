"""The Dockerfile, the systemd units and the policy example, read as an operator's tools would."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from policy import Policy, load_policy_file
from policy.catalogue import CATALOGUE
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("wingman-executor.service", "wingman-bot.service")
# Templates, by the instance the verify test gives them: the forward from the bot's host to
# an executor's host ("nas"), and the reverse one from an executor's host to the bot's ("bot").
FORWARD_UNITS = {"wingman-forward@.service": "nas", "wingman-reverse@.service": "bot"}


# -- Dockerfile -------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_dockerfile_is_multi_stage_and_runs_unprivileged() -> None:
    steps = _instructions()
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(froms) >= 2
    final = steps[froms[-1] :]
    assert any(word == "COPY" and rest.startswith("--from=build") for word, rest in final)
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert '["wingman", "health", "executor"]' in health
    assert ("ENTRYPOINT", '["wingman"]') in final


def test_the_dockerfile_copies_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY" and not rest.startswith("--")}
    assert packages <= copied, f"not copied into the image: {packages - copied}"


# -- systemd ----------------------------------------------------------------------------------


def _unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """Sections → (key, value) in order; systemd allows a key more than once, and a line
    ending in a backslash goes on in the next."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in (DEPLOY / "systemd" / name).read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{name}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


@pytest.mark.parametrize("name", UNITS)
def test_units_are_hardened(name: str) -> None:
    service = _unit(name)["Service"]
    for key, value in (
        ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""), ("RestartPreventExitStatus", "2"),
    ):  # fmt: skip
        assert _values(service, key) == [value], f"{name}: {key}"
    assert _values(service, "ExecStart")[0].split()[1:] == [name.removeprefix("wingman-").removesuffix(".service")]
    assert _unit(name)["Install"] == [("WantedBy", "multi-user.target")]


def test_only_the_executor_joins_the_docker_group() -> None:
    executor, bot = _unit("wingman-executor.service")["Service"], _unit("wingman-bot.service")["Service"]
    assert _values(executor, "SupplementaryGroups") == ["docker"]
    assert not _values(bot, "SupplementaryGroups")
    assert _values(executor, "RuntimeDirectory") == ["wingman"]
    assert _values(executor, "RuntimeDirectoryMode") == ["0750"]
    assert _values(executor, "ReadWritePaths") == ["/var/lib/wingman"]
    assert not _values(bot, "ReadWritePaths")
    # The bot cannot even see the Docker socket or the executor's state.
    hidden = " ".join(_values(bot, "InaccessiblePaths"))
    assert "/run/docker.sock" in hidden and "/var/lib/wingman" in hidden
    # Both agree on the socket; the bot's token comes as a credential, not a value.
    sockets = [re.search(r"WINGMAN_SOCKET=(\S+)", " ".join(_values(s, "Environment"))) for s in (executor, bot)]
    assert sockets[0] and sockets[1] and sockets[0].group(1) == sockets[1].group(1) == "/run/wingman/executor.sock"
    assert "TELEGRAM_BOT_TOKEN_FILE=%d/telegram_bot_token" in " ".join(_values(bot, "Environment"))
    assert _values(bot, "LoadCredential") == ["telegram_bot_token:/etc/wingman/telegram_bot_token"]
    # Different users, one shared group for the socket.
    assert _values(executor, "User") != _values(bot, "User")
    assert _values(executor, "Group") == _values(bot, "Group") == ["wingman"]


@pytest.mark.parametrize("name", FORWARD_UNITS)
def test_forward_units_restart_for_ever_and_forward_only_what_they_name(name: str) -> None:
    unit = _unit(name)
    service = unit["Service"]
    for key, value in (
        ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""), ("Restart", "always"), ("User", "wingman-tunnel"), ("Group", "wingman"),
    ):  # fmt: skip
        assert _values(service, key) == [value], f"{name}: {key}"
    assert _values(unit["Unit"], "StartLimitIntervalSec") == ["0"]  # never gives up on a host
    assert not _values(service, "SupplementaryGroups")  # no docker group, nothing but the tunnel
    command = _values(service, "ExecStart")[0].split()
    assert command[:3] == ["/usr/bin/ssh", "-N", "-T"]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes"):
        assert option in command, f"{name}: {option}"
    (direction,) = [word for word in command if word in ("-L", "-R")]
    spec = command[command.index(direction) + 1]
    if direction == "-L":  # the bot's host: a socket of its own directory, the bot's group may connect
        assert spec == "/run/wingman-forward/%i.sock:${WINGMAN_REMOTE_SOCKET}" and "StreamLocalBindMask=0117" in command
        assert _values(service, "ReadWritePaths") == ["/run/wingman-forward"]
    else:  # the executor's host: its own socket, to the bot's host's directory
        assert spec == "${WINGMAN_FORWARD_SOCKET}:/run/wingman/executor.sock"
        assert "Environment=WINGMAN_FORWARD_SOCKET=/run/wingman-forward/%l.sock" in (DEPLOY / "systemd" / name).read_text()
    assert command[-1] == "%i"  # the host is the instance: a Host block of /etc/wingman/ssh/config


def test_the_forward_directory_is_the_tunnels_and_the_bots_group_only() -> None:
    lines = [l.split() for l in (DEPLOY / "ssh" / "wingman-forward.tmpfiles.conf").read_text().splitlines() if l and not l.startswith("#")]
    assert lines == [["d", "/run/wingman-forward", "0750", "wingman-tunnel", "wingman", "-"]]


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        service_missing("systemd-analyze is not installed (Debian: apt-get install systemd)")
    # verify checks that ExecStart's program exists: stand in /bin/true for /opt/wingman.
    files = []
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text().replace("/opt/wingman/bin/wingman", "/bin/true")
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    # A template is verified as an instance of itself (verify refuses a bare template).
    for name, instance in FORWARD_UNITS.items():
        if shutil.which("ssh") is None:
            service_missing("ssh is not installed (Debian: openssh-client, see .ci/run)")
        (tmp_path / name).write_text((DEPLOY / "systemd" / name).read_text())
        files.append(tmp_path / name.replace("@.", f"@{instance}."))
        files[-1].symlink_to(tmp_path / name)
    completed = subprocess.run(
        [analyze, "verify", "--man=no", *(str(f) for f in files)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    complaints = [line for line in (completed.stdout + completed.stderr).splitlines() if "wingman-" in line]
    assert completed.returncode == 0 and not complaints, completed.stdout + completed.stderr


# -- the policy example ---------------------------------------------------------------------


def test_the_policy_example_loads_and_uses_every_option() -> None:
    file = load_policy_file(DEPLOY / "policy.example.yaml")
    assert file.admins and file.approvers and file.operators and file.viewers
    assert file.containers and file.vms and file.nodes
    assert any("*" in pattern for pattern in file.containers)
    assert file.read_only is not None and file.allow_dangerous_ops is not None
    overrides = file.actions.values()
    assert any(o.tier is not None and o.targets is None for o in overrides)
    assert any(o.targets is not None and o.tier is None for o in overrides)
    assert any(o.targets is not None and o.tier is not None for o in overrides)
    assert any(isinstance(t, int) for o in overrides for t in o.targets or ())  # a VM action's targets
    policy = Policy.from_settings(file=file)
    assert policy.roles


def test_the_policy_example_lists_every_catalogue_action() -> None:
    text = (DEPLOY / "policy.example.yaml").read_text()
    listed = re.search(r"# Actions: (.*?)\nactions:", text, re.S)
    assert listed is not None
    assert set(listed.group(1).replace("#", " ").split()) == set(CATALOGUE)
