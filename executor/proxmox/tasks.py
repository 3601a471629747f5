"""Proxmox tasks: start one (a POST answered by a task id, UPID) and wait for its end.

A task counts as a success only when it is ``stopped`` with exit status ``OK``; otherwise
:class:`TaskFailed` says the exit status and carries the last lines of the task log. A wait
survives a few failed polls (the task runs on in Proxmox whatever happens to the connection)
and reports progress while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from proxmoxer import ProxmoxAPI

from executor.errors import ActionError, ActionFailed, Unavailable
from executor.progress import Progress, emit
from executor.proxmox.connection import Connection
from executor.proxmox.values import VmStatus, one_line

log = logging.getLogger(__name__)

# A task id as Proxmox writes it: UPID:node:pid:pstart:starttime:type:id:user:
_UPID = re.compile(
    r"UPID:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8,}:[0-9A-Fa-f]{8,}:[0-9A-Fa-f]{8,}"
    r":[^:\s/?#%]+:[^:\s/?#%]*:[^:\s/?#%]+:"
)
LOG_PAGE = 500  # task log lines per request
LOG_PAGES_MAX = 20  # a task log longer than this is read only so far
MAX_POLL_ERRORS = 3  # consecutive failed task polls before the wait gives up



class TaskFailed(ActionFailed):
    """A Proxmox task ended without exit status OK, or did not end in time.

    ``exitstatus`` is Proxmox's (None when the task had not finished); ``last_logs`` holds
    the last lines of its task log (the executor passes them on to the chat).
    """

    def __init__(self, reason: str, *, upid: str, exitstatus: str | None, last_logs: Iterable[str] = ()) -> None:
        super().__init__(reason, last_logs=last_logs)
        self.upid = upid
        self.exitstatus = exitstatus


class Tasks:
    """Starts and waits for the tasks of one connection, polling every ``poll_interval``."""

    def __init__(self, connection: Connection, *, poll_interval: float, progress_interval: float, log_lines: int) -> None:
        self.connection = connection
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.log_lines = log_lines

    async def post(self, guest: VmStatus, what: str, segments: tuple[str, ...], **params: Any) -> str:
        """POST to /nodes/{node}/{kind}/{vmid}/<segments>; the task id it answers."""
        path = (guest.kind, str(guest.vmid), *segments)
        upid = await self.connection.run(what, lambda api: api.nodes(guest.node)(path).post(**params))
        if not isinstance(upid, str) or _UPID.fullmatch(upid) is None:
            raise ActionFailed(f"Proxmox answered {what} without a task id; check {guest.label} in Proxmox")
        return upid

    async def wait(self, guest: VmStatus, upid: str, what: str, timeout: float, progress: Progress) -> None:
        """Wait for task ``upid``: return when it stopped with "OK"; raise TaskFailed otherwise."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        next_report = started + self.progress_interval
        errors = 0
        details = {"vmid": guest.vmid, "node": guest.node, "upid": upid}
        await emit(progress, "waiting", {**details, "task": what, "seconds": 0})
        while True:
            try:
                state = await self.connection.run(
                    f"the status of task {upid}", lambda api: api.nodes(guest.node).tasks(upid).status.get()
                )
                errors = 0
            except Unavailable as exc:
                # The task runs on in Proxmox whatever happens to this connection.
                errors += 1
                if errors >= MAX_POLL_ERRORS or loop.time() >= deadline:
                    raise Unavailable(
                        f"lost track of {what} (task {upid}); it may still finish: {exc.reason}"
                    ) from None
                state = None
            if isinstance(state, dict) and state.get("status") == "stopped":
                exitstatus = state.get("exitstatus")
                if exitstatus == "OK":
                    await emit(
                        progress, "task-done", {**details, "task": what, "seconds": round(loop.time() - started, 1)}
                    )
                    return
                tail = await self.log_tail(guest, upid)
                said = one_line(str(exitstatus)) if exitstatus is not None else "no exit status"
                reason = f"{what} failed: Proxmox task ended with {said!r}"
                if tail:
                    reason += f"; last log line: {tail[-1]}"
                raise TaskFailed(
                    reason, upid=upid, exitstatus=str(exitstatus) if exitstatus is not None else None, last_logs=tail
                )
            now = loop.time()
            if now >= deadline:
                tail = await self.log_tail(guest, upid)
                raise TaskFailed(
                    f"{what} did not finish within {timeout:g} s; Proxmox task {upid} may still be running",
                    upid=upid,
                    exitstatus=None,
                    last_logs=tail,
                )
            if now >= next_report:
                next_report = now + self.progress_interval
                await emit(progress, "waiting", {**details, "task": what, "seconds": round(now - started, 1)})
            await asyncio.sleep(max(0.0, min(self.poll_interval, deadline - now)))

    async def log_tail(self, guest: VmStatus, upid: str) -> list[str]:
        """The last ``log_lines`` lines of a task's log; [] when it cannot be read."""

        def read(api: ProxmoxAPI) -> list[str]:
            tail: deque[str] = deque(maxlen=self.log_lines)
            start = 0
            for _ in range(LOG_PAGES_MAX):
                page = api.nodes(guest.node).tasks(upid).log.get(start=start, limit=LOG_PAGE)
                if not isinstance(page, list) or not page:
                    break
                lines = [e for e in page if isinstance(e, dict)]
                # Past the end Proxmox answers one line "no content".
                if start > 0 and len(lines) == 1 and lines[0].get("t") == "no content":
                    break
                tail.extend(one_line(str(e.get("t", ""))) for e in lines)
                if len(page) < LOG_PAGE:
                    break
                start += len(page)
            return list(tail)

        try:
            return await self.connection.run(f"the log of task {upid}", read)
        except ActionError as exc:
            log.warning("could not read the log of Proxmox task %s: %s", upid, exc.reason)
            return []
