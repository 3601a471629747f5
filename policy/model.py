"""The words policy decisions are made of: roles, tiers, verdicts, the policy itself.

`Policy` is the executor's whole authorisation state as one immutable value: who holds
which role, which containers, VMs and nodes may be touched, the two modes (read-only,
dangerous operations) and the policy file's per-action overrides. Build it with
`Policy.from_settings`, which validates every input and merges an optional, already
validated `PolicyFile` into the settings. A bare `Policy()` allows nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from policy import names


class Role(enum.IntEnum):
    """A user's role; each role has every right of the roles below it."""

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def with_article(self) -> str:
        """'a viewer', 'an operator': for reasons shown to people."""
        article = "an" if self.label[0] in "aeiou" else "a"
        return f"{article} {self.label}"


class Tier(enum.IntEnum):
    """How much ceremony an action needs before it runs."""

    READ = 0  # reads: run at once, allowed in read-only mode
    IMMEDIATE = 1  # changes that run at once
    ONE_APPROVAL = 2  # wait for one approver who is not the requester
    TWO_APPROVALS = 3  # wait for two distinct approvers, neither the requester


class TargetKind(enum.Enum):
    """What an action's target names."""

    NONE = "none"
    CONTAINER = "container"
    VM = "vm"


class Verdict(enum.StrEnum):
    """The outcome of `decide`; string values so they can be stored and sent as they are."""

    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """What `decide` says about one request.

    `reason` is always a one-line sentence fit to show the requester. `tier` is the
    action's tier under this policy (None for an unknown action or user); `role` is the
    requester's role (None for an unknown user); `approvals_needed` is 0 unless the
    verdict is NEEDS_APPROVAL.
    """

    verdict: Verdict
    reason: str
    tier: Tier | None
    approvals_needed: int
    role: Role | None


@dataclass(frozen=True, slots=True)
class ApprovalCheck:
    """What `may_approve` says about one approval tap."""

    allowed: bool
    reason: str
    role: Role | None


class PolicyError(Exception):
    """A policy setting or policy file that cannot be used, located for the operator.

    `str()` is always one line: `<file>:<line>: <reason>` when a line is known, otherwise
    `<where>: <reason>` (a file that cannot be read, or a setting name).
    """

    def __init__(self, where: str, reason: str, line: int | None = None) -> None:
        super().__init__(where, reason, line)
        self.where = where
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        place = self.where if self.line is None else f"{self.where}:{self.line}"
        return _one_line(f"{place}: {self.reason}")


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True, slots=True)
class ActionOverride:
    """A policy file's change to one catalogue action: a new tier, a narrower target list.

    `targets` uses the matching of the allowlist for the action's kind (container names
    and `prefix-*` globs, or vmids) and only ever narrows: a target must pass both the
    allowlist and this list. None means "not restricted beyond the allowlist".
    """

    tier: Tier | None = None
    targets: frozenset[str | int] | None = None


# Setting names, so a bad value passed to from_settings is reported as the operator wrote it.
_SETTING = {
    "admins": "WINGMAN_ADMINS",
    "approvers": "WINGMAN_APPROVERS",
    "operators": "WINGMAN_OPERATORS",
    "viewers": "WINGMAN_VIEWERS",
    "containers": "WINGMAN_CONTAINER_ALLOWLIST",
    "vms": "WINGMAN_VM_ALLOWLIST",
    "nodes": "WINGMAN_NODE_ALLOWLIST",
    "read_only": "WINGMAN_READ_ONLY",
    "allow_dangerous_ops": "WINGMAN_ALLOW_DANGEROUS_OPS",
}


def _empty_overrides() -> Mapping[str, ActionOverride]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """A validated policy file (see policy.file). None for a mode: the file does not say."""

    path: str
    admins: frozenset[int] = frozenset()
    approvers: frozenset[int] = frozenset()
    operators: frozenset[int] = frozenset()
    viewers: frozenset[int] = frozenset()
    containers: frozenset[str] = frozenset()
    vms: frozenset[int] = frozenset()
    nodes: frozenset[str] = frozenset()
    read_only: bool | None = None
    allow_dangerous_ops: bool | None = None
    actions: Mapping[str, ActionOverride] = field(default_factory=_empty_overrides)
    # The lowest tier whose approvals also need each approver's one-time code (2 or 3).
    one_time_codes_from_tier: Tier | None = None


_NO_FILE = PolicyFile(path="")


