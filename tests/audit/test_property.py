"""Properties: any single change to any chain is found; hashes agree across backends and exports."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import AuditStore, export_older_than, load_signing_key, generate_key_pair, verify_chain
from audit.canonical import GENESIS_HASH, canonical_json, format_ts, hash_row
from audit.chain import ChainVerifier
from audit.schema import ROW_FIELDS
from tests.audit.helpers import Clock, read_rows

# Text columns may hold anything but NUL (PostgreSQL cannot store it); params may hold NUL.
column_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
entry = st.fixed_dictionaries(
    {
        "actor": column_text,
        "action": column_text,
        "decision": column_text,
        "target": st.none() | column_text,
        "params": st.dictionaries(st.text(max_size=8), json_value, max_size=4),
        "outcome": st.none() | column_text,
        "request_id": st.none() | column_text,
    }
)


def build(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS_HASH
    for seq, fields in enumerate(entries, start=1):
        row = {**fields, "seq": seq, "ts": format_ts(Clock().now), "params": canonical_json(fields["params"]), "prev_hash": prev}
        row["entry_hash"] = prev = hash_row(row)
        rows.append(row)
    return rows


def detected(rows: list[dict[str, Any]], head: tuple[int, str]) -> bool:
    verifier = ChainVerifier()
    if verifier.feed(tuple(row[f] for f in ROW_FIELDS) for row in rows) is not None:
        return True
    return (verifier.last_seq, verifier.prev_hash) != head


mutation = st.sampled_from(["edit", "delete", "swap", "duplicate", "genesis"])


@given(entries=st.lists(entry, min_size=2, max_size=12), kind=mutation, data=st.data())
@settings(max_examples=300, deadline=None)
def test_any_single_mutation_is_detected(entries: list[dict[str, Any]], kind: str, data: st.DataObject) -> None:
    rows = build(entries)
    head = (rows[-1]["seq"], rows[-1]["entry_hash"])
    original = [dict(row) for row in rows]
    assert not detected(rows, head)
    index = data.draw(st.integers(0, len(rows) - 1), label="row")
    if kind == "edit":
        field = data.draw(st.sampled_from([f for f in ROW_FIELDS if f != "seq"]), label="field")
        replacement = data.draw(column_text if field != "params" else st.just('{"x":1}'), label="value")
        rows[index][field] = replacement
    elif kind == "delete":
        del rows[index]
    elif kind == "swap":
        other = data.draw(st.integers(0, len(rows) - 1), label="other")
        rows[index], rows[other] = rows[other], rows[index]
    elif kind == "duplicate":
        rows.insert(index, dict(rows[index]))
    else:
        rows[0]["prev_hash"] = data.draw(st.text("0123456789abcdef", min_size=64, max_size=64), label="genesis")
    assert detected(rows, head) == (rows != original)


@given(entries=st.lists(entry, min_size=1, max_size=6))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hashes_agree_across_sqlite_postgresql_and_exports(entries: list[dict[str, Any]], pg_url: str, tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "audit.key"
    if not key_path.exists():
        generate_key_pair(key_path.parent, "audit")
    key = load_signing_key(key_path)
    trusted = {key.kid: key.public}
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"

    async def run() -> None:
        clock = Clock()
        lite, pg = await AuditStore.open(sqlite_url, clock=clock), await AuditStore.open(pg_url, clock=clock)
        try:
            written = []
            for fields in entries:
                a, b = await lite.append(**fields), await pg.append(**fields)
                assert (a.seq, a.entry_hash) == (b.seq, b.entry_hash)
                written.append((a.seq, a.entry_hash))
            for row in await read_rows(pg_url):
                assert hash_row(row) == row["entry_hash"]
            # Export everything from SQLite; verification re-reads it from the export files.
            clock.advance(days=2)
            await export_older_than(lite, tmp_path / "audit", key, clock.now - timedelta(days=1), clock.now, trusted)
            report = await verify_chain(lite, tmp_path / "audit", trusted)
            assert report.ok, report.summary()
            assert report.last_seq == (await pg.head()).seq
            assert (await lite.head()).entry_hash == (await pg.head()).entry_hash
        finally:
            await lite.close()
            await pg.close()

    asyncio.run(run())
