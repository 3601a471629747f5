"""A small Registry HTTP API v2 client: tag lists, rate-limit headers and image dates.

What the update check asks a registry itself (the digest of a container's tag is asked
through the engine, ``inspect_distribution``): the repository's tags
(``GET /v2/<name>/tags/list``, following ``Link: rel="next"`` pages), and for an update
found, the new image's creation time (its manifest, then its config blob).

Why our own client on aiohttp rather than a library: the Python registry clients are
synchronous (``requests``) and mostly unmaintained, or pull in a whole OCI toolkit for
three GET requests; aiohttp is already the executor's HTTP stack, runs on its event loop,
and leaves what is security-critical to well-kept code: TLS verification is the
``ssl`` module's (system CAs plus the engine's ``/etc/docker/certs.d/<host:port>/*.crt``,
and a ``client.cert``/``client.key`` pair there, as the engine uses them), the
challenge header is split by ``urllib.request.parse_http_list``, links by aiohttp. What
remains ours is the token flow of the distribution spec: a ``401`` with
``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` is answered by asking the realm
for a token (with the registry's basic credentials, or an identity token as a
``refresh_token`` grant), ``Basic`` by sending the credentials directly.

Credentials are sent only over TLS, or to a registry on this host's loopback that
speaks plain HTTP (as the engine, which trusts 127.0.0.0/8 without TLS). Plain HTTP is
tried only for such a registry, after HTTPS failed.

Every failure is a :class:`RegistryProblem` whose ``str()`` is one line naming the
registry and never a secret: credentials refused, rate-limited (with the
``ratelimit-remaining`` header when sent), unreachable, not found, or an answer that
makes no sense.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from executor.docker_driver import parse_docker_time
from executor.updates.credentials import Credential, RegistryCredentials

log = logging.getLogger(__name__)

CERTS_DIR = Path("/etc/docker/certs.d")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
PAGE_SIZE = 1000
MAX_PAGES = 20
MAX_BODY = 8 * 1024 * 1024  # a tag list of tens of thousands of tags still fits
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

# What went wrong, as the check's message groups it.
AUTH, RATE_LIMITED, UNREACHABLE, NOT_FOUND, BAD_ANSWER = "auth", "rate_limited", "unreachable", "not_found", "bad_answer"


class RegistryProblem(Exception):
    """One registry could not answer; ``str()`` is ``<registry>: <one line>``, no secret in it."""

    def __init__(self, registry: str, kind: str, reason: str, remaining: str | None = None) -> None:
        super().__init__(f"{registry}: {reason}")
        self.registry = registry
        self.kind = kind
        self.reason = reason
        self.remaining = remaining  # ratelimit-remaining, when a 429 sent it


def registry_of(repository: str) -> tuple[str, str]:
    """(registry, path) of a fully qualified repository: ``("127.0.0.1:5000", "team/app")``."""
    host, _, path = repository.partition("/")
    return host, path


def is_loopback(registry: str) -> bool:
    """Whether ``host[:port]`` is this machine (the engine trusts those without TLS too)."""
    host = urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(registry: str, certs_dir: Path = CERTS_DIR) -> ssl.SSLContext:
    """Verification by the system's CAs plus the engine's for ``registry`` (``certs.d/<host:port>``)."""
    context = ssl.create_default_context()
    folder = certs_dir / registry
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        if entry.suffix == ".crt":
            context.load_verify_locations(cafile=str(entry))
        elif entry.suffix == ".cert" and entry.with_suffix(".key").is_file():
            context.load_cert_chain(str(entry), str(entry.with_suffix(".key")))
    return context


@dataclass(slots=True)
class _Endpoint:
    base: str  # https://host:port or http://host:port
    ssl: ssl.SSLContext | bool


class RegistryClient:
    """Asks registries for tag lists and image dates; use ``async with``, one per check.

    ``requests`` counts the HTTP requests made (the benchmark reports it). Tokens are
    kept for the client's life only: the next check asks again with the credentials the
    file holds then.
    """

    def __init__(
        self,
        credentials: RegistryCredentials,
        *,
        certs_dir: Path = CERTS_DIR,
        timeout: float = 20.0,
    ) -> None:
        self.credentials = credentials
        self.certs_dir = certs_dir
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.requests = 0
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: dict[str, _Endpoint] = {}
        self._tokens: dict[tuple[str, str], str] = {}  # (registry, scope) -> Authorization value

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No cookies, no proxies from the environment: only what this module sends.
            self._session = aiohttp.ClientSession(timeout=self.timeout, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    # -- what the check asks -----------------------------------------------------------------

    async def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (fully qualified, e.g. ``docker.io/library/nginx``)."""
        registry, path = registry_of(repository)
        url: str | None = f"/v2/{path}/tags/list?n={PAGE_SIZE}"
        found: list[str] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            body, headers, links = await self._get(registry, path, url)
            try:
                listed = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryProblem(registry, BAD_ANSWER, f"the tag list of {path} is not JSON") from None
            found.extend(t for t in listed if isinstance(t, str))
            following = links.get("next")
            url = str(following.get("url")) if following else None
        return found

    async def created(self, repository: str, digest: str, platform: tuple[str, str] = ("linux", "amd64")) -> float | None:
        """When the image ``repository@digest`` was built (seconds since the epoch); None when it cannot tell."""
        registry, path = registry_of(repository)
        try:
            manifest = await self._json(registry, path, f"/v2/{path}/manifests/{digest}")
            if isinstance(manifest.get("manifests"), list):  # an index: this engine's platform, else the first
                entries = [m for m in manifest["manifests"] if isinstance(m, dict)]
                chosen = next(
                    (m for m in entries if (m.get("platform") or {}).get("os") == platform[0]
                     and (m.get("platform") or {}).get("architecture") == platform[1]),
                    entries[0] if entries else None,
                )  # fmt: skip
                if chosen is None:
                    return None
                manifest = await self._json(registry, path, f"/v2/{path}/manifests/{chosen['digest']}")
            config_digest = (manifest.get("config") or {}).get("digest")
            if not isinstance(config_digest, str):
                return None
            config = await self._json(registry, path, f"/v2/{path}/blobs/{config_digest}")
        except (RegistryProblem, KeyError, TypeError, AttributeError):
            return None
        when = parse_docker_time(config.get("created") if isinstance(config, dict) else None)
        return when.timestamp() if when is not None else None

    async def rate_limit(self, repository: str, tag: str) -> str | None:
        """The registry's ``ratelimit-remaining`` for ``repository`` (a HEAD of the manifest,
        which Docker Hub does not count as a pull); None when it sends none."""
        registry, path = registry_of(repository)
        try:
            _, headers, _ = await self._get(registry, path, f"/v2/{path}/manifests/{tag}", method="HEAD")
        except RegistryProblem as problem:
            return problem.remaining
        return _remaining(headers)

    # -- the HTTP and its token flow ---------------------------------------------------------

    async def _json(self, registry: str, path: str, url: str) -> dict[str, Any]:
        body, _, _ = await self._get(registry, path, url, accept=MANIFEST_TYPES)
        try:
            value = json.loads(body)
        except ValueError:
            raise RegistryProblem(registry, BAD_ANSWER, "answered something that is not JSON") from None
        return value if isinstance(value, dict) else {}

    async def _endpoint(self, registry: str) -> _Endpoint:
        known = self._endpoints.get(registry)
        if known is not None:
            return known
        host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        context = await asyncio.to_thread(tls_context, registry, self.certs_dir)  # reads files
        endpoint = _Endpoint(f"https://{host}", context)
        self._endpoints[registry] = endpoint
        return endpoint

    async def _get(
        self, registry: str, path: str, url: str, *, method: str = "GET", accept: str | None = None
    ) -> tuple[bytes, Mapping[str, str], Mapping[str, Any]]:
        """One request, with the registry's token when it asks for one; (body, headers, links)."""
        scope = f"repository:{path}:pull"
        for attempt in range(2):
            endpoint = await self._endpoint(registry)
            headers = {"Accept": accept} if accept else {}
            authorization = self._tokens.get((registry, scope))
            if authorization:
                headers["Authorization"] = authorization
            status, answer, body, links = await self._send(registry, endpoint, method, urljoin(endpoint.base, url), headers)
            if status == 401 and attempt == 0:
                await self._authorize(registry, endpoint, scope, answer.get("WWW-Authenticate", ""))
                continue
            _raise_for(registry, status, answer, path, authorization is not None)
            return body, answer, links
        raise RegistryProblem(registry, AUTH, "refused the credentials")  # pragma: no cover - the loop returns or raises

    async def _send(
        self, registry: str, endpoint: _Endpoint, method: str, url: str, headers: dict[str, str], data: Any = None
    ) -> tuple[int, Mapping[str, str], bytes, Mapping[str, Any]]:
        self.requests += 1
        try:
            async with self._http().request(method, url, headers=headers, data=data, ssl=endpoint.ssl) as response:
                body = await response.content.read(MAX_BODY) if method != "HEAD" else b""
                return response.status, response.headers, body, response.links
        except aiohttp.ClientConnectorCertificateError as exc:
            raise RegistryProblem(
                registry, UNREACHABLE,
                f"its TLS certificate is not trusted ({_short(exc.certificate_error)}); put its CA in {self.certs_dir}/{registry}/ca.crt",
            ) from None  # fmt: skip
        except aiohttp.ClientSSLError as exc:
            if endpoint.base.startswith("https://") and is_loopback(registry) and url.startswith(endpoint.base):
                # A registry on this host may speak plain HTTP (the engine allows it there too).
                plain = _Endpoint(endpoint.base.replace("https://", "http://", 1), False)
                self._endpoints[registry] = plain
                return await self._send(registry, plain, method, plain.base + url[len(endpoint.base):], headers, data)
            raise RegistryProblem(registry, UNREACHABLE, f"TLS failed: {_short(exc)}") from None
        except aiohttp.ClientConnectorError as exc:
            failure = exc.os_error
            why = os.strerror(failure.errno) if failure.errno else _short(failure)
            raise RegistryProblem(registry, UNREACHABLE, f"cannot be reached ({why})") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = "did not answer in time" if isinstance(exc, asyncio.TimeoutError) else f"cannot be reached ({_short(exc)})"
            raise RegistryProblem(registry, UNREACHABLE, reason) from None

    async def _authorize(self, registry: str, endpoint: _Endpoint, scope: str, challenge: str) -> None:
        """Answer a 401's challenge: keep the Authorization value for ``(registry, scope)``."""
        scheme, _, rest = challenge.strip().partition(" ")
        params = _challenge_params(rest)
        credential = self.credentials.for_registry(registry)
        if scheme.lower() == "basic":
            if credential is None or not credential.username:
                raise RegistryProblem(registry, AUTH, f"asks for credentials and {self._file()} has none for it")
            self._tokens[(registry, scope)] = aiohttp.encode_basic_auth(credential.username, credential.password or "")
            return
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise RegistryProblem(registry, AUTH, "asks for an authentication it does not name (no Bearer realm)")
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryProblem(registry, BAD_ANSWER, "names a token service that is not an http(s) URL")
        secure = parts.scheme == "https" or is_loopback(parts.netloc)
        token_endpoint = endpoint if parts.netloc == urlsplit(endpoint.base).netloc else await self._endpoint(parts.netloc)
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        headers: dict[str, str] = {}
        data: dict[str, str] | None = None
        method = "GET"
        if credential is not None and not secure:
            raise RegistryProblem(registry, AUTH, "its token service is not https; credentials are not sent there")
        if credential is not None and credential.identity_token:
            method, data = "POST", {**query, "grant_type": "refresh_token", "client_id": "wingman", "refresh_token": credential.identity_token}
        elif credential is not None and credential.username:
            headers["Authorization"] = aiohttp.encode_basic_auth(credential.username, credential.password or "")
        url = realm if data is not None else f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        status, answer, body, _ = await self._send(registry, token_endpoint, method, url, headers, data)
        if status in (401, 403):
            raise RegistryProblem(registry, AUTH, "refused the credentials" if credential else f"asks for credentials and {self._file()} has none for it")
        _raise_for(registry, status, answer, "", False)
        try:
            issued = json.loads(body)
            token = issued.get("token") or issued.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryProblem(registry, BAD_ANSWER, "its token service gave no token")
        self._tokens[(registry, scope)] = f"Bearer {token}"

    def _file(self) -> str:
        return f"WINGMAN_REGISTRY_AUTH ({self.credentials.path})"


