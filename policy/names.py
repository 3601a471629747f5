"""What a valid container name, container pattern, vmid, node name and user id look like.

Every target is checked here before it is compared with an allowlist, so a name with
shell or path characters never reaches the matching (or the driver) at all. The
functions answer with a one-line reason (or None when the value is fine) instead of
raising, so each caller can place the reason in its own message.

Container allowlist patterns are exact names, `stack:<project>` (every container Compose
labelled with that project, see `project_of`), or one trailing glob: a name prefix ending
in `-`, `_` or `.`, then `*` (`app-*`). The `*` stands for ONE OR MORE characters:
`app-*` matches `app-1` and `app-web`, but not `app-` itself and not `xapp-1`. Requiring
the separator keeps `web*` from quietly matching `webmail`; a bare `*` is refused because
an allowlist that allows everything is no allowlist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Docker's own rule for container names; ASCII only, checked with fullmatch.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_CONTAINER_PREFIX = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,126}[-_.]")
_GLOB_CHARS = frozenset("*?[]")
# Proxmox node names are host names: one DNS label.
_NODE_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
# Plain decimal only: no sign, no leading zero, no '_', no non-ASCII digits (int() takes all).
_DECIMAL = re.compile(r"[1-9][0-9]*")

# Compose's own rule for project names (it lowercases what it is given); ASCII only.
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
STACK_PREFIX = "stack:"
# The label Compose puts on every container of a project (v1 and v2 alike).
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"

VMID_MIN = 100  # Proxmox reserves ids below 100
VMID_MAX = 999_999_999

CONTAINER_NAME_RULE = (
    "container names are letters, digits, '_', '.' and '-', start with a letter or digit,"
    " and are at most 128 characters"
)


def show(value: object, limit: int = 40) -> str:
    """A short, quoted, ASCII-only, one-line rendering of an untrusted value for a reason."""
    text = ascii(value) if isinstance(value, str) else ascii(repr(value))[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def container_name_problem(name: object) -> str | None:
    """None when `name` is a valid Docker container name, otherwise why it is not."""
    if not isinstance(name, str):
        return f"{show(name)} is not a container name: {CONTAINER_NAME_RULE}"
    if _CONTAINER_NAME.fullmatch(name) is None:
        return f"{show(name)} is not a valid container name: {CONTAINER_NAME_RULE}"
    return None


def container_pattern_problem(pattern: object) -> str | None:
    """None when `pattern` is a valid container allowlist entry, otherwise why it is not."""
    if not isinstance(pattern, str):
        return f"{show(pattern)} is not a container name or 'prefix-*' pattern"
    if pattern.startswith(STACK_PREFIX):
        return project_name_problem(pattern.removeprefix(STACK_PREFIX))
    if not _GLOB_CHARS.intersection(pattern):
        return container_name_problem(pattern)
    if pattern == "*":
        return "a bare '*' would allow every container; list names or patterns like 'app-*'"
    if _GLOB_CHARS.intersection(pattern[:-1]) or not pattern.endswith("*"):
        return (
            f"{show(pattern)}: the only pattern allowed is a name prefix followed by one"
            " trailing '*', like 'app-*'"
        )
    if _CONTAINER_PREFIX.fullmatch(pattern[:-1]) is None:
        return (
            f"{show(pattern)}: the part before '*' must be the start of a valid container name"
            " ending in '-', '_' or '.', like 'app-*'"
        )
    return None


def project_name_problem(name: object) -> str | None:
    """None when `name` is a valid Compose project name, otherwise why it is not."""
    if not isinstance(name, str) or _PROJECT_NAME.fullmatch(name) is None:
        return (
            f"{show(name)} is not a Compose project name: lowercase letters, digits, '_' and '-',"
            " starting with a letter or digit"
        )
    return None


def stack_target(target: object) -> str | None:
    """The project when `target` is written `stack:<project>` (a whole stack), else None."""
    if isinstance(target, str) and target.startswith(STACK_PREFIX):
        project = target.removeprefix(STACK_PREFIX)
        return project if project_name_problem(project) is None else None
    return None


def project_of(labels: object) -> str | None:
    """The Compose project a container's labels name, when it is a valid project name."""
    if not isinstance(labels, Mapping):
        return None
    project = labels.get(COMPOSE_PROJECT_LABEL)
    return project if isinstance(project, str) and project_name_problem(project) is None else None


def container_matches(name: str, patterns: Iterable[object], labels: object = None) -> bool:
    """Whether a (valid) container name, with its labels, is allowed by any of the patterns.

    Only a well-formed `prefix-*` pattern is treated as a glob; a `stack:<project>` entry
    matches every container whose labels name that project (`labels` as the engine has
    them NOW: a recreated container matches again); anything else is compared exactly, so
    a malformed pattern can never widen the match.
    """
    patterns = tuple(patterns)
    project = project_of(labels)
    if project is not None and STACK_PREFIX + project in patterns:
        return True
    for pattern in patterns:
        if not isinstance(pattern, str):
            continue
        if _is_glob(pattern):
            prefix = pattern[:-1]
            if name.startswith(prefix) and len(name) > len(prefix):
                return True
        elif name == pattern:
            return True
    return False


def _is_glob(pattern: str) -> bool:
    return pattern.endswith("*") and _CONTAINER_PREFIX.fullmatch(pattern[:-1]) is not None


def parse_vmid(value: object) -> int | None:
    """The vmid as an int when `value` is one (an int or plain decimal text in Proxmox's range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if _DECIMAL.fullmatch(value) is None or len(value) > len(str(VMID_MAX)):
            return None
        value = int(value)
    if isinstance(value, int) and VMID_MIN <= value <= VMID_MAX:
        return value
    return None


def vmid_problem(value: object) -> str:
    """Why `value` is not a vmid (call only when parse_vmid returned None)."""
    return f"{show(value)} is not a vmid (a whole number from {VMID_MIN} to {VMID_MAX})"


def node_name_problem(name: object) -> str | None:
    """None when `name` is a valid Proxmox node name, otherwise why it is not."""
    if not isinstance(name, str) or _NODE_NAME.fullmatch(name) is None:
        return (
            f"{show(name)} is not a valid node name (a host name: letters, digits and '-',"
            " at most 63 characters)"
        )
    return None


def parse_user_id(value: object) -> int | None:
    """The Telegram user id as an int when `value` is one (a positive int or decimal text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        # Telegram ids fit in 52 bits; the length cap keeps int() away from huge texts.
        if _DECIMAL.fullmatch(value) is None or len(value) > 20:
            return None
        value = int(value)
    if isinstance(value, int) and value > 0:
        return value
    return None
