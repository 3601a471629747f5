"""The closed catalogue of actions Wingman can run, with their default tiers and roles.

This is the whole list: there is no "run this command" action, and a policy file may
re-tier or restrict these actions but never add one. An action enters the list only with
its handler (executor/actions.py): an entry without one would collect approvals for
something that cannot run (which is why `remove` and `prune` are not here). Names are the chat commands, with
the `/vm` sub-commands dotted (`vm.start`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from policy.model import Role, TargetKind, Tier


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One action: what it needs and what it touches.

    `mutating` is True for every action whose default tier is above 0; such an action can
    never be re-tiered to 0 and is refused in read-only mode. `dangerous` is True for the
    default tier-3 actions and stays True when a policy file re-tiers them, so they
    always need WINGMAN_ALLOW_DANGEROUS_OPS. `target_required` is False only for the
    listing reads (`status`, `vm.status`), whose target is optional.
    """

    name: str
    tier: Tier
    min_role: Role
    target: TargetKind
    target_required: bool
    mutating: bool
    dangerous: bool
    usage: str
    description: str
    takes_stack: bool = False
    stack_only: bool = False


# The container actions that may name a whole Compose stack, as `stack:<project>`.
STACK_ACTIONS = frozenset({"status", "restart", "update"})
# The actions that act on a whole stack only.
STACK_ONLY_ACTIONS = frozenset({"update"})


def _entry(
    name: str, tier: Tier, min_role: Role, target: TargetKind, usage: str, description: str
) -> CatalogueEntry:
    optional_target = name in ("status", "vm.status")
    return CatalogueEntry(
        name=name,
        tier=tier,
        min_role=min_role,
        target=target,
        target_required=target is not TargetKind.NONE and not optional_target,
        mutating=tier > Tier.READ,
        dangerous=tier == Tier.TWO_APPROVALS,
        usage=usage,
        description=description,
        takes_stack=name in STACK_ACTIONS,
        stack_only=name in STACK_ONLY_ACTIONS,
    )


_NONE, _CONTAINER, _VM = TargetKind.NONE, TargetKind.CONTAINER, TargetKind.VM
_READ, _NOW, _ONE, _TWO = Tier.READ, Tier.IMMEDIATE, Tier.ONE_APPROVAL, Tier.TWO_APPROVALS
_V, _O, _AP, _AD = Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN

_ENTRIES = (
    _entry("help", _READ, _V, _NONE, "/help", "list the commands you may use"),
    _entry("whoami", _READ, _V, _NONE, "/whoami", "show your Telegram id and role"),
    _entry("status", _READ, _V, _CONTAINER, "/status [name|project]", "show allowed containers by stack, or one"),
    _entry("vm.status", _READ, _V, _VM, "/vm status [vmid]", "show allowed VMs, or one"),
    _entry("pending", _READ, _V, _NONE, "/pending", "list requests waiting for approval"),
    _entry("updates", _READ, _V, _NONE, "/updates", "check the registries for newer images now"),
    _entry("audit", _READ, _AP, _NONE, "/audit [n]", "show the latest audit entries"),
    _entry("verify", _READ, _AD, _NONE, "/verify", "verify the audit chain"),
    _entry("logs", _NOW, _O, _CONTAINER, "/logs <name> [lines]", "show a container's recent logs"),
    _entry("restart", _NOW, _O, _CONTAINER, "/restart <name|project>", "restart a container, or a stack in dependency order"),
    _entry("start", _NOW, _O, _CONTAINER, "/start <name>", "start a stopped container"),
    _entry("vm.start", _NOW, _O, _VM, "/vm start <vmid>", "start a VM"),
    _entry("deploy", _ONE, _O, _CONTAINER, "/deploy <name> <image:tag>", "deploy a new image"),
    _entry("rollback", _ONE, _O, _CONTAINER, "/rollback <name>", "go back to the previous image"),
    _entry("update", _ONE, _O, _CONTAINER, "/update <project>", "apply a stack's updates as one, in dependency order"),
    _entry("stop", _ONE, _O, _CONTAINER, "/stop <name>", "stop a container"),
    _entry("vm.shutdown", _ONE, _O, _VM, "/vm shutdown <vmid>", "shut a VM down cleanly"),
    _entry("vm.reboot", _ONE, _O, _VM, "/vm reboot <vmid>", "reboot a VM"),
    _entry("vm.snapshot", _ONE, _O, _VM, "/vm snapshot <vmid>", "take a snapshot of a VM"),
    _entry("vm.rollback", _TWO, _O, _VM, "/vm rollback <vmid> <snapshot>", "restore a snapshot"),
)

CATALOGUE: Mapping[str, CatalogueEntry] = MappingProxyType({e.name: e for e in _ENTRIES})
"""Every action, by name, in the order /help lists them."""


def approvals_needed(tier: int) -> int:
    """How many approvers (none of them the requester) an action of this tier waits for."""
    if tier not in (0, 1, 2, 3):
        raise ValueError(f"tiers are 0 to 3, not {tier!r}")
    return max(0, tier - 1)


def min_role_for_tier(tier: int) -> Role:
    """The lowest role a tier allows: reads are for viewers, anything else for operators."""
    return Role.VIEWER if tier == Tier.READ else Role.OPERATOR
