"""The canonical encoding of an audit entry and its hash: the definition the chain rests on.

Anyone can verify a Wingman audit chain with their own tool from this text alone;
``tests/audit/vectors.json`` holds entries with their expected hashes to check against.

Entry fields
    ``seq`` (int, 1, 2, 3, … gapless), ``ts`` (text, UTC, exactly
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``actor``, ``action``, ``decision`` (text),
    ``target``, ``outcome``, ``request_id`` (text or null), ``params`` (a JSON object).

Canonical JSON (of ``params`` and of the entry object)
    - objects: keys sorted by Unicode code point, written ``{"k":v,"k2":v2}`` with no white
      space; keys are strings;
    - arrays: ``[v,v2]``;
    - strings: ``"`` and ``\\`` escaped as ``\\"`` and ``\\\\``; U+0008, U+0009, U+000A,
      U+000C, U+000D as ``\\b \\t \\n \\f \\r``; every other code point below U+0020 as
      ``\\u00xx`` (lower-case hex); everything else literally, encoded as UTF-8 (no
      ``\\u`` escapes for non-ASCII; lone surrogates are not allowed);
    - integers: decimal digits with an optional ``-``, any size; booleans ``true``/``false``;
      ``null``;
    - floating-point numbers are NOT allowed (their text form differs between languages):
      pass such values as strings.

Entry object
    The canonical JSON object with exactly the keys ``action, actor, decision, outcome,
    params, request_id, target, ts`` (that is their sorted order).

Hash
    ``entry_hash = SHA-256( b"wingman-audit-v1\\x00" || seq as 8-byte big-endian unsigned ||
    prev_hash as 32 raw bytes || UTF-8 of the entry object )``, written as 64 lower-case hex
    digits. ``prev_hash`` of seq 1 is :data:`GENESIS_HASH` (64 zeros); of every later entry it
    is the ``entry_hash`` of the entry before it.

The database stores ``params`` as its canonical JSON text, so verifying a row needs no JSON
parsing: the entry object is assembled from the stored text as it is.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from audit.errors import AuditError

DOMAIN_TAG = b"wingman-audit-v1\x00"
GENESIS_HASH = "0" * 64
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_pack_seq = struct.Struct(">Q").pack
# json.dumps with these options writes exactly the string rules above.
_encode_str = json.JSONEncoder(ensure_ascii=False).encode


class CanonicalError(AuditError):
    """A value that has no canonical encoding (a float, a non-string key, a lone surrogate…)."""


def format_ts(moment: datetime) -> str:
    """The canonical text of a timestamp; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, TS_FORMAT).replace(tzinfo=timezone.utc)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (see the module docstring)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(encode_text(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        raise CanonicalError(f"floating-point value {value!r} in audit params: pass it as a string")
    elif isinstance(value, Mapping):
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise CanonicalError(f"audit params key {key!r} is not a string")
        out.append("{")
        for index, key in enumerate(sorted(keys)):
            if index:
                out.append(",")
            out.append(encode_text(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"audit params value of type {type(value).__name__} has no JSON form")


def encode_text(text: str) -> str:
    encoded = _encode_str(text)
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError("audit text contains a lone surrogate, which is not valid Unicode") from None
    return encoded


def _opt(text: str | None) -> str:
    return "null" if text is None else _encode_str(text)


def entry_object(
    *,
    ts: str,
    actor: str,
    action: str,
    target: str | None,
    params_json: str,
    decision: str,
    outcome: str | None,
    request_id: str | None,
) -> str:
    """The canonical entry object, assembled from already-canonical ``params_json``."""
    return (
        '{"action":' + _encode_str(action)
        + ',"actor":' + _encode_str(actor)
        + ',"decision":' + _encode_str(decision)
        + ',"outcome":' + _opt(outcome)
        + ',"params":' + params_json
        + ',"request_id":' + _opt(request_id)
        + ',"target":' + _opt(target)
        + ',"ts":' + _encode_str(ts)
        + "}"
    )


def chain_hash(seq: int, prev_hash: str, entry_text: str) -> str:
    """``entry_hash`` for an entry object text at ``seq`` after ``prev_hash``.

    Raises ``ValueError`` when ``prev_hash`` is not 64 hex digits or ``seq`` is out of range,
    and ``UnicodeEncodeError`` for text that is not valid Unicode; verification turns both
    into a broken-chain finding.
    """
    digest = hashlib.sha256(DOMAIN_TAG)
    digest.update(_pack_seq(seq))
    raw_prev = bytes.fromhex(prev_hash)
    if len(raw_prev) != 32:
        raise ValueError("prev_hash is not 32 bytes")
    digest.update(raw_prev)
    digest.update(entry_text.encode("utf-8"))
    return digest.hexdigest()


def hash_row(row: Mapping[str, Any] | Any) -> str:
    """The hash a stored row should carry; ``row`` has the entry fields by name."""
    text = entry_object(
        ts=row["ts"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        params_json=row["params"],
        decision=row["decision"],
        outcome=row["outcome"],
        request_id=row["request_id"],
    )
    return chain_hash(row["seq"], row["prev_hash"], text)
