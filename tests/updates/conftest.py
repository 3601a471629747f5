"""Fixtures for the update checks: registry credentials files, and a registry answering 429."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.docker.engine import free_port
from tests.docker.registry import Registry


def write_config(path: Path, entries: dict[str, tuple[str, str]]) -> Path:
    """A Docker config.json with basic credentials ``{registry: (user, password)}``."""
    auths = {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()} for host, (user, password) in entries.items()}
    path.write_text(json.dumps({"auths": auths}))
    return path


class RateLimitingFront:
    """Our tiny server in front of a real registry: passes everything through until
    ``limited`` is set, then answers 429 (with ``ratelimit-remaining``) to all but ``/v2/``.

    Only the 429 is ours; every other answer is the real registry's. The Host header is
    passed on, so the registry's upload locations point back at this front.
    """

    def __init__(self, behind: Registry) -> None:
        self.behind = behind
        self.limited = False
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.limited and request.path != "/v2/":
            body = {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}]}
            return web.json_response(body, status=429, headers={"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"})
        assert self._session is not None
        # Every header as sent, repeated ones too: the engine sends one Accept per manifest type,
        # and a registry that sees only one may answer "manifest unknown".
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding"))
        async with self._session.request(
            request.method, f"http://{self.behind.host}{request.path_qs}", headers=headers, data=await request.read(),
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            dropped = ("transfer-encoding", "content-encoding") if request.method == "HEAD" else ("content-length", "transfer-encoding", "content-encoding")
            out = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
            # A HEAD's Content-Length is the registry's (the engine reads it); aiohttp keeps it when there is no body.
            return web.Response(status=answer.status, body=None if request.method == "HEAD" else body, headers=out)


@pytest.fixture
async def rate_limiting_front(registry: Registry) -> AsyncIterator[RateLimitingFront]:
    front = RateLimitingFront(registry)
    await front.start()
    yield front
    await front.stop()
