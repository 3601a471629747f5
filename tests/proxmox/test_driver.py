"""The Proxmox driver end to end: real proxmoxer and TLS against the Proxmox double."""

from __future__ import annotations

import asyncio
import socket

import pytest

from executor.errors import ActionFailed, Refused, Busy, Unavailable
from executor.proxmox import ProxmoxDriver, TaskFailed
from tests.doubles.proxmox import ProxmoxDouble, TaskPlan, TlsFiles
from tests.harness import Recorder
from tests.proxmox.conftest import PRINCIPAL, TOKEN_SECRET, make_driver, visible

# -- status ------------------------------------------------------------------------------


async def test_status_lists_only_allowlisted_guests_on_allowlisted_nodes(driver: ProxmoxDriver) -> None:
    listed = await driver.status(visible)
    assert [g.vmid for g in listed] == [101, 102, 201, 202]  # not 301 (node pve3), not 999
    web, db, dns, _ = listed
    assert (web.kind, web.node, web.status, web.name) == ("qemu", "pve1", "running", "web")
    assert web.uptime_seconds is not None and web.uptime_seconds >= 3600
    assert web.cpu is not None and web.mem_bytes and web.maxmem_bytes
    assert db.status == "stopped" and db.lock is None
    assert (dns.kind, dns.node) == ("lxc", "pve2")
    assert web.summary().startswith("VM 101 (web) on pve1: running, up 1h")
    assert dns.summary().startswith("CT 201 (dns) on pve2: running")