def _challenge_params(text: str) -> dict[str, str]:
    """``realm="…",service="…"`` as a dict (the standard library's list and key=value parsers)."""
    try:
        return {k.lower(): v for k, v in urllib.request.parse_keqv_list(urllib.request.parse_http_list(text)).items()}
    except ValueError:
        return {}


def _remaining(headers: Mapping[str, str]) -> str | None:
    value = headers.get("ratelimit-remaining") or headers.get("RateLimit-Remaining")
    if not value:
        return None
    return "".join(ch for ch in value if ch.isprintable())[:40]


def _raise_for(registry: str, status: int, headers: Mapping[str, str], path: str, had_credentials: bool) -> None:
    if 200 <= status < 300:
        return
    if status in (401, 403):
        reason = "refused the credentials" if had_credentials else "refused access"
        raise RegistryProblem(registry, AUTH, f"{reason}{f' to {path}' if path else ''} (HTTP {status})")
    if status == 429:
        remaining = _remaining(headers)
        raise RegistryProblem(
            registry, RATE_LIMITED,
            "rate-limited the check (HTTP 429)" + (f"; ratelimit-remaining: {remaining}" if remaining else ""),
            remaining,
        )  # fmt: skip
    if status == 404:
        raise RegistryProblem(registry, NOT_FOUND, f"has no repository {path}" if path else "answered 404")
    raise RegistryProblem(registry, BAD_ANSWER, f"answered HTTP {status}")


def _short(exc: object) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
