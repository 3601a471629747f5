"""Proxmox actions through the whole executor: signed request → policy → approval → driver → PVE double → audit."""

from __future__ import annotations

from typing import Any

import pytest

from tests.doubles.proxmox import ProxmoxDouble, TlsFiles
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER, Harness
from tests.proxmox.conftest import TOKEN


def proxmox_settings(pve: ProxmoxDouble, tls: TlsFiles, **more: Any) -> dict[str, Any]:
    return {
        "proxmox_host": pve.host,
        "proxmox_token": TOKEN,
        "proxmox_ca_bundle": tls.ca_cert,
        "vm_allowlist": [101, 102, 201, 202, 301],
        "node_allowlist": ["pve1", "pve2"],
        **more,
    }


@pytest.fixture
async def harness(make_harness: Any, pve: ProxmoxDouble, tls: TlsFiles) -> Harness:
    return await make_harness(**proxmox_settings(pve, tls, allow_dangerous_ops=True))


async def finished(harness: Harness, approval_id: str) -> dict[str, Any]:
    client = harness.client()
    for _ in range(40):
        events = await client.poll(wait=10)
        for event in events:
            if event["kind"] == "approval.finished" and event["ref"] == approval_id:
                return dict(event["payload"])
        await client.ack([e["id"] for e in events])
    raise AssertionError(f"approval {approval_id} never finished")


async def approved(harness: Harness, user: int, action: str, args: dict[str, Any], approvers: tuple[int, ...] = (APPROVER,)) -> dict[str, Any]:
    client = harness.client()
    reply = await client.call(user, action, args)
    assert reply.status == "pending", reply
    approval_id = reply.result["approval"]["id"]
    for approver in approvers:
        # A tier-3 approval counts a vote only with the approver's one-time code.
        vote = {"id": approval_id, "code": harness.code(approver)}
        assert (await client.call(approver, "approval.approve", vote)).status in ("done", "pending")
    return await finished(harness, approval_id)


async def test_status_lists_only_allowlisted_vms_on_allowlisted_nodes(harness: Harness) -> None:
    reply = await harness.client().call(VIEWER, "vm.status")
    assert reply.status == "done"
    assert sorted(vm["vmid"] for vm in reply.result["vms"]) == [101, 102, 201, 202]
    hidden = await harness.client().call(VIEWER, "vm.status", {"target": 999})
    assert hidden.status == "denied" and "999" in hidden.reason


async def test_start_runs_at_once_and_is_audited(harness: Harness, pve: ProxmoxDouble) -> None:
    reply = await harness.client().call(OPERATOR, "vm.start", {"target": 102})
    assert reply.status == "done", reply
    assert any(path.endswith("/qemu/102/status/start") for path in pve.posts())
    again = await harness.client().call(OPERATOR, "vm.start", {"target": 102})
    assert again.status == "done" and again.result["changed"] is False
    decisions = [(e.action, e.decision) for e in await harness.executor.audit.tail(4)]
    assert decisions.count(("vm.start", "executed")) == 2


async def test_shutdown_waits_for_approval_then_runs(harness: Harness, pve: ProxmoxDouble) -> None:
    outcome = await approved(harness, OPERATOR, "vm.shutdown", {"target": 101})
    assert outcome["approval"]["state"] == "done", outcome
    assert any(path.endswith("/qemu/101/status/shutdown") for path in pve.posts())


async def test_rollback_needs_two_approvers_and_takes_a_safety_snapshot_first(harness: Harness, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(201, "before-upgrade")
    outcome = await approved(harness, OPERATOR, "vm.rollback", {"target": 201, "snapshot": "before-upgrade"}, (APPROVER, APPROVER2))
    assert outcome["approval"]["state"] == "done", outcome
    safety = outcome["outcome"]["result"]["safety_snapshot"]
    assert safety.startswith("wingman-pre-rollback-") and safety in outcome["outcome"]["reason"]
    posts = [p for p in pve.posts() if "/lxc/201/" in p]
    assert posts[0].endswith("/snapshot") and posts[-1].endswith("/snapshot/before-upgrade/rollback")


async def test_a_bad_snapshot_name_is_refused_before_anyone_is_asked(harness: Harness) -> None:
    reply = await harness.client().call(OPERATOR, "vm.snapshot", {"target": 101, "name": "rm -rf /"})
    assert reply.status == "denied"
    assert (await harness.client().call(VIEWER, "pending")).result["approvals"] == []


async def test_a_token_without_privileges_is_reported_at_start(make_harness: Any, pve: ProxmoxDouble, tls: TlsFiles) -> None:
    pve.add_token("ops@pve", "ro", "ro-secret", {"/vms": {"VM.Audit"}})
    harness = await make_harness(**proxmox_settings(pve, tls, proxmox_token="ops@pve!ro=ro-secret"))
    client = harness.client()
    for _ in range(20):
        events = [e for e in await client.poll(wait=5) if e["kind"] == "proxmox.self_check"]
        if events:
            break
    assert "VM.PowerMgmt" in events[0]["payload"]["text"]


async def test_proxmox_unreachable_or_refusing_is_a_clear_answer_and_the_executor_keeps_serving(
    make_harness: Any, pve: ProxmoxDouble, tls: TlsFiles
) -> None:
    harness = await make_harness(**proxmox_settings(pve, tls, proxmox_token="wingman@pve!bot=wrong-secret"))
    client = harness.client()
    refused = await client.call(VIEWER, "vm.status")
    assert (refused.http_status, refused.status) == (503, "unavailable")
    await pve.stop()
    down = await client.call(VIEWER, "vm.status")
    assert down.status == "unavailable"
    assert (await client.call(ADMIN, "whoami")).status == "done"


async def test_without_proxmox_settings_vm_says_it_is_not_configured(make_harness: Any) -> None:
    harness = await make_harness(vm_allowlist=[101], node_allowlist=["pve1"])
    reply = await harness.client().call(VIEWER, "vm.status")
    assert reply.status == "unavailable" and "not configured" in reply.reason
