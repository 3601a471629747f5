"""The Proxmox double itself: it must refuse what Proxmox refuses, or driver tests prove little."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.doubles.proxmox import ProxmoxDouble, TlsFiles
from tests.proxmox.conftest import PRINCIPAL, TOKEN_SECRET

AUTH = {"Authorization": f"PVEAPIToken={PRINCIPAL}={TOKEN_SECRET}"}


@pytest.fixture
async def http(tls: TlsFiles) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    pve: ProxmoxDouble,
    method: str,
    path: str,
    /,
    *,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[int, str, dict[str, Any]]:
    url = f"https://{pve.host}/api2/json{path}"
    kwargs: dict[str, Any] = {"params": params} if method == "GET" else {"data": params}
    async with http.request(method, url, headers=AUTH if headers is None else headers, **kwargs) as response:
        return response.status, response.reason or "", await response.json()


@pytest.mark.parametrize(
    ("method", "path", "params", "errors"),
    [
        ("POST", "/nodes/pve1/qemu/101/status/shutdown", {"forcestop": "1"}, {"forcestop"}),
        ("POST", "/nodes/pve1/qemu/101/status/shutdown", {"timeout": "-1"}, {"timeout"}),
        ("POST", "/nodes/pve1/qemu/101/status/shutdown", {"timeout": "1.5"}, {"timeout"}),
        ("POST", "/nodes/pve1/qemu/101/status/shutdown", {"forceStop": "maybe"}, {"forceStop"}),
        ("POST", "/nodes/pve2/lxc/201/status/shutdown", {"keepActive": "1"}, {"keepActive"}),  # QEMU only
        ("POST", "/nodes/pve1/qemu/101/status/start", {"migration_type": "fast"}, {"migration_type"}),
        ("POST", "/nodes/pve1/qemu/101/snapshot", {}, {"snapname"}),
        ("POST", "/nodes/pve1/qemu/101/snapshot", {"snapname": "x" * 41}, {"snapname"}),
        ("POST", "/nodes/pve1/qemu/101/snapshot", {"snapname": "a"}, {"snapname"}),
        ("POST", "/nodes/pve1/qemu/101/snapshot", {"snapname": "9lives"}, {"snapname"}),
        ("POST", "/nodes/pve2/lxc/201/snapshot", {"snapname": "ok", "vmstate": "1"}, {"vmstate"}),
        ("POST", "/nodes/pve1/qemu/99/status/start", {}, {"vmid"}),
        ("POST", "/nodes/pve1/qemu/1000000000/status/start", {}, {"vmid"}),
        ("POST", "/nodes/pve_1/qemu/101/status/start", {}, {"node"}),
        ("GET", "/cluster/resources", {"type": "qemu"}, {"type"}),
        ("GET", "/access/permissions", {"userid": "nobody"}, {"userid"}),
        ("GET", "/nodes/pve1/qemu/101/status/current", {"full": "1"}, {"full"}),
    ],
)
async def test_parameters_are_checked_like_proxmox(
    http: aiohttp.ClientSession, pve: ProxmoxDouble, method: str, path: str, params: dict[str, Any], errors: set[str]
) -> None:
    status, reason, body = await call(http, pve, method, path, **params)
    assert (status, reason) == (400, "Parameter verification failed.")
    assert set(body["errors"]) == errors
    assert pve.posts() == [] and pve.tasks == {}


async def test_a_valid_post_answers_a_upid_and_the_task_finishes(
    http: aiohttp.ClientSession, pve: ProxmoxDouble
) -> None:
    status, _, body = await call(http, pve, "POST", "/nodes/pve1/qemu/102/status/start", timeout="30")
    assert status == 200
    upid = body["data"]
    assert upid.startswith("UPID:pve1:") and upid.endswith(f":qmstart:102:{PRINCIPAL}:")
    for _ in range(100):
        _, _, task = await call(http, pve, "GET", f"/nodes/pve1/tasks/{upid}/status")
        if task["data"]["status"] == "stopped":
            break
        await asyncio.sleep(0.02)
    assert task["data"]["exitstatus"] == "OK"
    _, _, log = await call(http, pve, "GET", f"/nodes/pve1/tasks/{upid}/log", start="0", limit="50")
    assert log["data"][-1] == {"n": 1, "t": "TASK OK"}
    _, _, past = await call(http, pve, "GET", f"/nodes/pve1/tasks/{upid}/log", start="5")
    assert past["data"] == [{"n": 6, "t": "no content"}]


async def test_authentication(http: aiohttp.ClientSession, pve: ProxmoxDouble) -> None:
    assert (await call(http, pve, "GET", "/version", headers={}))[:2] == (401, "No ticket")
    wrong = {"Authorization": f"PVEAPIToken={PRINCIPAL}=nope"}
    assert (await call(http, pve, "GET", "/version", headers=wrong))[:2] == (401, "authentication failure")
    pve.add_user("root@pam", "pw")
    status, _, _ = await call(http, pve, "POST", "/access/ticket", headers={}, username="root@pam", password="bad")
    assert status == 401
    status, _, body = await call(http, pve, "POST", "/access/ticket", headers={}, username="root@pam", password="pw")
    assert status == 200
    cookie = {"Cookie": f"PVEAuthCookie={body['data']['ticket']}"}
    assert (await call(http, pve, "GET", "/version", headers=cookie))[0] == 200
    # A write with the ticket but without the CSRF token is refused, as by Proxmox.
    status, reason, _ = await call(http, pve, "POST", "/nodes/pve1/qemu/102/status/start", headers=cookie)
    assert (status, reason) == (401, "Permission denied - invalid csrf token")
    with_csrf = {**cookie, "CSRFPreventionToken": body["data"]["CSRFPreventionToken"]}
    assert (await call(http, pve, "POST", "/nodes/pve1/qemu/102/status/start", headers=with_csrf))[0] == 200


async def test_unknown_paths_and_wrong_nodes(http: aiohttp.ClientSession, pve: ProxmoxDouble) -> None:
    status, reason, _ = await call(http, pve, "POST", "/nodes/pve1/qemu/101/agent/exec")
    assert (status, reason) == (501, "Method 'POST /nodes/pve1/qemu/101/agent/exec' not implemented")
    status, reason, _ = await call(http, pve, "POST", "/nodes/pve2/qemu/101/status/start")
    assert (status, reason) == (500, "Configuration file 'nodes/pve2/qemu-server/101.conf' does not exist")


async def test_resources_list_only_what_the_caller_may_audit(http: aiohttp.ClientSession, pve: ProxmoxDouble) -> None:
    pve.add_token("few@pve", "t", "s", {"/vms/101": {"VM.Audit"}})
    _, _, body = await call(
        http, pve, "GET", "/cluster/resources", headers={"Authorization": "PVEAPIToken=few@pve!t=s"}, type="vm"
    )
    assert [e["vmid"] for e in body["data"]] == [101]
    _, _, perms = await call(
        http, pve, "GET", "/access/permissions", headers={"Authorization": "PVEAPIToken=few@pve!t=s"}, path="/vms/102"
    )
    assert perms["data"] == {"/vms/102": {}}
