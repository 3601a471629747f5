"""The one error family: every kind has its wire status, HTTP code and audit decision.

The table is the contract the bot and the audit rely on; a new kind (or a subclass that
forgets its kind) must not reach the wire without a status the protocol knows.
"""

from __future__ import annotations

import pytest

from executor.docker_driver import DeployFailed, EngineUnavailable
from executor.errors import ActionError, ActionFailed, Busy, Kind, Refused, Unavailable
from executor.protocol import STATUS_HTTP
from executor.proxmox import TaskFailed


@pytest.mark.parametrize(
    ("error", "kind", "status", "http", "decision"),
    [
        (Refused("name the container, e.g. /restart web"), Kind.REFUSED, "denied", 403, "refused"),
        (Busy("web is busy: tg:1 (deploy) is acting on it", holder="tg:1 (deploy)"), Kind.BUSY, "conflict", 409, "refused"),
        (ActionFailed("web did not stay running"), Kind.FAILED, "failed", 500, "failed"),
        (DeployFailed("the new container never became healthy"), Kind.FAILED, "failed", 500, "failed"),
        (TaskFailed("the start of VM 101 failed", upid="UPID:x", exitstatus="ERR"), Kind.FAILED, "failed", 500, "failed"),
        (Unavailable("Docker is not configured on this executor"), Kind.UNAVAILABLE, "unavailable", 503, "failed"),
        (EngineUnavailable("the Docker engine is unreachable"), Kind.UNAVAILABLE, "unavailable", 503, "failed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, ActionError) else None,
)
def test_each_error_is_worded_by_its_kind(error: ActionError, kind: Kind, status: str, http: int, decision: str) -> None:
    assert error.kind is kind
    assert (error.status, STATUS_HTTP[error.status], error.decision) == (status, http, decision)
    assert str(error) == error.reason


def test_busy_is_a_refusal_that_names_its_holder() -> None:
    busy = Busy("VM 101 (web) is busy: tg:1 (start) is acting on it", holder="tg:1 (start)")
    assert isinstance(busy, Refused) and busy.holder == "tg:1 (start)"


def test_every_kind_has_a_status_the_protocol_knows() -> None:
    for kind in Kind:
        probe = type("Probe", (ActionError,), {"kind": kind})("x")
        assert probe.status in STATUS_HTTP, kind