async def test_status_of_one_guest_shows_its_lock(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[102].lock = "backup"
    [db] = await driver.status(visible, "102")
    assert db.lock == "backup"
    assert "locked (backup)" in db.summary()
    assert db.as_json()["lock"] == "backup"


async def test_a_hidden_guest_is_answered_like_a_missing_one(driver: ProxmoxDriver) -> None:
    reasons = []
    for vmid in (301, 999, 4242):
        with pytest.raises(Refused) as caught:
            await driver.status(visible, vmid)
        reasons.append(caught.value.reason.replace(str(vmid), "N"))
    assert len(set(reasons)) == 1, reasons
    assert "elsewhere" not in reasons[0] and "pve3" not in reasons[0]


@pytest.mark.parametrize("vmid", ["abc", 99, "0100", "-101", 1_000_000_000, True, "101; rm -rf /"])
async def test_malformed_vmids_are_refused_before_asking_proxmox(
    driver: ProxmoxDriver, pve: ProxmoxDouble, vmid: object
) -> None:
    with pytest.raises(Refused, match="is not a vmid"):
        await driver.start(vmid, visible)
    assert pve.calls == []


async def test_node_comes_from_proxmox_not_from_the_caller(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[102].node = "pve2"  # migrated since the allowlist was written
    pve.nodes.add("pve2")
    outcome = await driver.start(102, visible)
    assert outcome.node == "pve2"
    assert pve.posts() == ["/nodes/pve2/qemu/102/status/start"]


# -- start ---------------------------------------------------------------------------------


async def test_start_a_stopped_vm(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    progress = Recorder()
    outcome = await driver.start(102, visible, actor="tg:1001", progress=progress)
    assert outcome.changed and outcome.status == "running" and outcome.upid
    assert outcome.summary == "VM 102 (db) started on pve1"
    assert pve.guests[102].status == "running"
    assert pve.posts() == ["/nodes/pve1/qemu/102/status/start"]
    assert pve.tasks[outcome.upid].exitstatus == "OK"
    assert progress.stages[0] == "starting" and progress.stages[-1] == "task-done"
    assert "waiting" in progress.stages


async def test_starting_a_running_vm_is_a_plain_no_op(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.start(101, visible)
    assert not outcome.changed
    assert outcome.summary == "VM 101 (web) is already running; nothing to do"
    assert pve.posts() == []


async def test_start_an_lxc_container(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.start(202, visible)
    assert outcome.changed and outcome.kind == "lxc"
    assert pve.posts() == ["/nodes/pve2/lxc/202/status/start"]
    assert pve.guests[202].status == "running"


async def test_a_guest_locked_by_proxmox_is_busy_and_untouched(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[102].lock = "backup"
    with pytest.raises(Busy, match=r"VM 102 \(db\) is locked by Proxmox \(backup\)"):
        await driver.start(102, visible)
    assert pve.posts() == []


async def test_a_hibernated_vm_may_be_started(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[102].lock = "suspended"
    outcome = await driver.start(102, visible)
    assert outcome.changed and pve.guests[102].status == "running"


async def test_one_action_at_a_time_per_guest(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, task_timeout=5.0)
    pve.plan_task("qmstart", TaskPlan.hanging("starting"))
    first = asyncio.create_task(driver.start(102, visible, actor="tg:1"))
    try:
        while not pve.posts():
            await asyncio.sleep(0.01)
        with pytest.raises(Busy, match=r"tg:1 \(start\) is acting on it"):
            await driver.snapshot(102, visible, actor="tg:2")
        await driver.start(101, visible)  # another guest is not held up
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await driver.close()


# -- task outcomes -------------------------------------------------------------------------------


async def test_a_failed_task_reports_its_exit_status_and_last_log_lines(
    driver: ProxmoxDriver, pve: ProxmoxDouble
) -> None:
    pve.plan_task(
        "qmstart",
        TaskPlan.failing(
            "start failed: QEMU exited with code 1",
            "generating cloud-init ISO",
            "kvm: -drive file=/dev/pve/vm-102-disk-0: Could not open '/dev/pve/vm-102-disk-0': No such file or directory",
        ),
    )
    with pytest.raises(TaskFailed) as caught:
        await driver.start(102, visible)
    error = caught.value
    assert error.status == "failed"
    assert error.exitstatus == "start failed: QEMU exited with code 1"
    assert "Proxmox task ended with 'start failed: QEMU exited with code 1'" in error.reason
    assert error.reason.endswith("last log line: TASK ERROR: start failed: QEMU exited with code 1")
    assert error.last_logs[-2].startswith("kvm: -drive file=/dev/pve/vm-102-disk-0: Could not open")
    assert "\n" not in error.reason


async def test_a_task_that_never_finishes_times_out(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, task_timeout=0.3)
    pve.plan_task("qmstart", TaskPlan.hanging("starting VM 102"))
    try:
        with pytest.raises(TaskFailed, match=r"the start of VM 102 \(db\) did not finish within 0.3 s") as caught:
            await driver.start(102, visible)
        assert caught.value.exitstatus is None
        assert caught.value.last_logs == ["starting VM 102"]
        assert caught.value.upid in caught.value.reason
    finally:
        await driver.close()


async def test_a_long_task_log_is_read_to_its_end(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.plan_task("qmstart", TaskPlan.failing("boom", *[f"line {i}" for i in range(1, 1201)]))
    with pytest.raises(TaskFailed) as caught:
        await driver.start(102, visible)
    assert caught.value.last_logs[-3:] == ["line 1199", "line 1200", "TASK ERROR: boom"]
    assert len(caught.value.last_logs) == 10


# -- shutdown and reboot -------------------------------------------------------------------------------


async def test_shutdown_waits_for_the_guest_and_never_forces(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.shutdown(101, visible)
    assert outcome.changed and outcome.status == "stopped"
    assert outcome.summary == "VM 101 (web) shut down cleanly"
    [call] = [c for c in pve.calls if c.method == "POST"]
    assert call.path == "/nodes/pve1/qemu/101/status/shutdown"
    assert call.params == {"timeout": "10"}


async def test_shutting_down_a_stopped_vm_is_a_no_op(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.shutdown(102, visible)
    assert not outcome.changed and "already stopped" in outcome.summary
    assert pve.posts() == []


async def test_a_guest_that_ignores_shutdown_is_left_running(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[101].ignores_shutdown = True
    with pytest.raises(TaskFailed) as caught:
        await driver.shutdown(101, visible)
    reason = caught.value.reason
    assert reason.startswith("VM 101 (web) did not shut down within 10 s and is still running")
    assert "VM quit/powerdown failed - got timeout" in reason
    assert "Wingman never forces a stop" in reason
    assert caught.value.last_logs[-1] == "TASK ERROR: VM quit/powerdown failed - got timeout"
    assert pve.guests[101].status == "running"
    assert pve.posts() == ["/nodes/pve1/qemu/101/status/shutdown"]
    assert not any("forceStop" in c.params for c in pve.calls)


async def test_a_shutdown_task_that_hangs_times_out_without_a_hard_stop(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, shutdown_timeout=1, shutdown_grace=0.1)
    pve.plan_task("vzshutdown", TaskPlan.hanging("trying to acquire lock..."))
    try:
        with pytest.raises(TaskFailed, match=r"CT 201 \(dns\) did not shut down within 1 s and is still running"):
            await driver.shutdown(201, visible)
    finally:
        await driver.close()
    assert pve.posts() == ["/nodes/pve2/lxc/201/status/shutdown"]
    assert not any("forceStop" in c.params for c in pve.calls)


async def test_shutdown_of_an_lxc_container(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.shutdown(201, visible)
    assert outcome.changed and pve.guests[201].status == "stopped"


async def test_reboot(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    for vmid, path in ((101, "/nodes/pve1/qemu/101/status/reboot"), (201, "/nodes/pve2/lxc/201/status/reboot")):
        outcome = await driver.reboot(vmid, visible)
        assert outcome.changed and outcome.status == "running"
        assert pve.posts()[-1] == path
    assert [c.params for c in pve.calls if c.method == "POST"] == [{"timeout": "10"}] * 2


async def test_rebooting_a_stopped_vm_is_refused(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    with pytest.raises(Refused, match="is stopped, not running; use /vm start"):
        await driver.reboot(102, visible)
    assert pve.posts() == []


# -- snapshots ------------------------------------------------------------------------------------------


async def test_snapshot_with_the_default_name(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    first = await driver.snapshot(101, visible, actor="tg:1001")
    assert first.snapshot == "wingman-20250304-0506"
    assert first.summary == "snapshot 'wingman-20250304-0506' of VM 101 (web) taken"
    second = await driver.snapshot(101, visible)
    assert second.snapshot == "wingman-20250304-0506-2"
    assert list(pve.guests[101].snapshots) == ["wingman-20250304-0506", "wingman-20250304-0506-2"]
    assert pve.guests[101].snapshots["wingman-20250304-0506"].description == "taken by Wingman for tg:1001"
    assert pve.guests[101].lock is None


async def test_snapshot_of_an_lxc_container_with_a_given_name(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    outcome = await driver.snapshot(201, visible, "before-upgrade_2")
    assert outcome.snapshot == "before-upgrade_2"
    assert pve.posts() == ["/nodes/pve2/lxc/201/snapshot"]
    assert "before-upgrade_2" in pve.guests[201].snapshots


@pytest.mark.parametrize("name", ["Ab", "a1", "x" * 40, "A-_9"])
async def test_valid_snapshot_names(driver: ProxmoxDriver, pve: ProxmoxDouble, name: str) -> None:
    await driver.snapshot(102, visible, name)
    assert name in pve.guests[102].snapshots


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "1abc",
        "-abc",
        "_abc",
        "with space",
        "x" * 41,
        "semi;colon",
        "dot.name",
        "sl/ash",
        "ümlaut",
        "",
        "current",
        "vzdump",
        42,
    ],
)
async def test_invalid_snapshot_names_are_refused_before_asking_proxmox(
    driver: ProxmoxDriver, pve: ProxmoxDouble, name: object
) -> None:
    with pytest.raises(Refused, match="snapshot name|reserved"):
        await driver.snapshot(101, visible, name)  # type: ignore[arg-type]
    with pytest.raises(Refused, match="snapshot name|reserved"):
        await driver.rollback(101, name, visible)  # type: ignore[arg-type]
    assert pve.calls == []


async def test_a_snapshot_name_in_use_is_refused(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(101, "base")
    with pytest.raises(Refused, match="already has a snapshot named 'base'"):
        await driver.snapshot(101, visible, "base")
    assert pve.posts() == []


# -- rollback -----------------------------------------------------------------------------------------------


async def test_rollback_takes_a_safety_snapshot_first(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(101, "base")
    progress = Recorder()
    outcome = await driver.rollback(101, "base", visible, actor="tg:7", progress=progress)
    safety = "wingman-pre-rollback-20250304-0506"
    assert outcome.safety_snapshot == safety and outcome.snapshot == "base"
    assert pve.posts() == ["/nodes/pve1/qemu/101/snapshot", "/nodes/pve1/qemu/101/snapshot/base/rollback"]
    snapshot_call = next(c for c in pve.calls if c.method == "POST")
    assert snapshot_call.params["snapname"] == safety
    assert safety in pve.guests[101].snapshots and pve.guests[101].parent == "base"
    assert outcome.summary == (
        f"VM 101 (web) rolled back to snapshot 'base'; safety snapshot '{safety}' holds its state from before;"
        " it is now stopped"
    )
    assert progress.stages.index("safety-snapshot") < progress.stages.index("rolling-back")


async def test_rollback_of_an_lxc_container(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(201, "clean")
    outcome = await driver.rollback(201, "clean", visible)
    assert pve.posts() == ["/nodes/pve2/lxc/201/snapshot", "/nodes/pve2/lxc/201/snapshot/clean/rollback"]
    assert outcome.safety_snapshot in pve.guests[201].snapshots


async def test_rollback_to_a_missing_snapshot_is_refused(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(101, "base")
    with pytest.raises(Refused, match=r"has no snapshot named 'nope' \(it has: base\)"):
        await driver.rollback(101, "nope", visible)
    assert pve.posts() == []


async def test_no_rollback_when_the_safety_snapshot_fails(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.add_snapshot(101, "base")
    pve.plan_task("qmsnapshot", TaskPlan.failing("snapshot feature is not available"))
    with pytest.raises(TaskFailed, match="the safety snapshot failed, so VM 101 \\(web\\) was not rolled back"):
        await driver.rollback(101, "base", visible)
    assert pve.posts() == ["/nodes/pve1/qemu/101/snapshot"]
    assert pve.guests[101].status == "running"


async def test_a_failed_rollback_names_the_safety_snapshot(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.guests[101].newest_snapshot_rollback_only = True  # ZFS
    pve.add_snapshot(101, "base")
    with pytest.raises(TaskFailed) as caught:
        await driver.rollback(101, "base", visible)
    reason = caught.value.reason
    assert "is not most recent snapshot" in reason
    assert "this storage rolls back only to its newest snapshot" in reason
    assert reason.endswith("the safety snapshot 'wingman-pre-rollback-20250304-0506' holds its state from before")


# -- Proxmox unreachable, refusing, failing ------------------------------------------------------------------


async def test_a_wrong_token_is_unavailable_and_the_secret_is_not_shown(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, token="wingman@pve!bot=wrong-secret")
    try:
        with pytest.raises(Unavailable) as caught:
            await driver.status(visible)
    finally:
        await driver.close()
    assert caught.value.reason == (
        f"Proxmox at {pve.host} refused the credentials of wingman@pve!bot (401): check PROXMOX_TOKEN"
    )
    assert "wrong-secret" not in caught.value.reason and TOKEN_SECRET not in caught.value.reason


async def test_a_500_is_unavailable_with_proxmox_words(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.fail_next(500, "cluster not ready - no quorum?", path="^/cluster/resources")
    with pytest.raises(Unavailable, match=r"failed the cluster resource list \(500 cluster not ready - no quorum\?\)"):
        await driver.status(visible)
    assert [g.vmid for g in await driver.status(visible)] == [101, 102, 201, 202]  # one failure is not sticky


async def test_a_500_while_following_a_task_is_tolerated(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    pve.fail_next(500, "proxy loop detected", path="/tasks/.*/status")
    outcome = await driver.start(102, visible)
    assert outcome.changed


async def test_an_unreachable_proxmox_is_unavailable(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    driver = make_driver(pve, tls, host=f"127.0.0.1:{port}", request_timeout=2.0)
    try:
        with pytest.raises(Unavailable, match=rf"Proxmox at 127.0.0.1:{port} is unreachable: .*refused"):
            await driver.start(102, visible)
    finally:
        await driver.close()


async def test_an_untrusted_certificate_is_unavailable(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, ca_bundle=None)  # the system CAs do not know the test CA
    try:
        with pytest.raises(Unavailable, match="cannot verify the TLS certificate .* PROXMOX_CA_BUNDLE"):
            await driver.status(visible)
    finally:
        await driver.close()
    assert pve.calls == []


async def test_a_missing_privilege_is_a_clear_failure(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    pve.add_token("audit@pve", "ro", "ro-secret", {"/vms": {"VM.Audit"}})
    driver = make_driver(pve, tls, token="audit@pve!ro=ro-secret")
    try:
        with pytest.raises(
            ActionFailed,
            match=r"Proxmox refused the start of VM 102 \(db\) \(403 Permission check failed \(/vms/102, VM.PowerMgmt\)\)",
        ):
            await driver.start(102, visible)
    finally:
        await driver.close()


# -- ticket (user and password) login ----------------------------------------------------------------------------


async def test_ticket_login_reads_and_acts(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    pve.add_user("root@pam", "hunter2!")
    driver = make_driver(pve, tls, token=None, user="root@pam", password="hunter2!")
    try:
        assert [g.vmid for g in await driver.status(visible)] == [101, 102, 201, 202]
        outcome = await driver.start(102, visible)  # a write: needs the CSRF token as well
        assert outcome.changed
    finally:
        await driver.close()
    assert pve.calls[0].path == "/access/ticket"
    assert {c.principal for c in pve.calls[1:]} == {"root@pam"}


async def test_a_wrong_password_is_unavailable(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    pve.add_user("root@pam", "hunter2!")
    driver = make_driver(pve, tls, token=None, user="root@pam", password="wrong")
    try:
        with pytest.raises(
            Unavailable, match=r"refused the login of root@pam \(401\): check PROXMOX_USER and PROXMOX_PASSWORD"
        ):
            await driver.status(visible)
    finally:
        await driver.close()


# -- start-up self-check -------------------------------------------------------------------------------------------


async def test_self_check_passes_with_every_privilege(driver: ProxmoxDriver, pve: ProxmoxDouble) -> None:
    assert await driver.self_check([101, 102, 201], visible) == []
    assert {c.params["userid"] for c in pve.calls if c.path == "/access/permissions"} == {PRINCIPAL}


async def test_self_check_names_missing_privileges(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    pve.add_token(
        "ops@pve", "limited", "limited-secret", {"/vms": {"VM.Audit", "VM.PowerMgmt"}, "/vms/102": {"VM.Snapshot"}}
    )
    driver = make_driver(pve, tls, token="ops@pve!limited=limited-secret")
    try:
        lines = await driver.self_check([101, 102, 201], visible)
    finally:
        await driver.close()
    assert lines == [
        "Proxmox: ops@pve!limited lacks VM.Snapshot, VM.Snapshot.Rollback on VMs 101, 201:"
        " /vm snapshot and the safety snapshot of /vm rollback will fail; /vm rollback will fail",
        "Proxmox: ops@pve!limited lacks VM.Snapshot.Rollback on VM 102: /vm rollback will fail",
    ]


async def test_self_check_names_unknown_and_misplaced_guests(driver: ProxmoxDriver) -> None:
    lines = await driver.self_check([101, 301, 555], visible)
    assert lines == [
        "Proxmox: VM 301 (elsewhere) is on node pve3, which is not allowlisted",
        "Proxmox: VM 555 is allowlisted but Proxmox lists no such guest",
    ]


async def test_self_check_reports_an_unreachable_proxmox_in_one_line(pve: ProxmoxDouble, tls: TlsFiles) -> None:
    driver = make_driver(pve, tls, token="wingman@pve!bot=nope")
    try:
        [line] = await driver.self_check([101], visible)
    finally:
        await driver.close()
    assert line.startswith("Proxmox self-check could not run: ") and "(401)" in line
