"""The executors the bot serves, by host name: one client each, asked one at a time or all
at once.

One bot may serve many executors (``WINGMAN_EXECUTORS``), each the only authority on its
own host. The fleet holds one :class:`ExecutorClient` per host and answers two questions
for the handlers: "ask this host" (:meth:`Fleet.call`) and "ask every host at once"
(:meth:`Fleet.each`), where a host that does not answer within a few seconds
(``HOST_TIMEOUT``) is reported as :class:`HostDown` and never delays the others. The fleet
remembers since when each host has not answered, which ``/status`` and ``/hosts`` show.

With one executor (``WINGMAN_EXECUTORS`` unset) the fleet has one host named ``None``: its
name is the executor's own (learned from its health answer) and the chat never shows it.
The fleet decides nothing: which host a name lives on is what the hosts say (see
``bot.targets``), and each host's policy is its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

from audit.signing import SigningKey
from executor.client import ExecutorClient, ExecutorUnreachable, Reply

log = logging.getLogger("wingman.bot")

HOST_TIMEOUT = 4.0  # a host that takes longer in a fan-out is shown as not answering
GONE_HOST = "This button is for an executor this bot no longer serves."
REQUEST_TIMEOUT = 60.0  # one host's action (a deploy waits for its health gate in the background)
T = TypeVar("T")
Clock = Callable[[], float]


@dataclass(slots=True)
class Host:
    """One executor: its name (``None``: the only one, named by itself) and its client."""

    name: str | None
    client: ExecutorClient
    down_since: float | None = None  # when it first failed to answer, since it last did
    own_name: str | None = None  # what the executor calls itself (its health answer)
    version: str | None = None

    @property
    def label(self) -> str:
        """The name the chat shows."""
        learned = getattr(self.client, "executor_name", None)  # the client learns it before its first request
        return self.name or self.own_name or learned or "executor"


@dataclass(frozen=True, slots=True)
class HostDown:
    """A host that did not answer: since when (epoch seconds), and why in one line."""

    since: float
    reason: str

    @property
    def line(self) -> str:
        """``not answering (since 14:02 UTC)``."""
        return f"not answering (since {since_text(self.since)})"


def since_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M UTC")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """One host's part of a fan-out: what it answered, or that it did not."""

    host: Host
    value: T | None = None
    down: HostDown | None = None


def _client(path: Path, key: SigningKey, name: str | None, timeout: float) -> ExecutorClient:
    """A client whose tokens are for the executor called ``name`` (None: the one it learns)."""
    named: dict[str, Any] = {"executor_name": name} if name is not None else {}
    return ExecutorClient(path, key, timeout=timeout, **named)


class Fleet:
    """The hosts by name; see the module docstring."""

    def __init__(
        self,
        clients: Mapping[str | None, ExecutorClient],
        *,
        host_timeout: float = HOST_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        clock: Clock = time.time,
    ) -> None:
        if not clients:
            raise ValueError("a fleet needs at least one executor")
        self.host_timeout = host_timeout
        self.request_timeout = request_timeout
        self._clock = clock
        self._hosts: dict[str | None, Host] = {name: Host(name, client) for name, client in clients.items()}

    @classmethod
    def connect(cls, sockets: Mapping[str | None, Path], key: SigningKey, *, request_timeout: float = REQUEST_TIMEOUT, **kwargs: Any) -> Fleet:
        """A client per socket (``BotSettings.executor_sockets()``), signing with ``key``."""
        clients = {name: _client(path, key, name, request_timeout) for name, path in sockets.items()}
        return cls(clients, request_timeout=request_timeout, **kwargs)

    @property
    def hosts(self) -> list[Host]:
        """In the order they were configured."""
        return list(self._hosts.values())

    @property
    def many(self) -> bool:
        """Whether the chat names hosts (more than one executor is configured)."""
        return len(self._hosts) > 1

    @property
    def names(self) -> list[str]:
        return [host.name for host in self._hosts.values() if host.name is not None]

    def get(self, name: str) -> Host | None:
        """The host called ``name`` (the only host answers to its own name too)."""
        host = self._hosts.get(name)
        if host is None and not self.many:
            only = self.hosts[0]
            if only.label == name:
                return only
        return host

    def of_button(self, name: str) -> Host | None:
        """The host a button's data names (empty: a button from a single-host bot, which is
        the only host's); None when this bot no longer serves it (say :data:`GONE_HOST`)."""
        return self.get(name) if name else self.only

    @property
    def only(self) -> Host | None:
        """The host, when there is exactly one."""
        return None if self.many else self.hosts[0]

    def answered(self, host: Host) -> None:
        if host.down_since is not None:
            log.info("executor %s answers again", host.label)
        host.down_since = None

    def not_answering(self, host: Host, reason: str) -> HostDown:
        if host.down_since is None:
            host.down_since = self._clock()
            log.warning("executor %s is not answering: %s", host.label, reason)
        return HostDown(host.down_since, reason)

    async def call(
        self,
        host: Host,
        user_id: int | None,
        action: str,
        args: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        *,
        display_name: str | None = None,
    ) -> Reply:
        """One signed request to ``host``; ``ExecutorUnreachable`` when nobody answers.
        ``display_name``: how the user appears in the chat (the request's display name)."""
        try:
            reply = await host.client.call(user_id, action, args, chat, display_name=display_name)
        except ExecutorUnreachable as exc:
            self.not_answering(host, str(exc))
            raise
        self.answered(host)
        return reply

    async def hello(self, host: Host) -> dict[str, Any]:
        """``host``'s health answer (its own name, its version), unsigned; raises
        ``ExecutorUnreachable`` when nobody answers. Use it through :meth:`each`."""
        health = await host.client.hello()
        host.own_name = str(health.get("name") or "") or host.own_name
        host.version = str(health.get("version") or "") or host.version
        return health

    async def each(
        self, ask: Callable[[Host], Awaitable[T]], hosts: list[Host] | None = None, *, timeout: float | None = None
    ) -> list[Answer[T]]:
        """``ask`` every host at once; each gets ``timeout`` (default ``host_timeout``)
        seconds. In host order."""
        limit = timeout if timeout is not None else self.host_timeout

        async def one(host: Host) -> Answer[T]:
            try:
                value = await asyncio.wait_for(ask(host), limit)
            except asyncio.TimeoutError:
                return Answer(host, down=self.not_answering(host, f"no answer within {limit:g} s"))
            except ExecutorUnreachable as exc:
                return Answer(host, down=self.not_answering(host, str(exc)))
            except Exception as exc:  # one host's bug must not cost the others their answer
                log.exception("asking executor %s failed", host.label)
                return Answer(host, down=HostDown(self._clock(), f"unexpected {type(exc).__name__}"))
            self.answered(host)
            return Answer(host, value=value)

        return list(await asyncio.gather(*(one(host) for host in (hosts if hosts is not None else self.hosts))))

    async def call_each(
        self,
        user_id: int | None,
        action: str,
        args: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        display_name: str | None = None,
    ) -> list[Answer[Reply]]:
        """The same request, signed for each host, to every host at once."""
        return await self.each(
            lambda host: host.client.call(user_id, action, args, chat, display_name=display_name), timeout=timeout
        )

    async def close(self) -> None:
        for host in self.hosts:
            await host.client.close()
