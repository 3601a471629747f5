"""Registry credentials from a Docker ``config.json`` (``WINGMAN_REGISTRY_AUTH``).

The file is the one ``docker login`` writes: ``{"auths": {"<registry>": {"auth":
"<base64 user:password>"} | {"identitytoken": "<token>"}}}``. The docker SDK parses it
(``docker.auth``), the same parser the engine calls use when they pull, so the tag-list
client (:mod:`executor.updates.registry`) and the engine agree on which credentials go
where. A ``credsStore`` or ``credHelpers`` entry is honoured the SDK's way (it runs
``docker-credential-<name>``).

Secrets never leave this module in a printable form: :class:`Credential` hides the password
and the token from ``repr``, and every message here names the file and the registry, never
a value. The file is read again at every check, so a ``docker login`` takes effect without
a restart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker import auth as docker_auth
from docker.errors import DockerException

log = logging.getLogger(__name__)


def default_config_path() -> Path:
    """The executor user's ``~/.docker/config.json``."""
    return Path.home() / ".docker" / "config.json"


@dataclass(frozen=True, slots=True)
class Credential:
    """What one registry is given: a user and password (basic), or an identity token."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def engine_auth(self) -> dict[str, str]:
        """As the engine takes it in ``X-Registry-Auth`` (the SDK encodes it)."""
        if self.identity_token:
            return {"identitytoken": self.identity_token}
        return {"username": self.username or "", "password": self.password or ""}


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """The credentials read from one config file, by registry; ``problem`` says why none were read."""

    path: Path
    _config: Any = field(default=None, repr=False)
    problem: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> RegistryCredentials:
        """Read ``path`` (None: ``~/.docker/config.json``); a missing file means no credentials.

        A file that cannot be used gives no credentials and a ``problem`` line for the
        check's message (never the file's contents).
        """
        where = path or default_config_path()
        try:
            text = where.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(where)
        except OSError as exc:
            return cls(where, problem=f"WINGMAN_REGISTRY_AUTH: cannot read {where}: {exc.strerror}")
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return cls(where, problem=f"WINGMAN_REGISTRY_AUTH: {where} is not JSON (a Docker config.json)")
        if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
            return cls(where, problem=f"WINGMAN_REGISTRY_AUTH: {where} has no \"auths\" object (a Docker config.json)")
        try:
            config = docker_auth.load_config(config_dict=document)
        except (DockerException, ValueError, TypeError, KeyError):
            return cls(where, problem=f"WINGMAN_REGISTRY_AUTH: an entry in {where} cannot be decoded (\"auth\" is base64 of user:password)")
        return cls(where, config)

    def registries(self) -> list[str]:
        """The registries the file names credentials for (names only, never a value)."""
        if self._config is None:
            return []
        return sorted(str(name) for name in self._config.auths)

    def for_registry(self, registry: str) -> Credential | None:
        """The credential for ``registry`` (``host[:port]``; ``docker.io`` for Docker Hub), or None."""
        if self._config is None:
            return None
        try:
            found = self._config.resolve_authconfig(registry)
        except (DockerException, ValueError, TypeError, KeyError, OSError) as exc:
            log.warning("registry credentials for %s could not be resolved (%s)", registry, type(exc).__name__)
            return None
        if not found:
            return None
        token = found.get("IdentityToken") or found.get("identitytoken")
        if token:
            return Credential(found.get("Username") or found.get("username"), identity_token=str(token))
        username = found.get("Username") or found.get("username")
        password = found.get("Password") or found.get("password")
        if not username and not password:
            return None
        return Credential(str(username or ""), str(password or ""))
