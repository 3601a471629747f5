"""The executor's exceptions: one family for every action, and the start-up error.

Every error an action raises (a handler, the Docker driver, the deployer, the Proxmox
driver) is an :class:`ActionError`: ``reason`` (also ``str(error)``) is one line that can be
shown to a person as it is, and ``kind`` says what a caller acts on::

    ActionError                    kind      touched?        wire status   audit decision
    ├── Refused                    refused   nothing         denied        refused
    │   └── Busy                   busy      nothing         conflict      refused
    ├── ActionFailed               failed    tried, failed   failed        failed
    │   ├── DeployFailed           (executor.docker_driver: what it rolled back to, logs)
    │   └── TaskFailed             (executor.proxmox.tasks: the task id, its log)
    └── Unavailable                unavailable               unavailable   failed
        └── EngineUnavailable      (executor.docker_driver: the Docker engine)

    StartupError                   the daemon cannot start (not an action error)

The kind becomes words in one place, :data:`WIRE_STATUS` and :data:`AUDIT_DECISION` below
(``error.status``, ``error.decision``); the wire status becomes an HTTP code in one place,
``executor.protocol.STATUS_HTTP``. Callers catch ``ActionError`` or one branch of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import ClassVar


class Kind(StrEnum):
    """What became of an action, as far as a caller must act on it."""

    REFUSED = "refused"  # not attempted: bad argument, unknown target, policy
    BUSY = "busy"  # not attempted: another action holds the target
    FAILED = "failed"  # attempted and did not succeed
    UNAVAILABLE = "unavailable"  # a dependency (Docker, Proxmox, the database) is out of reach


# The wire protocol's status word for each kind (``executor.protocol`` documents them).
WIRE_STATUS: dict[Kind, str] = {
    Kind.REFUSED: "denied",
    Kind.BUSY: "conflict",
    Kind.FAILED: "failed",
    Kind.UNAVAILABLE: "unavailable",
}

# The audit's decision: refused and busy touched nothing; failed and unavailable say what happened.
AUDIT_DECISION: dict[Kind, str] = {
    Kind.REFUSED: "refused",
    Kind.BUSY: "refused",
    Kind.FAILED: "failed",
    Kind.UNAVAILABLE: "failed",
}


class ActionError(Exception):
    """An action that did not happen or did not succeed; ``reason`` says why, in one line."""

    kind: ClassVar[Kind] = Kind.FAILED

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def status(self) -> str:
        """The wire protocol's status word for this error."""
        return WIRE_STATUS[self.kind]

    @property
    def decision(self) -> str:
        """The audit's decision for this error."""
        return AUDIT_DECISION[self.kind]


class Refused(ActionError):
    """The action was not attempted (bad argument, unknown target, policy); nothing was touched."""

    kind = Kind.REFUSED


class Busy(Refused):
    """Another action holds the target; ``holder`` says who ("tg:1001 (deploy)") when it is ours."""

    kind = Kind.BUSY

    def __init__(self, reason: str, *, holder: str | None = None) -> None:
        super().__init__(reason)
        self.holder = holder


class ActionFailed(ActionError):
    """The action was attempted and did not succeed; ``last_logs`` holds the target's last log lines."""

    kind = Kind.FAILED

    def __init__(self, reason: str, *, last_logs: Iterable[str] = ()) -> None:
        super().__init__(reason)
        self.last_logs = list(last_logs)


class Unavailable(ActionError):
    """A dependency (Docker, Proxmox, the database) cannot be reached or is not configured."""

    kind = Kind.UNAVAILABLE


class StartupError(Exception):
    """The daemon cannot start; ``str()`` is one line (``<file>:<line>: <reason>`` or ``<SETTING>: <reason>``)."""
