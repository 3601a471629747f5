"""The canonical encoding and hash against the shipped test vectors and a second implementation."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import (
    GENESIS_HASH,
    CanonicalError,
    canonical_json,
    chain_hash,
    entry_object,
    format_ts,
)

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))
ENTRY_KEYS = ("action", "actor", "decision", "outcome", "params", "request_id", "target", "ts")


def independent_hash(seq: int, prev_hash: str, entry: dict) -> str:
    """The spec written again with the standard library only, as an outside verifier would."""
    obj = {key: entry[key] for key in ENTRY_KEYS}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    message = b"wingman-audit-v1\x00" + seq.to_bytes(8, "big") + bytes.fromhex(prev_hash) + text.encode("utf-8")
    return hashlib.sha256(message).hexdigest()


@pytest.mark.parametrize("vector", VECTORS["entries"], ids=lambda v: f"seq{v['seq']}")
def test_vectors_hash_as_published(vector: dict) -> None:
    params_json = canonical_json(vector["params"])
    assert params_json == vector["canonical_params"]
    text = entry_object(
        ts=vector["ts"],
        actor=vector["actor"],
        action=vector["action"],
        target=vector["target"],
        params_json=params_json,
        decision=vector["decision"],
        outcome=vector["outcome"],
        request_id=vector["request_id"],
    )
    assert text == vector["canonical_entry"]
    assert chain_hash(vector["seq"], vector["prev_hash"], text) == vector["entry_hash"]
    assert independent_hash(vector["seq"], vector["prev_hash"], vector) == vector["entry_hash"]


def test_vectors_form_a_chain_from_genesis() -> None:
    prev = VECTORS["genesis_prev_hash"]
    assert prev == GENESIS_HASH
    for seq, vector in enumerate(VECTORS["entries"], start=1):
        assert vector["seq"] == seq and vector["prev_hash"] == prev
        prev = vector["entry_hash"]


def test_timestamps_are_normalised_to_utc() -> None:
    moment = datetime(2026, 11, 22, 13, 20, 21, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_ts(moment) == "2026-11-22T07:50:21.000000Z"
    assert format_ts(datetime(2026, 11, 22, 7, 50, 21)) == "2026-11-22T07:50:21.000000Z"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"ratio": 0.5}, "floating-point"),
        ({1: "x"}, "not a string"),
        ({"x": object()}, "no JSON form"),
        ({"x": "\ud800"}, "lone surrogate"),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: object, problem: str) -> None:
    with pytest.raises(CanonicalError, match=problem):
        canonical_json(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_matches_sorted_compact_json_and_round_trips(value: object) -> None:
    text = canonical_json(value)
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(json.loads(text)) == text
