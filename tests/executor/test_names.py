"""Display names: the ``name`` claim's rules, names kept beside ids, the id audited alone,
and ``audit`` read a page at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from bot.people import Names, display_name
from executor.protocol import NAME_RULE, make_token, valid_name
from executor.schema import approvals
from tests.harness import ADMIN, APPROVER, AUDIENCE, OPERATOR, Harness


@pytest.fixture
async def harness(make_harness: Callable[..., Awaitable[Harness]], db_url: str) -> Harness:
    """On SQLite and on PostgreSQL: names are kept with a write only when they change."""
    return await make_harness(container_allowlist=["web"], db_url=db_url)


@pytest.mark.parametrize(("name", "ok"), [
    ("@alice_01", True), ("Alice", True), ("Zoë 🚀 <b>x</b>", True), ("x" * 64, True),
    ("x" * 65, False), ("", False), ("   ", False), ("@bob", False), ("@bob smith", False), ("@" + "a" * 33, False),
    ("Eve\u202egnp.exe", False), ("zero\u200dwidth", False), ("line\nbreak", False), ("nul\x00", False), (42, False),
])  # fmt: skip
def test_the_name_claim_admits(name: object, ok: bool) -> None:
    assert valid_name(name) is ok


@pytest.mark.parametrize(("user", "shown"), [
    (SimpleNamespace(username="alice_01", first_name="Alice"), "@alice_01"),
    (SimpleNamespace(username=None, first_name="Alice"), "Alice"),
    (SimpleNamespace(username=None, first_name="@bob_admin"), "bob_admin"),  # a first name never passes for a username
    (SimpleNamespace(username=None, first_name="Eve\u202e gnp"), "Eve gnp"),
    (SimpleNamespace(username=None, first_name="y" * 80), "y" * 63 + "…"),
    (SimpleNamespace(username=None, first_name="\u200d"), None),
])  # fmt: skip
def test_the_bot_makes_a_name_the_claim_admits(user: object, shown: str | None) -> None:
    assert display_name(user) == shown
    assert shown is None or valid_name(shown)


def test_people_shown_alike_get_their_ids() -> None:
    names = Names({"tg:1": "Sam", "tg:2": "sam", "tg:3": "@alice", "tg:4": "tg:1", "tg:5": "<b>x</b>"})
    assert names.show("tg:1") == "Sam (<code>tg:1</code>)"
    assert names.show("tg:2") == "sam (<code>tg:2</code>)"
    assert names.show("tg:3") == "@alice"
    assert names.show("tg:4") == "tg:1 (<code>tg:4</code>)"  # a name that reads like an id
    assert names.show("tg:5") == "&lt;b&gt;x&lt;/b&gt;"
    assert names.show("tg:6") == "<code>tg:6</code>"


@pytest.mark.parametrize("name", ["x" * 65, "@no", "Eve\u202egnp"])
async def test_a_bad_name_is_refused_with_one_line_and_audited(harness: Harness, name: str) -> None:
    reply = await harness.client().send_token(make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami", display_name=name))
    assert (reply.http_status, reply.status, reply.reason) == (400, "bad_request", NAME_RULE)
    [entry] = [e for e in await harness.executor.audit.tail(5) if e.request_id == reply.request_id]
    assert (entry.actor, entry.decision, entry.outcome) == ("unverified", "bad_request", NAME_RULE)


async def test_names_are_kept_beside_ids_and_the_audit_records_ids(harness: Harness) -> None:
    client = harness.client()
    asked = await client.call(OPERATOR, "stop", {"target": "web"}, {"chat_id": -1}, display_name="<b>Olga</b>")
    assert asked.status == "pending"
    approval_id = asked.result["approval"]["id"]
    assert asked.result["approval"]["names"] == {f"tg:{OPERATOR}": "<b>Olga</b>"}
    voted = await client.call(APPROVER, "approval.reject", {"id": approval_id}, display_name="@anna_ops")
    assert voted.result["approval"]["names"] == {f"tg:{OPERATOR}": "<b>Olga</b>", f"tg:{APPROVER}": "@anna_ops"}
    entries = [e for e in await harness.executor.audit.tail(10) if e.actor != "system"]  # the start-up's own
    assert {e.actor for e in entries} == {f"tg:{OPERATOR}", f"tg:{APPROVER}"}
    assert not any("Olga" in str(e.params) or "anna" in str(e.params) for e in entries)
    # The names last seen show the trail by name; a renamed person shows their new name.
    await client.call(APPROVER, "whoami", display_name="Anna")
    page = await client.call(ADMIN, "audit", {"n": 5}, display_name="@root_admin")
    assert page.result["names"] == {f"tg:{OPERATOR}": "<b>Olga</b>", f"tg:{APPROVER}": "Anna"}


async def test_the_requesters_name_is_bound_to_the_approval(harness: Harness) -> None:
    client = harness.client()
    asked = await client.call(OPERATOR, "stop", {"target": "web"}, display_name="Olga")
    approval_id = asked.result["approval"]["id"]
    async with harness.executor.approvals.engine.begin() as conn:
        await conn.execute(update(approvals).where(approvals.c.id == approval_id).values(requester_name="@root_admin"))
    changed = await harness.executor.approvals.get(approval_id)
    assert changed is not None and not changed.intact
    tapped = await client.call(APPROVER, "approval.approve", {"id": approval_id})
    assert tapped.status == "denied" and "does not match its signature" in tapped.reason


async def test_an_approval_without_names_still_verifies(harness: Harness) -> None:
    """Rows from before names were kept have none: their binding is unchanged."""
    asked = await harness.client().call(OPERATOR, "stop", {"target": "web"})
    approval = await harness.executor.approvals.get(asked.result["approval"]["id"])
    assert approval is not None and approval.intact and approval.names == {}


async def test_audit_pages_older_and_newer(harness: Harness) -> None:
    client = harness.client()
    for _ in range(6):
        await client.call(ADMIN, "whoami")
    newest = await client.call(APPROVER, "audit", {"n": 3})
    seqs = [e["seq"] for e in newest.result["entries"]]
    assert len(seqs) == 3 and seqs == sorted(seqs)
    assert (newest.result["older"], newest.result["newer"]) == (True, False)
    older = await client.call(APPROVER, "audit", {"n": 3, "before": seqs[0]})
    assert [e["seq"] for e in older.result["entries"]] == [seqs[0] - 3, seqs[0] - 2, seqs[0] - 1]
    assert older.result["newer"] is True
    back = await client.call(APPROVER, "audit", {"n": 3, "after": seqs[0] - 1})
    assert [e["seq"] for e in back.result["entries"]] == seqs
    oldest = await client.call(APPROVER, "audit", {"n": 3, "before": 2})
    assert [e["seq"] for e in oldest.result["entries"]] == [1] and oldest.result["older"] is False
    both = await client.call(APPROVER, "audit", {"before": 5, "after": 1})
    assert both.reason == "give before or after, not both"
    bad = await client.call(APPROVER, "audit", {"before": "5"})
    assert "before must be an entry's number" in bad.reason