def _empty_roles() -> Mapping[int, Role]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may do what, on which targets, in which mode. Immutable; build with from_settings.

    Constructing it directly skips validation; the matching functions stay fail-closed
    for malformed entries (a malformed glob matches nothing but its own exact text,
    which is never a valid container name).
    """

    roles: Mapping[int, Role] = field(default_factory=_empty_roles)
    containers: frozenset[str] = frozenset()
    vms: frozenset[int] = frozenset()
    nodes: frozenset[str] = frozenset()
    read_only: bool = False
    allow_dangerous_ops: bool = False
    overrides: Mapping[str, ActionOverride] = field(default_factory=_empty_overrides)
    # Approvals of this tier and above count a vote only with the approver's one-time code.
    one_time_codes_from_tier: Tier = Tier.TWO_APPROVALS

    def role_of(self, user_id: object) -> Role | None:
        """The user's role, or None for an unknown user (or anything that is not a user id)."""
        # bool is an int subclass: True must not stand in for user 1.
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            return None
        return self.roles.get(user_id)

    @classmethod
    def from_settings(
        cls,
        *,
        admins: Iterable[int | str] = (),
        approvers: Iterable[int | str] = (),
        operators: Iterable[int | str] = (),
        viewers: Iterable[int | str] = (),
        containers: Iterable[str] = (),
        vms: Iterable[int | str] = (),
        nodes: Iterable[str] = (),
        read_only: bool = False,
        allow_dangerous_ops: bool = False,
        file: PolicyFile | None = None,
    ) -> Policy:
        """Validate the executor's settings and merge the policy file into them.

        Merge rules:

        - Roles: the union of the settings and the file. A user named in several role
          lists, in either place, gets the highest of those roles.
        - Allowlists (containers, VMs, nodes): the union of the settings and the file.
          An allowlist that is empty in both places allows nothing.
        - Modes, where the stricter wins: read-only is on if the settings or the file
          turn it on; dangerous operations are allowed only if the settings allow them
          (WINGMAN_ALLOW_DANGEROUS_OPS) and the file does not say
          `allow_dangerous_ops: false` (the file alone can never turn them on).
        - Per-action tiers and target restrictions come from the file only.
        - One-time codes: tier-3 approvals always need them; the file may extend that to
          tier 2 (`one_time_codes_from_tier: 2`), never drop it for tier 3.

        User ids and vmids may be ints or decimal strings. Raises PolicyError naming the
        setting (e.g. `WINGMAN_VM_ALLOWLIST: ...`) for any invalid value.
        """
        extra = file if file is not None else _NO_FILE
        roles: dict[int, Role] = {}
        # Lowest role first, so a later (higher) list overwrites: the highest role wins.
        for role, param, from_env, from_file in (
            (Role.VIEWER, "viewers", viewers, extra.viewers),
            (Role.OPERATOR, "operators", operators, extra.operators),
            (Role.APPROVER, "approvers", approvers, extra.approvers),
            (Role.ADMIN, "admins", admins, extra.admins),
        ):
            for user_id in (*_user_ids(param, from_env), *from_file):
                roles[user_id] = role
        return cls(
            roles=MappingProxyType(roles),
            containers=_checked_names("containers", containers, names.container_pattern_problem) | extra.containers,
            vms=_vmids(vms) | extra.vms,
            nodes=_checked_names("nodes", nodes, names.node_name_problem) | extra.nodes,
            read_only=_flag("read_only", read_only) or extra.read_only is True,
            allow_dangerous_ops=_flag("allow_dangerous_ops", allow_dangerous_ops)
            and extra.allow_dangerous_ops is not False,
            overrides=extra.actions,
            one_time_codes_from_tier=min(Tier.TWO_APPROVALS, extra.one_time_codes_from_tier or Tier.TWO_APPROVALS),
        )


def _items(param: str, values: Iterable[object]) -> list[object]:
    # A bare string is iterable too: "web,app-*" would otherwise become eight one-letter names.
    if isinstance(values, str | bytes):
        raise PolicyError(_SETTING[param], "expected a list of values, not a single string")
    return list(values)


def _user_ids(param: str, values: Iterable[object]) -> frozenset[int]:
    ids = set()
    for value in _items(param, values):
        user_id = names.parse_user_id(value)
        if user_id is None:
            raise PolicyError(
                _SETTING[param],
                f"{names.show(value)} is not a Telegram user id (a positive whole number)",
            )
        ids.add(user_id)
    return frozenset(ids)


def _checked_names(param: str, values: Iterable[object], problem_of: Callable[[object], str | None]) -> frozenset[str]:
    """Container patterns or node names, each checked by ``problem_of`` (which rejects non-strings)."""
    found = set()
    for value in _items(param, values):
        problem = problem_of(value)
        if problem is not None:
            raise PolicyError(_SETTING[param], problem)
        assert isinstance(value, str)
        found.add(value)
    return frozenset(found)


def _vmids(values: Iterable[object]) -> frozenset[int]:
    vmids = set()
    for value in _items("vms", values):
        vmid = names.parse_vmid(value)
        if vmid is None:
            raise PolicyError(_SETTING["vms"], names.vmid_problem(value))
        vmids.add(vmid)
    return frozenset(vmids)


def _flag(param: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(_SETTING[param], f"expected true or false, got {names.show(value)}")
    return value
