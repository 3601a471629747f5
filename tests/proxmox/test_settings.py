"""Proxmox settings: off when unset, one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from executor.errors import StartupError
from executor.proxmox import ProxmoxDriver, check_snapshot_name, free_snapshot_name, parse_host
from tests.doubles.proxmox import TlsFiles
from tests.proxmox.conftest import FIXED_NOW, TOKEN


def settings(**values: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "proxmox_host": None,
        "proxmox_token": None,
        "proxmox_user": None,
        "proxmox_password": None,
        "proxmox_verify_ssl": True,
    }
    base.update(values)
    return SimpleNamespace(**base)


def test_no_proxmox_settings_means_off() -> None:
    assert ProxmoxDriver.from_settings(settings()) is None
    assert ProxmoxDriver.from_settings(settings(proxmox_host="  ")) is None


async def test_real_settings_model_is_read(tls: TlsFiles) -> None:
    from executor.settings import ExecutorSettings

    made = ExecutorSettings(PROXMOX_HOST="pve.lan", PROXMOX_TOKEN=TOKEN)  # type: ignore[call-arg]
    driver = ProxmoxDriver.from_settings(made)
    assert driver is not None
    assert (driver.where, driver.principal, driver.uses_token) == ("pve.lan:8006", "wingman@pve!bot", True)
    assert "5c1f2d4e" not in repr(driver)
    await driver.close()


async def test_ca_bundle_is_taken_from_the_settings(tls: TlsFiles) -> None:
    driver = ProxmoxDriver.from_settings(
        settings(proxmox_host="10.0.0.5:8007", proxmox_token=SecretStr(TOKEN), proxmox_ca_bundle=tls.ca_cert)
    )
    assert driver is not None and driver.where == "10.0.0.5:8007"
    await driver.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"proxmox_token": SecretStr(TOKEN)}, "PROXMOX_HOST: is not set, but PROXMOX_TOKEN is"),
        ({"proxmox_host": "pve"}, "PROXMOX_TOKEN: is not set"),
        (
            {"proxmox_host": "pve", "proxmox_token": SecretStr("wingman@pve:bot:secret")},
            "PROXMOX_TOKEN: write it as user@realm!tokenid=secret",
        ),
        ({"proxmox_host": "pve", "proxmox_token": SecretStr("wingman!bot=secret")}, "PROXMOX_TOKEN: write it as"),
        (
            {"proxmox_host": "pve", "proxmox_token": SecretStr(TOKEN), "proxmox_password": SecretStr("x")},
            "PROXMOX_PASSWORD: set PROXMOX_TOKEN or",
        ),
        (
            {"proxmox_host": "pve", "proxmox_token": SecretStr(TOKEN), "proxmox_user": "root@pam"},
            "PROXMOX_USER: 'root@pam' is not the user of PROXMOX_TOKEN",
        ),
        ({"proxmox_host": "pve", "proxmox_user": "root"}, "PROXMOX_PASSWORD: is not set"),
        (
            {"proxmox_host": "pve", "proxmox_user": "root", "proxmox_password": SecretStr("pw")},
            "PROXMOX_USER: 'root' is not a Proxmox user id",
        ),
        ({"proxmox_host": "pve", "proxmox_password": SecretStr("pw")}, "PROXMOX_USER: is not set"),
        (
            {"proxmox_host": "https://pve:8006", "proxmox_token": SecretStr(TOKEN)},
            "PROXMOX_HOST: give host or host:port",
        ),
        ({"proxmox_host": "pve:99999", "proxmox_token": SecretStr(TOKEN)}, "PROXMOX_HOST: '99999' is not a port"),
        (
            {"proxmox_host": "pve", "proxmox_token": SecretStr(TOKEN), "proxmox_ca_bundle": "/nonexistent/ca.pem"},
            "PROXMOX_CA_BUNDLE: /nonexistent/ca.pem is not a file",
        ),
        (
            {
                "proxmox_host": "pve",
                "proxmox_token": SecretStr(TOKEN),
                "proxmox_ca_bundle": "CA",
                "proxmox_verify_ssl": False,
            },
            "PROXMOX_CA_BUNDLE: is set while PROXMOX_VERIFY_SSL is false",
        ),
    ],
)
def test_setting_mistakes_are_one_line_naming_the_setting(values: dict[str, Any], message: str, tls: TlsFiles) -> None:
    if values.get("proxmox_ca_bundle") == "CA":
        values["proxmox_ca_bundle"] = tls.ca_cert
    with pytest.raises(StartupError) as caught:
        ProxmoxDriver.from_settings(settings(**values))
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text and "5c1f2d4e" not in text


def test_a_ca_bundle_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(StartupError, match="PROXMOX_CA_BUNDLE: .* holds no usable PEM certificate"):
        ProxmoxDriver("pve", token=TOKEN, ca_bundle=junk)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pve", ("pve", 8006)),
        ("pve.lan:8443", ("pve.lan", 8443)),
        ("10.0.0.2", ("10.0.0.2", 8006)),
        ("[fd00::2]:8006", ("fd00::2", 8006)),
        ("fd00::2", ("fd00::2", 8006)),
    ],
)
def test_parse_host(text: str, expected: tuple[str, int]) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize("text", ["", "pve:", "pve:abc", "pve/api", "user@pve", "[fd00::2", "pve lan", "-pve"])
def test_parse_host_refuses(text: str) -> None:
    with pytest.raises(StartupError, match="^PROXMOX_HOST: "):
        parse_host(text)


def test_snapshot_names() -> None:
    assert check_snapshot_name("before-upgrade") == "before-upgrade"
    assert free_snapshot_name("wingman", [], FIXED_NOW) == "wingman-20250304-0506"
    long_prefix = free_snapshot_name(
        "wingman-pre-rollback",
        [f"wingman-pre-rollback-20250304-0506{s}" for s in ["", *[f"-{n}" for n in range(2, 99)]]],
        FIXED_NOW,
    )
    assert long_prefix == "wingman-pre-rollback-20250304-0506-99" and len(long_prefix) <= 40
    check_snapshot_name(long_prefix)
