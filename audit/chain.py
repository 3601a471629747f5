"""The chain check itself: rows in, the first broken seq and why out. Pure and streaming.

``ChainVerifier`` holds only the next expected seq and the previous hash, so a chain of
any length is checked in constant memory, whether its rows come from the database or from
export files.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring  # type: ignore[attr-defined]

from audit.canonical import DOMAIN_TAG, GENESIS_HASH

_pack_seq = struct.Struct(">Q").pack
# The C string encoder that json.dumps(..., ensure_ascii=False) uses: the canonical rules.
_enc = encode_basestring


def _opt(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


class ChainVerifier:
    """Feed rows (in ``audit.schema.ROW_FIELDS`` order) oldest first; stops at the first break."""

    def __init__(
        self,
        *,
        next_seq: int = 1,
        prev_hash: str = GENESIS_HASH,
        checkpoints: Mapping[int, tuple[str, str]] | None = None,
    ) -> None:
        self.next_seq = next_seq
        self.prev_hash = prev_hash
        self.count = 0
        self.broken: tuple[int, str] | None = None
        # seq -> (entry_hash the signed checkpoint vouches for, its file name)
        self._checkpoints = checkpoints or {}

    def fail(self, seq: int, reason: str) -> tuple[int, str]:
        if self.broken is None:
            self.broken = (seq, reason)
        return self.broken

    def feed_one(self, row: tuple) -> tuple[int, str] | None:  # type: ignore[type-arg]
        return self.feed((row,))

    def feed(self, rows: Iterable[tuple]) -> tuple[int, str] | None:  # type: ignore[type-arg]
        """Check ``rows``; returns ``(seq, reason)`` at the first break, else ``None``."""
        if self.broken is not None:
            return self.broken
        expected, prev = self.next_seq, self.prev_hash
        try:
            prev_raw = bytes.fromhex(prev)
        except ValueError:
            return self.fail(expected, "the previous hash is not hex")
        base = hashlib.sha256(DOMAIN_TAG)
        checkpoints = self._checkpoints
        for seq, ts, actor, action, target, params, decision, outcome, request_id, prev_hash, entry_hash in rows:
            if seq != expected:
                self.next_seq, self.prev_hash = expected, prev
                if seq > expected:
                    missing = f"entry {expected} is" if seq == expected + 1 else f"entries {expected}..{seq - 1} are"
                    return self.fail(expected, f"{missing} missing (deleted)")
                return self.fail(seq, f"seq {seq} appears after seq {expected - 1} (reordered or duplicated)")
            if prev_hash != prev:
                self.next_seq, self.prev_hash = expected, prev
                if seq == 1:
                    return self.fail(seq, "prev_hash is not the genesis value (the chain's start was replaced)")
                return self.fail(seq, f"prev_hash does not match the entry_hash of seq {seq - 1} (inserted, removed or reordered)")
            try:
                # The entry object of audit.canonical, written out flat: this loop is the
                # whole cost of verifying a chain.
                text = (
                    f'{{"action":{_enc(action)},"actor":{_enc(actor)},"decision":{_enc(decision)},'
                    f'"outcome":{_opt(outcome)},"params":{params},"request_id":{_opt(request_id)},'
                    f'"target":{_opt(target)},"ts":{_enc(ts)}}}'
                )
                if type(params) is not str:
                    raise TypeError("params is not text")
                digest = base.copy()
                digest.update(_pack_seq(seq) + prev_raw + text.encode("utf-8"))
            except (TypeError, ValueError, UnicodeError, struct.error):
                self.next_seq, self.prev_hash = expected, prev
                return self.fail(seq, "the entry cannot be encoded (a column holds a value of the wrong kind)")
            prev_raw = digest.digest()
            computed = prev_raw.hex()
            if computed != entry_hash:
                self.next_seq, self.prev_hash = expected, prev
                return self.fail(seq, "entry_hash does not match the entry's contents (edited)")
            vouched = checkpoints.get(seq)
            if vouched is not None and vouched[0] != computed:
                self.next_seq, self.prev_hash = expected, prev
                return self.fail(seq, f"differs from the signed checkpoint {vouched[1]} (the chain was rewritten)")
            prev = computed
            expected += 1
            self.count += 1
        self.next_seq, self.prev_hash = expected, prev
        return None

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1
