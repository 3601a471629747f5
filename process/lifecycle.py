"""Running long-lived parts until SIGTERM or SIGINT, then stopping them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Protocol


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(*services: Service, ready: Callable[[], None] | None = None) -> None:
    """Start ``services`` in order and run until a signal; then stop every one of them, last
    first, started or not (a failed start still releases what the others hold)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    async def start_all() -> None:
        for service in services:
            await service.start()
        if ready is not None:
            ready()

    async with contextlib.AsyncExitStack() as stack:
        for service in services:
            stack.push_async_callback(service.stop)
        # A signal during a slow start (Telegram unreachable, say) stops it too.
        starting = asyncio.ensure_future(start_all())
        signalled = asyncio.ensure_future(stopping.wait())
        try:
            done, _ = await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if starting in done:
                starting.result()  # a failed start raises here
                await signalled
        finally:
            starting.cancel()
            signalled.cancel()
            await asyncio.gather(starting, signalled, return_exceptions=True)
