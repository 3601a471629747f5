"""The executor's client: signs each request for one executor and sends it over that
executor's Unix socket (local, or forwarded by OpenSSH).

Used by the bot, the ``wingman`` command and the tests; see ``executor.protocol`` for what
travels. Each token's audience names the executor (``audience_for``): given its name, the
client signs for it; without one, it asks ``GET /v1/health`` once, before its first signed
request, and signs for the name the executor gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from audit.signing import SigningKey
from executor.protocol import (
    CONTENT_TYPE,
    HEALTH_PATH,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS_PER_UID,
    PATH,
    audience_for,
    executor_name_problem,
    make_token,
)

URL_BASE = "http://executor"  # the host is ignored on a Unix socket


@dataclass(frozen=True, slots=True)
class Reply:
    http_status: int
    status: str
    reason: str
    request_id: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


class ExecutorUnreachable(Exception):
    """The socket is missing or nobody answers on it; ``str()`` says which, in one line."""


class OutboxRefused(Exception):
    """The executor answered an ``outbox.*`` call with something other than ``done`` (a
    refused token, its database unavailable, …); ``status`` and ``reason`` are its words."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class ExecutorClient:
    """One executor's client. ``executor_name``: the executor the tokens are for; None
    learns it from the executor's health answer before the first signed request."""

    def __init__(
        self, socket_path: Path, key: SigningKey, *, executor_name: str | None = None, timeout: float = 60.0
    ) -> None:
        if executor_name is not None and (problem := executor_name_problem(executor_name)) is not None:
            raise ValueError(problem)
        self.socket_path = socket_path
        self.executor_name = executor_name
        self._key = key
        self._session = aiohttp.ClientSession(
            # Within the executor's limits: more connections would be closed on arrival, and an
            # idle one kept as long as the executor's idle timeout could be closed as it is reused.
            connector=aiohttp.UnixConnector(
                path=str(socket_path), limit=MAX_CONNECTIONS_PER_UID, keepalive_timeout=IDLE_TIMEOUT / 2
            ),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def hello(self) -> dict[str, Any]:
        """The executor's unsigned ``GET /v1/health`` answer (``status``, ``name``,
        ``version``, ``audit_seq``); raises ``ExecutorUnreachable`` when nobody answers
        or the answer is not the executor's."""
        try:
            async with self._session.get(URL_BASE + HEALTH_PATH) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise ExecutorUnreachable(f"the executor at {self.socket_path} is not answering ({exc})") from None
        except TimeoutError:
            raise ExecutorUnreachable(f"the executor at {self.socket_path} did not answer in time") from None
        if response.status != 200 or not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ExecutorUnreachable(
                f"what answers at {self.socket_path} is not a Wingman executor of this version (HTTP {response.status})"
            )
        return data

    async def audience(self) -> str:
        """The audience this client's tokens carry; asks the executor its name the first time
        when none was given."""
        if self.executor_name is None:
            name = str((await self.hello())["name"])
            if (problem := executor_name_problem(name)) is not None:
                raise ExecutorUnreachable(f"the executor at {self.socket_path} gave a bad name: {problem}")
            self.executor_name = name
        return audience_for(self.executor_name)

    async def send_token(self, token: str) -> Reply:
        """Send an already-made token (the tests use this to send bad ones)."""
        return await self.send_raw(token.encode("ascii"), CONTENT_TYPE)

    async def send_raw(self, body: bytes, content_type: str, path: str = PATH) -> Reply:
        try:
            async with self._session.post(URL_BASE + path, data=body, headers={"Content-Type": content_type}) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = {}
                if not isinstance(data, dict):
                    data = {}
                return Reply(
                    response.status,
                    str(data.get("status", "bad_response")),
                    str(data.get("reason", "")),
                    data.get("request_id"),
                    data.get("result") or {},
                )
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise ExecutorUnreachable(f"the executor at {self.socket_path} is not answering ({exc})") from None

    async def call(
        self,
        user_id: int | None,
        action: str,
        args: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        *,
        display_name: str | None = None,
    ) -> Reply:
        """Sign and send one request for ``user_id`` (None: the client itself); ``display_name``
        is how the user appeared in the chat (the ``display_name`` claim, display only)."""
        audience = await self.audience()
        token = make_token(
            self._key, audience=audience, user_id=user_id, action=action, args=args, chat=chat, display_name=display_name
        )
        return await self.send_token(token)

    async def poll(self, *, wait: float = 25.0, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """The notifications waiting (those with ids above ``after``); raises
        ``OutboxRefused`` when the executor says no."""
        args: dict[str, Any] = {"wait": wait, "limit": limit}
        if after:
            args["after"] = after
        reply = await self.call(None, "outbox.poll", args)
        if reply.status != "done":
            raise OutboxRefused(reply.status, reply.reason)
        return list(reply.result.get("notifications", []))

    async def ack(self, ids: list[int], posted: list[dict[str, int]] | None = None) -> int:
        """Confirm delivery; ``posted`` lists messages created: {id, chat_id, message_id}."""
        reply = await self.call(None, "outbox.ack", {"ids": ids, "posted": posted or []})
        if reply.status != "done":
            raise OutboxRefused(reply.status, reply.reason)
        return int(reply.result.get("acknowledged", 0))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> ExecutorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
