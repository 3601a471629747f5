"""Connection settings for Proxmox: ``PROXMOX_HOST``, the credentials, TLS verification.

Every function here reads settings once, at start-up, and raises ``StartupError`` naming the
setting at fault; the token and password never appear in a message.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Any, Protocol

from executor.errors import StartupError
from executor.proxmox.values import one_line
from policy.names import show

DEFAULT_PORT = 8006

# The schema's userid pattern, and an API token in PROXMOX_TOKEN's form.
_USERID = re.compile(r"[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+")
_TOKEN = re.compile(r"(?P<user>[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<name>[A-Za-z][A-Za-z0-9.\-_]+)=(?P<secret>\S+)")
_DNS_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class ProxmoxSettings(Protocol):
    """The executor settings this driver reads (``executor.settings.ExecutorSettings``)."""

    @property
    def proxmox_host(self) -> str | None: ...
    @property
    def proxmox_token(self) -> _Secret | None: ...
    @property
    def proxmox_user(self) -> str | None: ...
    @property
    def proxmox_password(self) -> _Secret | None: ...
    @property
    def proxmox_verify_ssl(self) -> bool: ...


def secret_text(value: _Secret | None) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value()
    return text or None


def parse_host(text: str) -> tuple[str, int]:
    """``PROXMOX_HOST`` (``host``, ``host:port``, ``[v6]:port``) as (host, port)."""
    value = text.strip()
    problem = "PROXMOX_HOST: give host or host:port (e.g. pve.lan:8006), without https:// or a path"
    if not value or "/" in value or "@" in value or any(c.isspace() for c in value):
        raise StartupError(problem)
    port_text = ""
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", value)
        if match is None:
            raise StartupError(problem)
        host, port_text = match.group(1), match.group(2) or ""
        _ipv6_or_fail(host, problem)
    elif value.count(":") > 1:
        host = value
        _ipv6_or_fail(host, problem)
    else:
        host, _, port_text = value.partition(":")
        if _DNS_NAME.fullmatch(host) is None:
            raise StartupError(problem)
        if value.endswith(":"):
            raise StartupError(problem)
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise StartupError(f"PROXMOX_HOST: {show(port_text)} is not a port (1 to 65535)")
        port = int(port_text)
    return host, port


def _ipv6_or_fail(host: str, problem: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise StartupError(problem) from None


def credentials(token: str | None, user: str | None, password: str | None) -> dict[str, Any]:
    """proxmoxer's keyword arguments for these credentials, plus "principal" (who we are)."""
    if token:
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise StartupError("PROXMOX_TOKEN: write it as user@realm!tokenid=secret, e.g. wingman@pve!bot=<uuid>")
        if password:
            raise StartupError("PROXMOX_PASSWORD: set PROXMOX_TOKEN or PROXMOX_USER/PROXMOX_PASSWORD, not both")
        if user and user != match["user"]:
            raise StartupError(f"PROXMOX_USER: {show(user)} is not the user of PROXMOX_TOKEN ({match['user']})")
        return {
            "user": match["user"],
            "token_name": match["name"],
            "token_value": match["secret"],
            "principal": f"{match['user']}!{match['name']}",
        }
    if not user and not password:
        raise StartupError("PROXMOX_TOKEN: is not set; give an API token (or PROXMOX_USER and PROXMOX_PASSWORD)")
    if not user:
        raise StartupError("PROXMOX_USER: is not set, but PROXMOX_PASSWORD is")
    if not password:
        raise StartupError("PROXMOX_PASSWORD: is not set, but PROXMOX_USER is")
    if _USERID.fullmatch(user) is None:
        raise StartupError(f"PROXMOX_USER: {show(user)} is not a Proxmox user id; write user@realm, e.g. root@pam")
    return {"user": user, "password": password, "principal": user}


def verification(verify_ssl: bool, ca_bundle: str | Path | None) -> bool | str:
    """What requests' ``verify`` gets: the CA bundle's path, True, or False."""
    if ca_bundle is None or str(ca_bundle) == "":
        return bool(verify_ssl)
    if not verify_ssl:
        raise StartupError("PROXMOX_CA_BUNDLE: is set while PROXMOX_VERIFY_SSL is false; remove one of them")
    path = Path(ca_bundle)
    if not path.is_file():
        raise StartupError(f"PROXMOX_CA_BUNDLE: {path} is not a file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise StartupError(f"PROXMOX_CA_BUNDLE: {path} holds no usable PEM certificate ({cause(exc)})") from None
    return str(path)


def cause(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 error, on one line, without URLs."""
    text = str(exc)
    for pattern in (r"\[SSL[^\]]*\][^(')\"]*", r"\[Errno -?\d+\][^(')\"]*"):
        match = re.search(pattern, text)
        if match:
            return one_line(match.group(0), 160)
    if "Connection refused" in text:
        return "connection refused"
    return one_line(re.sub(r"https?://\S+", "", text), 160) or type(exc).__name__
