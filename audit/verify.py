"""Verifying the whole audit trail: exports, then the database, against signed checkpoints.

The result says either that the chain is intact (with what was checked) or the first
broken seq and the reason. Problems that prevent checking at all (an unreadable database,
a checkpoint signed by a key we do not know) are raised as ``AuditError`` instead: the
caller cannot conclude anything from them.

Fail closed: when the audit key is known (``trusted`` is not empty), every entry older than
``UNCOVERED_LIMIT`` must be covered by a signed checkpoint or export; otherwise the report
is broken with ``no checkpoint covers seq A..B: truncation or rewrite cannot be ruled out``
(checkpoint files deleted along with a rewrite or truncation look exactly like this).
Witness lines (checkpoints kept off the host, see ``audit.checkpoints``) are checked as
checkpoints that were never on this host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import ChainVerifier
from audit.canonical import format_ts, parse_ts
from audit.checkpoints import STALE_LIMIT, UNCOVERED_LIMIT, Checkpoint, load_checkpoints
from audit.errors import Tampered
from audit.exports import export_rows, load_manifests
from audit.store import AuditStore


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    entries: int  # entries checked, exports and database together
    first_seq: int | None
    last_seq: int
    exported: int
    checkpoint: Checkpoint | None  # the newest one, which the chain reaches
    seconds: float
    broken_seq: int | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # intact, but something is overdue
    witnesses: int = 0  # witness lines the chain agrees with
    uncovered: tuple[int, int] | None = None  # seq A..B old enough but vouched for by nothing

    def summary(self) -> str:
        if self.uncovered is not None and self.reason is not None:
            return self.reason
        if not self.ok:
            return f"broken at seq {self.broken_seq}: {self.reason}"
        if self.entries == 0 and self.last_seq == 0:
            return "ok: the audit chain is empty"
        span = f"seq {self.first_seq}..{self.last_seq}" if self.first_seq is not None else f"head at seq {self.last_seq}"
        parts = [f"ok: {self.entries} entries ({span})"]
        if self.exported:
            parts.append(f"{self.exported} of them in exports")
        if self.checkpoint is not None:
            parts.append(f"newest checkpoint seq {self.checkpoint.seq} matches")
        if self.witnesses:
            parts.append(f"{self.witnesses} witness line{'s' if self.witnesses != 1 else ''} match")
        return ", ".join(parts) + f" [{self.seconds:.2f}s]"


async def verify_chain(
    store: AuditStore,
    export_path: Path | None,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    witnesses: Sequence[Checkpoint] = (),
    now: datetime | None = None,
) -> VerifyReport:
    """Check exports and database as one chain; see the module docstring."""
    started = time.monotonic()
    moment = now or datetime.now(timezone.utc)
    notes: list[str] = []
    warnings: list[str] = []
    checkpoints: list[Checkpoint] = []
    verifier = ChainVerifier()
    exported = 0
    exported_through = 0

    def report(broken: tuple[int, str] | None, newest: Checkpoint | None = None) -> VerifyReport:
        first = 1 if verifier.count else None
        seconds = time.monotonic() - started
        if broken is not None:
            return VerifyReport(False, verifier.count, first, verifier.last_seq, exported, None, seconds, *broken, notes)
        return VerifyReport(
            True, verifier.count, first, verifier.last_seq, exported, newest, seconds,
            notes=notes, warnings=warnings, witnesses=len(witnesses),
        )  # fmt: skip

    async with store.snapshot() as snapshot:
        head = snapshot.head
        try:
            if export_path is not None:
                checkpoints = load_checkpoints(export_path, trusted)
            for checkpoint in [*checkpoints, *witnesses]:
                if checkpoint.origin != head.origin:
                    raise Tampered(
                        checkpoint.seq,
                        f"checkpoint {checkpoint.name} belongs to chain {checkpoint.origin}, "
                        f"this database is {head.origin} (the database was replaced or rebuilt)",
                    )
            # A witness is the stronger evidence (it was never on this host): it wins a tie.
            vouched = {c.seq: (c.entry_hash, c.name) for c in [*checkpoints, *witnesses]}
            verifier = ChainVerifier(checkpoints=vouched)
            for manifest in load_manifests(export_path, trusted) if export_path is not None else []:
                if manifest.origin != head.origin:
                    raise Tampered(manifest.first_seq, f"{manifest.path.name} belongs to another chain ({manifest.origin})")
                if manifest.first_seq != verifier.next_seq or manifest.first_prev_hash != verifier.prev_hash:
                    raise Tampered(
                        verifier.next_seq,
                        f"{manifest.path.name} does not continue the chain at seq {verifier.next_seq} "
                        "(an export is missing or was replaced)",
                    )
                before = verifier.count
                for row in export_rows(manifest):
                    if verifier.feed_one(row) is not None:
                        return report(verifier.broken)
                if verifier.last_seq != manifest.last_seq or verifier.prev_hash != manifest.last_entry_hash:
                    raise Tampered(manifest.last_seq, f"{manifest.file} ends differently from its signed manifest")
                exported += verifier.count - before
                exported_through = manifest.last_seq
        except Tampered as exc:
            return report((exc.seq, exc.reason))

        # Rows already exported but not yet pruned (a crash in between) are the export's copy.
        async for batch in snapshot.batches(after_seq=verifier.last_seq):
            if verifier.feed(batch) is not None:
                return report(verifier.broken)
        # The newest entry old enough that a checkpoint should vouch for it by now.
        due_through = await snapshot.rows_before(format_ts(moment - UNCOVERED_LIMIT)) if trusted else None

    last = verifier.last_seq
    if head.seq != last or head.entry_hash != verifier.prev_hash:
        if head.seq > last:
            return report((last + 1, f"the chain ends at seq {last} but its head records seq {head.seq}: entries were deleted from the tail"))
        if head.seq < last:
            return report((head.seq + 1, f"entries after seq {head.seq} are not recorded in the chain head (inserted)"))
        return report((last, "the chain head records a different hash for the last entry (edited)"))
    newest = checkpoints[-1] if checkpoints else None
    furthest = max([*checkpoints, *witnesses], key=lambda c: c.seq, default=None)
    if furthest is not None and furthest.seq > last:
        return report(
            (last + 1, f"the chain ends at seq {last} but checkpoint {furthest.name} vouches for seq {furthest.seq}: entries were removed from the tail")
        )
    covered = max([exported_through, *(c.seq for c in [*checkpoints, *witnesses])])
    if due_through is not None and due_through > covered:
        # Old entries nothing signed vouches for: with the checkpoint files gone, a rewritten
        # or truncated chain looks exactly like this.
        first = covered + 1
        reason = f"no checkpoint covers seq {first}..{due_through}: truncation or rewrite cannot be ruled out"
        return replace(report((first, reason)), uncovered=(first, due_through))
    if newest is None and not witnesses and last:
        notes.append("no signed checkpoint yet: a deleted tail could not be noticed (run `wingman audit checkpoint`)")
    if not trusted:
        notes.append("the audit key's public half is not known here: checkpoints were not required (pass --key FILE)")
    elif newest is not None:
        try:
            age = moment - parse_ts(newest.time)
        except ValueError:
            age = STALE_LIMIT * 2  # signed, yet no time we can read: treat it as stale
        if age > STALE_LIMIT:
            hours = int(age.total_seconds() // 3600)
            warnings.append(
                f"the newest checkpoint ({newest.name}) is {hours} hours old; one is written at least daily: "
                "are the executor and its scheduler running?"
            )
    return report(None, newest)
