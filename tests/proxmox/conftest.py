"""Fixtures for the Proxmox driver tests: TLS files, the Proxmox double, a driver aimed at it.

The double (tests/doubles/proxmox.py) serves HTTPS with a certificate from a CA made here;
the driver trusts that CA through its CA bundle, never by turning verification off.
Timeouts and poll intervals are short so that the whole module runs in a few seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from executor.proxmox import ProxmoxDriver
from tests.doubles.proxmox import ProxmoxDouble, TlsFiles, make_tls

TOKEN_USER = "wingman@pve"
TOKEN_ID = "bot"
TOKEN_SECRET = "5c1f2d4e-9a7b-4c3d-8e6f-0a1b2c3d4e5f"
TOKEN = f"{TOKEN_USER}!{TOKEN_ID}={TOKEN_SECRET}"
PRINCIPAL = f"{TOKEN_USER}!{TOKEN_ID}"

ALLOWED_VMS = {101, 102, 201, 202, 301}
ALLOWED_NODES = {"pve1", "pve2"}
FIXED_NOW = datetime(2025, 3, 4, 5, 6, 7)


def visible(vmid: int, node: str) -> bool:
    """The allowlists of these tests: what policy.vm_visible would say for them."""
    return vmid in ALLOWED_VMS and node in ALLOWED_NODES


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("pve-tls"))


@pytest.fixture
async def pve(tls: TlsFiles) -> AsyncIterator[ProxmoxDouble]:
    async with ProxmoxDouble(tls) as double:
        double.add_token(TOKEN_USER, TOKEN_ID, TOKEN_SECRET)
        double.add_guest(101, node="pve1", kind="qemu", name="web", status="running")
        double.add_guest(102, node="pve1", kind="qemu", name="db", status="stopped")
        double.add_guest(201, node="pve2", kind="lxc", name="dns", status="running")
        double.add_guest(202, node="pve2", kind="lxc", name="cache", status="stopped")
        double.add_guest(301, node="pve3", kind="qemu", name="elsewhere", status="running")  # node not allowed
        double.add_guest(999, node="pve1", kind="qemu", name="secret-vm", status="running")  # vmid not allowed
        yield double


def make_driver(pve: ProxmoxDouble, tls: TlsFiles, **options: Any) -> ProxmoxDriver:
    settings: dict[str, Any] = {
        "token": TOKEN,
        "ca_bundle": tls.ca_cert,
        "request_timeout": 5.0,
        "task_timeout": 3.0,
        "shutdown_timeout": 10,  # Proxmox-side seconds; the double scales them by 0.01
        "shutdown_grace": 1.0,
        "poll_interval": 0.02,
        "progress_interval": 0.05,
        "now": lambda: FIXED_NOW,
    }
    settings.update(options)
    return ProxmoxDriver(settings.pop("host", pve.host), **settings)


@pytest.fixture
async def driver(pve: ProxmoxDouble, tls: TlsFiles) -> AsyncIterator[ProxmoxDriver]:
    made = make_driver(pve, tls)
    yield made
    await made.close()
