"""The executor's exceptions: each carries a one-line reason for the operator and a status.

The HTTP layer turns ``status`` into a code (see ``executor.protocol``) in one place.
"""

from __future__ import annotations


class ActionError(Exception):
    status = "failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ActionRefused(ActionError):
    """The action was not attempted (bad argument, busy target…); nothing was touched."""

    status = "denied"


class Busy(ActionRefused):
    status = "conflict"


class ActionFailed(ActionError):
    """The action was attempted and did not succeed."""

    status = "failed"


class Unavailable(ActionError):
    """A dependency (Docker, Proxmox, the database) cannot be reached or is not configured."""

    status = "unavailable"


class StartupError(Exception):
    """The daemon cannot start; ``str()`` is one line (``<file>:<line>: <reason>`` or ``<SETTING>: <reason>``)."""
