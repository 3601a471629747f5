"""deploy/docker-compose.yml: the privilege separation between executor and bot.

The file is read with PyYAML and checked as written; then, when a Compose is installed
(``docker compose`` or Debian's ``docker-compose``), the same checks run on what Compose
itself makes of it (``config``: interpolated and normalised).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKER_SOCKET = "/var/run/docker.sock"
# Nothing the bot may see: Docker, Proxmox, the database, the policy, the trusted keys.
EXECUTOR_ONLY_ENV = ("DOCKER_", "PROXMOX_", "WINGMAN_DB", "WINGMAN_TRUSTED", "WINGMAN_POLICY", "WINGMAN_AUDIT", "WINGMAN_ALLOW")


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each mount, short or long syntax."""
    found = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = str(volume.get("source", "")), str(volume["target"])
        found.append((source, target))
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _secret_sources(service: dict[str, Any]) -> set[str]:
    return {item if isinstance(item, str) else item["source"] for item in service.get("secrets") or []}


def check_separation(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"executor", "bot"}
    executor, bot = services["executor"], services["bot"]

    # Only the executor mounts the Docker socket; the bot mounts nothing but the socket volume.
    assert (DOCKER_SOCKET, DOCKER_SOCKET) in _volumes(executor)
    assert [target for _, target in _volumes(bot)] == ["/run/wingman"]
    assert all("docker.sock" not in source for source, _ in _volumes(bot))
    named = set(compose.get("volumes") or {})
    shared = {source for source, _ in _volumes(bot)} & {source for source, _ in _volumes(executor)}
    assert shared == {"executor-socket"} and shared <= named
    (bot_mount,) = bot["volumes"]  # read-only: connecting to a socket needs no write access
    assert bot_mount.endswith(":ro") if isinstance(bot_mount, str) else bot_mount.get("read_only") is True

    # Secrets: the bot holds its key and token, the executor neither.
    assert _secret_sources(bot) == {"bot_key", "telegram_bot_token"}
    assert not _secret_sources(executor) & {"bot_key", "telegram_bot_token"}
    for name, secret in compose["secrets"].items():
        assert "file" in secret, f"secret {name} must come from a file, not an environment literal"

    bot_env, executor_env = _env(bot), _env(executor)
    leaked = [key for key in bot_env if key.startswith(EXECUTOR_ONLY_ENV)]
    assert not leaked, f"the bot sees executor settings: {leaked}"
    assert "TELEGRAM_BOT_TOKEN" not in bot_env, "the token is a secret file, not an environment value"
    assert bot_env["TELEGRAM_BOT_TOKEN_FILE"].startswith("/run/secrets/")
    assert bot_env["WINGMAN_BOT_KEY"].startswith("/run/secrets/")
    assert not [key for key in executor_env if key.startswith("TELEGRAM_")]
    assert executor_env["WINGMAN_SOCKET"] == bot_env["WINGMAN_SOCKET"]

    # The bot: read-only root, no capabilities, no privilege gain, no extra groups or devices.
    assert bot["read_only"] is True
    assert bot["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in bot["security_opt"]
    for key in ("privileged", "group_add", "devices", "pid", "ipc", "network_mode", "cap_add", "volumes_from", "env_file"):
        assert key not in bot, f"the bot must not have {key}"
    # Nor do they share a network: the executor has none.
    assert executor.get("network_mode") == "none" and "networks" not in executor

    # Health checks through the wingman command.
    assert executor["healthcheck"]["test"][-3:] == ["wingman", "health", "executor"]
    assert bot["healthcheck"]["test"][-3:] == ["wingman", "health", "bot"]
    assert bot["depends_on"]["executor"]["condition"] == "service_healthy"


def test_the_compose_file_separates_privileges() -> None:
    check_separation(yaml.safe_load(COMPOSE.read_text()))


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_compose_accepts_the_file_and_keeps_the_separation(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        service_missing("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)")
    env_file = tmp_path / "compose.env"
    env_file.write_text("WINGMAN_CHAT_ID=-1001234567890\nDOCKER_GID=998\n")
    completed = subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    normalised = yaml.safe_load(completed.stdout)
    check_separation(normalised)
    bot = normalised["services"]["bot"]
    assert _env(bot)["WINGMAN_CHAT_ID"] == "-1001234567890"
    # The key id is the key file's stem: the secret keeps the name bot.key.
    assert _env(bot)["WINGMAN_BOT_KEY"] == "/run/secrets/bot.key"
    assert [str(gid) for gid in normalised["services"]["executor"]["group_add"]] == ["998"]


def test_compose_refuses_to_run_without_the_chat_id(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        service_missing("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    completed = subprocess.run(
        [*command, "--env-file", str(empty), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    assert completed.returncode != 0
    assert "WINGMAN_CHAT_ID" in completed.stderr


@pytest.mark.parametrize("service", ["executor", "bot"])
def test_both_services_run_the_same_image(service: str) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["services"][service]["image"] == "${WINGMAN_IMAGE:-wingman:latest}"
    assert compose["services"][service]["command"] == [service]
