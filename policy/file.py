"""Reading the optional YAML policy file (WINGMAN_POLICY) into a validated `PolicyFile`.

The format, every key optional, nothing else allowed::

    roles:                      # Telegram user ids
      admins: [1]
      approvers: [2]
      operators: [3]
      viewers: [4]
    allowlists:
      containers: [web, "app-*", "stack:immich"]   # names, prefix-* globs, whole Compose projects
      vms: [100, 101]              # vmids, 100..999999999
      nodes: [pve1]                # Proxmox node names
    read_only: false
    allow_dangerous_ops: false     # can only turn dangerous operations OFF
    actions:                       # catalogue actions only; the file cannot add one
      restart: {tier: 2}           # tiers 0..3; an action that changes things cannot be 0,
                                   # and a tier-3 action cannot go below 2
      deploy: {targets: [web]}     # narrows the allowlist for this action
    one_time_codes_from_tier: 2    # 2 or 3 (the default): approvals of this tier and
                                   # above also need each approver's one-time code

Numbers are plain decimals; quote a container name that looks like a number or a
boolean (`"123"`, `"yes"`). How the file is merged with the settings is described in
`Policy.from_settings`.

Any problem — unreadable, not UTF-8, not YAML, not a mapping, empty, an unknown key or
action, a wrong type, a duplicate key, a bad tier, name or pattern — raises PolicyError,
whose str is one line `<file>:<line>: <reason>` (or `<file>: <reason>` when the file
cannot be read at all). Only the YAML composer runs, with the safe loader: no tag is
ever constructed into an object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NoReturn, TypeVar

import yaml

from policy import names
from policy.catalogue import CATALOGUE
from policy.model import ActionOverride, PolicyError, PolicyFile, TargetKind, Tier

_MAX_BYTES = 1 << 20  # a policy is a page of YAML; anything this big is the wrong file

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TRUE = frozenset({"true", "yes", "on"})
# YAML 1.1 reads 017 as octal and 1_000 as 1000; only plain decimals are accepted.
_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")

_T = TypeVar("_T")


def load_policy_file(path: str | os.PathLike[str]) -> PolicyFile:
    """Read, parse and validate a policy file; raise PolicyError (one line) on any problem."""
    where = os.fspath(path)
    text = _read_text(where)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "cannot parse"
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(where, f"not valid YAML: {problem}", line) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character  # the code point, for text input
        shown = f"U+{char:04X}" if isinstance(char, int) else names.show(char)
        reason = f"contains a character YAML does not allow: {shown}"
        raise PolicyError(where, reason, line) from None
    except yaml.YAMLError as exc:
        raise PolicyError(where, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise PolicyError(where, "not valid YAML: nested too deeply") from None
    if root is None:
        raise PolicyError(where, "the policy file is empty", 1)
    return _Reader(where).policy_file(root)


def _read_text(where: str) -> str:
    try:
        with open(where, "rb") as stream:
            data = stream.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError(where, "no such file") from None
    except IsADirectoryError:
        raise PolicyError(where, "is a directory, not a policy file") from None
    except PermissionError:
        raise PolicyError(where, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError(where, f"cannot be read: {reason}") from None
    if len(data) > _MAX_BYTES:
        raise PolicyError(where, f"larger than {_MAX_BYTES} bytes; not a policy file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(where, "not UTF-8 text", data.count(b"\n", 0, exc.start) + 1) from None


class _Reader:
    """Walks the composed YAML nodes, so every complaint can name the line it is about."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, node: yaml.Node, reason: str) -> NoReturn:
        raise PolicyError(self.where, reason, node.start_mark.line + 1)

    def policy_file(self, root: yaml.Node) -> PolicyFile:
        if not isinstance(root, yaml.MappingNode):
            self.fail(
                root, "the policy file must be a mapping of settings (roles:, allowlists:, ...)"
            )
        top = self.mapping(
            root,
            "the policy file",
            ("roles", "allowlists", "read_only", "allow_dangerous_ops", "actions", "one_time_codes_from_tier"),
        )
        roles = self.mapping(top["roles"], "roles", ("admins", "approvers", "operators", "viewers"))
        allow = self.mapping(top["allowlists"], "allowlists", ("containers", "vms", "nodes"))
        return PolicyFile(
            path=self.where,
            admins=self.sequence(roles["admins"], "admins", self.user_id),
            approvers=self.sequence(roles["approvers"], "approvers", self.user_id),
            operators=self.sequence(roles["operators"], "operators", self.user_id),
            viewers=self.sequence(roles["viewers"], "viewers", self.user_id),
            containers=self.sequence(allow["containers"], "containers", self.container_pattern),
            vms=self.sequence(allow["vms"], "vms", self.vmid),
            nodes=self.sequence(allow["nodes"], "nodes", self.node_name),
            read_only=self.flag(top["read_only"], "read_only"),
            allow_dangerous_ops=self.flag(top["allow_dangerous_ops"], "allow_dangerous_ops"),
            actions=self.actions(top["actions"]),
            one_time_codes_from_tier=self.code_tier(top["one_time_codes_from_tier"]),
        )

    def mapping(
        self, node: yaml.Node | None, what: str, allowed: tuple[str, ...] | None
    ) -> dict[str, yaml.Node | None]:
        """A mapping's values by key (missing keys map to None); null counts as empty."""
        found: dict[str, yaml.Node | None] = dict.fromkeys(allowed or (), None)
        if node is None or _is_null(node):
            return found
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping")
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                self.fail(key_node, f"{what}: keys must be names")
            key = key_node.value
            if allowed is not None and key not in allowed:
                self.fail(
                    key_node,
                    f"unknown key {names.show(key)} in {what} (allowed: {', '.join(allowed)})",
                )
            if key in first_line:
                self.fail(
                    key_node, f"duplicate key {names.show(key)} (first on line {first_line[key]})"
                )
            first_line[key] = key_node.start_mark.line + 1
            found[key] = value_node
        return found

    def sequence(
        self, node: yaml.Node | None, what: str, item: Callable[[yaml.Node, str], _T]
    ) -> frozenset[_T]:
        if node is None or _is_null(node):
            return frozenset()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list, like [a, b]")
        return frozenset(item(element, what) for element in node.value)

    def scalar(self, node: yaml.Node, tag: str, what: str) -> str:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == tag):
            self.fail(node, what)
        return str(node.value)

    def integer(self, node: yaml.Node, what: str) -> int:
        text = self.scalar(node, _INT, f"{what} must be a whole number")
        if _PLAIN_INT.fullmatch(text) is None:
            self.fail(node, f"{what}: write {names.show(text)} as a plain decimal number")
        return int(text)

    def flag(self, node: yaml.Node | None, what: str) -> bool | None:
        if node is None:
            return None
        return self.scalar(node, _BOOL, f"{what} must be true or false").lower() in _TRUE

    def code_tier(self, node: yaml.Node | None) -> Tier | None:
        if node is None:
            return None
        what = "one_time_codes_from_tier"
        number = self.integer(node, what)
        if number not in (2, 3):
            # Tiers 0 and 1 have no approval to attach a code to; tier 3 always needs one.
            self.fail(node, f"{what} must be 2 or 3 (tier-3 approvals always need the code)")
        return Tier(number)

    def user_id(self, node: yaml.Node, what: str) -> int:
        user_id = names.parse_user_id(self.integer(node, f"{what}: a Telegram user id"))
        if user_id is None:
            self.fail(node, f"{what}: a Telegram user id must be a positive whole number")
        return user_id

    def vmid(self, node: yaml.Node, what: str) -> int:
        value = self.integer(node, f"{what}: a vmid")
        vmid = names.parse_vmid(value)
        if vmid is None:
            self.fail(node, f"{what}: {names.vmid_problem(value)}")
        return vmid

    def container_pattern(self, node: yaml.Node, what: str) -> str:
        pattern = self.scalar(
            node, _STR, f'{what}: expected a container name or pattern (quote names like "123")'
        )
        problem = names.container_pattern_problem(pattern)
        if problem is not None:
            self.fail(node, f"{what}: {problem}")
        return pattern

    def node_name(self, node: yaml.Node, what: str) -> str:
        name = self.scalar(node, _STR, f"{what}: expected a node name")
        problem = names.node_name_problem(name)
        if problem is not None:
            self.fail(node, f"{what}: {problem}")
        return name

    def actions(self, node: yaml.Node | None) -> Mapping[str, ActionOverride]:
        overrides: dict[str, ActionOverride] = {}
        for action_node, value in self.mapping_with_keys(node, "actions"):
            action = action_node.value
            entry = CATALOGUE.get(action)
            if entry is None:
                self.fail(
                    action_node,
                    f"unknown action {names.show(action)}; a policy file can re-tier or restrict"
                    " catalogue actions but not add one",
                )
            fields = self.mapping(value, action, ("tier", "targets"))
            tier_node, targets_node = fields["tier"], fields["targets"]
            if tier_node is None and targets_node is None:
                self.fail(value, f"{action}: give a tier, targets, or both")
            tier = None
            if tier_node is not None:
                number = self.integer(tier_node, f"{action}: tier")
                if number not in (0, 1, 2, 3):
                    self.fail(tier_node, f"{action}: tier must be 0, 1, 2 or 3")
                if number == 0 and entry.mutating:
                    self.fail(
                        tier_node, f"{action} changes things, so it cannot be tier 0 (a read)"
                    )
                if entry.tier == Tier.TWO_APPROVALS and number < Tier.ONE_APPROVAL:
                    self.fail(
                        tier_node,
                        f"{action} is a tier-3 (dangerous) action: a policy file may lower it"
                        " to tier 2 at most, never to a tier that runs without approval",
                    )
                tier = Tier(number)
            targets: frozenset[str | int] | None = None
            if targets_node is not None:
                what = f"{action}: targets"
                if entry.target is TargetKind.NONE:
                    self.fail(
                        targets_node, f"{action} takes no target, so it cannot be given targets"
                    )
                elif entry.target is TargetKind.CONTAINER:
                    targets = frozenset(self.sequence(targets_node, what, self.container_pattern))
                else:
                    targets = frozenset(self.sequence(targets_node, what, self.vmid))
            overrides[action] = ActionOverride(tier=tier, targets=targets)
        return MappingProxyType(overrides)

    def mapping_with_keys(
        self, node: yaml.Node | None, what: str
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """A mapping's (key node, value node) pairs, keys checked as names and unique."""
        if node is None or _is_null(node):
            return []
        self.mapping(node, what, None)  # shape, key types and duplicates
        assert isinstance(node, yaml.MappingNode)
        return [(key, value) for key, value in node.value if isinstance(key, yaml.ScalarNode)]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL
