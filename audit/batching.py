"""Group commit: callers submit one item each; one writer task writes whatever has queued up
in a single transaction and answers every caller once that transaction has committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``await submit(item)`` returns ``write(batch)[i]`` for its item, or raises what
    ``translate(exc)`` makes of the batch's failure."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 512,
        translate: Callable[[Exception], BaseException] = lambda exc: exc,
        name: str = "group-commit",
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._translate = translate
        self._name = name
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        # A caller cancelled while waiting does not take its item back: it is written anyway
        # (the writer skips answering a cancelled future).
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # every waiter must hear of it
                failure = self._translate(exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
            else:
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
            for _ in batch:
                self._queue.task_done()

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
