"""A forwarding proxy in front of the test registry: it counts requests, and can step in.

The Docker engine (and anything else) talks to ``127.0.0.1:<proxy port>`` as if it were the
registry; every request is forwarded to the real registry (Debian's ``docker-registry``,
:mod:`tests.docker.registry`) and its answer passed back unchanged, byte for byte. What it
adds, for tests and the update-check benchmark:

- ``requests``: every request seen, as (method, path), so a test or a benchmark can count
  manifest, tag-list and blob requests without reading the registry's log;
- ``before``: an optional hook run before a request is forwarded; it may do something
  first (move a tag in the real registry) and may answer in the registry's place (return a
  response), which is how a test plays a registry that answers a digest with other bytes.

It runs on the caller's event loop (an aiohttp server); the engine reaches it over TCP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.docker.engine import free_port

Hook = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "host", "content-length"}


@dataclass
class RegistryProxy:
    upstream: str  # host:port of the real registry
    host: str = ""  # 127.0.0.1:<port> once started
    requests: list[tuple[str, str]] = field(default_factory=list)
    before: Hook | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> RegistryProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.host = f"127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def count(self, kind: str | None = None, method: str | None = None) -> int:
        """Requests seen of one kind (``manifests``, ``tags``, ``blobs``; None: all)."""
        return sum(
            1 for m, path in self.requests
            if (kind is None or f"/{kind}/" in path or path.endswith(f"/{kind}/list")) and (method is None or m == method)
        )  # fmt: skip

    async def upstream_get(self, path: str, accept: str) -> tuple[bytes, str]:
        """GET from the real registry directly (not counted): the body and its content type."""
        assert self._session is not None
        async with self._session.get(f"http://{self.upstream}{path}", headers={"Accept": accept}) as response:
            response.raise_for_status()
            return await response.read(), response.headers.get("Content-Type", "")

    async def upstream_put(self, path: str, body: bytes, content_type: str) -> None:
        """PUT to the real registry directly (not counted), e.g. a manifest under a tag: the tag moves."""
        assert self._session is not None
        async with self._session.put(f"http://{self.upstream}{path}", data=body, headers={"Content-Type": content_type}) as response:
            response.raise_for_status()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.before is not None:
            answered = await self.before(request)
            if answered is not None:
                return answered
        assert self._session is not None
        # A multidict: the engine sends one Accept header per manifest type it takes.
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
        body = await request.read()
        async with self._session.request(
            request.method, f"http://{self.upstream}{request.path_qs}", headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    # A redirect or upload location names the registry: point it at the proxy instead.
                    response.headers.add(key, value.replace(self.upstream, self.host) if key.lower() == "location" else value)
            if upstream.headers.get("Content-Length") is not None:
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(65536):
                    await response.write(chunk)
            await response.write_eof()
            return response
