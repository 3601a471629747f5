"""Registry credentials from a Docker config.json, and the updates table on both backends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from executor.updates import RegistryCredentials, Update, UpdateStore
from tests.harness import STRANGER, VIEWER, Harness
from tests.stores import open_deployment_store

SECRET = "pa55-Not-For-Logs"


def test_basic_auth_and_identity_tokens_are_read_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    auth = base64.b64encode(f"deployer:{SECRET}".encode()).decode()
    path.write_text(json.dumps({"auths": {"registry.example:5000": {"auth": auth}, "ghcr.io": {"identitytoken": SECRET}}}))
    found = RegistryCredentials.load(path)
    assert found.problem is None
    basic = found.for_registry("registry.example:5000")
    token = found.for_registry("ghcr.io")
    assert basic is not None and (basic.username, basic.password) == ("deployer", SECRET)
    assert token is not None and token.identity_token == SECRET and token.engine_auth() == {"identitytoken": SECRET}
    assert found.for_registry("other.example") is None
    for shown in (repr(found), repr(basic), repr(token), str(basic)):
        assert SECRET not in shown


def test_a_missing_file_is_no_credentials_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    assert RegistryCredentials.load(tmp_path / "absent.json").problem is None
    cases = {
        "not json {": "is not JSON (a Docker config.json)",
        json.dumps({"auths": []}): 'has no "auths" object',
        json.dumps({"auths": {"r.example": {"auth": "%%%" + SECRET}}}): "cannot be decoded",
    }
    for text, reason in cases.items():
        path = tmp_path / "config.json"
        path.write_text(text)
        found = RegistryCredentials.load(path)
        assert found.problem is not None and found.problem.startswith("WINGMAN_REGISTRY_AUTH: ") and reason in found.problem
        assert SECRET not in found.problem and "\n" not in found.problem
        assert found.for_registry("r.example") is None


def update(target: str, tag: str) -> Update:
    reference = f"reg.example/app:{tag}@sha256:{tag.replace('.', '') * 16}"[:200]
    return Update(f"{target}{tag}".replace(".", "")[:12].ljust(12, "0"), target, "reg.example/app:1.0", "1.0", tag, "sha256:old", "sha256:new", reference)


async def test_updates_are_stored_announced_once_and_go_when_no_longer_found(db_url: str) -> None:
    deployments = await open_deployment_store(db_url)  # the executor's tables, migrated as the daemon does
    try:
        store = UpdateStore(deployments.engine)
        web, db = update("web", "1.1"), update("db", "2.0")
        stored = await store.record([web, db], {"web", "db"}, now=100.0)
        assert [(s.update.id, s.state, s.announced_at) for s in stored] == [(web.id, "pending", None), (db.id, "pending", None)]
        await store.mark_announced([web.id], now=101.0)
        again = await store.record([web, db], {"web", "db"}, now=200.0)
        assert [s.announced_at for s in again] == [101.0, None]
        assert [s.update.id for s in await store.pending()] == [web.id]
        # web's update no longer found (deployed); db's registry failed this time (not watched): kept.
        await store.record([], {"web"}, now=300.0)
        gone, kept = await store.get(web.id), await store.get(db.id)
        assert gone is not None and gone.state == "gone" and kept is not None and kept.state == "pending"
        assert await store.pending() == []
        assert await store.get("000000000000") is None
        # db removed (or no longer allowlisted): its update goes too.
        await store.record([], set(), now=400.0, present={"web"})
        db_now = await store.get(db.id)
        assert db_now is not None and db_now.state == "gone"
    finally:
        await deployments.engine.dispose()


async def test_the_updates_action_refuses_a_bad_or_unknown_id_in_one_line(harness: Harness) -> None:
    client = harness.client()
    for wanted, reason in [
        ("../etc", "args.id must be an update's id: 12 lower-case hex digits"),
        (12, "args.id must be an update's id: 12 lower-case hex digits"),
        ("0123456789ab", "no update 0123456789ab is known; run /updates again"),
    ]:
        reply = await client.call(VIEWER, "updates", {"id": wanted})
        assert (reply.status, reply.reason) == ("denied", reason)
        entry = (await harness.executor.audit.tail(1))[0]
        assert (entry.action, entry.decision, entry.outcome) == ("updates", "refused", reason)
    stranger = await client.call(STRANGER, "updates")
    assert stranger.status == "denied"
