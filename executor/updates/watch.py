"""Update checks as the executor runs them: on demand (the ``updates`` action) and scheduled.

:meth:`UpdateWatch.check` runs one check (:mod:`executor.updates.check`), stores what it
found (:mod:`executor.updates.store`) and returns the lot: what ``/updates`` shows.
:meth:`UpdateWatch.announce` is the scheduled check: it posts ONE outbox event of kind
``updates`` (payload as in :mod:`executor.protocol`) holding only the updates never
announced before, and marks them announced; a check that finds nothing new and no new
registry problem posts nothing. Each announcement is an audit entry
(``updates.announce``) naming the updates; the check itself is audited by whoever ran it
(the request, or the scheduler's run).
"""

from __future__ import annotations

from typing import Any

from audit import AuditStore
from executor.docker_driver import Visible
from executor.outbox import Outbox
from executor.updates.check import CheckReport, Update, UpdateCheck
from executor.updates.store import StoredUpdate, UpdateStore

EVENT_KIND = "updates"


class UpdateWatch:
    def __init__(self, check: UpdateCheck, store: UpdateStore, audit: AuditStore, outbox: Outbox) -> None:
        self.checker = check
        self.store = store
        self.audit = audit
        self.outbox = outbox
        self._last_problems: set[str] = set()  # whose problems the last announcement told

    async def check(self, visible: Visible, now: float) -> CheckReport:
        """Every update available now for the containers ``visible`` admits (stored as found)."""
        report = await self.checker.run(visible)
        await self.store.record(report.updates, report.watched, now, present=report.present)
        return report

    async def announce(self, visible: Visible, now: float) -> tuple[CheckReport, list[Update]]:
        """The scheduled check: post what was not announced before; (the whole report, what was announced)."""
        report = await self.checker.run(visible)
        stored = await self.store.record(report.updates, report.watched, now, present=report.present)
        new = [s.update for s in stored if s.announced_at is None]
        problem_sources = {line.partition(": ")[0] for line in report.problems}
        told_problems = bool(problem_sources - self._last_problems)
        self._last_problems = problem_sources
        if not new and not told_problems:
            return report, []
        payload = {"updates": [u.as_json() for u in new], "problems": list(report.problems), "checked": report.checked}
        await self.outbox.add(EVENT_KIND, payload, now=now)
        await self.store.mark_announced([u.id for u in new], now)
        await self.audit.append(
            actor="system", action="updates.announce", decision="done",
            outcome=f"announced {len(new)} updates" + (f"; {len(report.problems)} problems" if report.problems else ""),
            params={"updates": [_audited(u) for u in new], "problems": list(report.problems)},
        )  # fmt: skip
        return report, new

    async def get(self, update_id: str) -> StoredUpdate | None:
        return await self.store.get(update_id)

    async def pending(self, *, announced_before: float | None = None) -> list[StoredUpdate]:
        """Announced updates nobody has deployed yet (the weekly report recalls them)."""
        return await self.store.pending(announced_before=announced_before)


def _audited(update: Update) -> dict[str, Any]:
    return {"id": update.id, "target": update.target, "reference": update.reference}
