"""The decisions: may this user run this action on this target, may this user approve.

`decide` checks a request in a fixed order and stops at the first refusal:

1. unknown user (no detail is given away);
2. unknown action;
3. role below the action's minimum;
4. target missing where one is required, or given where none is taken;
5. target not a valid name / vmid (before any matching);
6. target outside the allowlist (an empty allowlist allows nothing) or outside the
   action's target restriction from the policy file;
7. for VM actions, a node (when given) that is invalid or not on the node allowlist;
8. read-only mode: every mutating action and every tier above 0 is refused;
9. dangerous actions without WINGMAN_ALLOW_DANGEROUS_OPS are refused;
10. tier 0 and 1 are allowed at once; tier 2 and 3 need approval.

The executor should pass the VM's node whenever it knows it; without a node only the
vmid is checked. Likewise it passes a container's labels (as the engine has them now):
an allowlist entry `stack:<project>` allows a container exactly when its
`com.docker.compose.project` label names that project, so a stack recreated by Compose is
still allowed. A target written `stack:<project>` names a whole stack; only the actions
marked `takes_stack` accept one, and only when `stack:<project>` itself is allowlisted.

`run_time_refusal` decides an approved request again, just before it runs, under the
policy the executor holds then (which may be narrower than when it was approved).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from policy import names
from policy.catalogue import CATALOGUE, CatalogueEntry, approvals_needed, min_role_for_tier
from policy.model import ApprovalCheck, Decision, Policy, Role, TargetKind, Tier, Verdict

NOT_AUTHORISED = "you are not authorised to use this bot"


def effective_entry(policy: Policy, action: str) -> CatalogueEntry | None:
    """The catalogue entry as this policy has it (re-tiered), or None for an unknown action.

    Re-tiering never lowers the minimum role below the catalogue's, and raising an action
    above tier 0 raises its minimum role to at least operator. An action re-tiered to 3
    becomes dangerous; a dangerous action re-tiered lower stays dangerous.
    """
    entry = CATALOGUE.get(action)
    if entry is None:
        return None
    override = policy.overrides.get(action)
    if override is None or override.tier is None:
        return entry
    tier = override.tier
    # A validated file never re-tiers a mutating action to 0, nor a tier-3 action below 2;
    # a hand-built Policy might.
    if entry.mutating and tier == Tier.READ:
        tier = entry.tier
    if entry.tier == Tier.TWO_APPROVALS and tier < Tier.ONE_APPROVAL:
        tier = entry.tier
    return dataclasses.replace(
        entry,
        tier=tier,
        min_role=max(entry.min_role, min_role_for_tier(tier)),
        dangerous=entry.dangerous or tier == Tier.TWO_APPROVALS,
    )


def decide(
    policy: Policy,
    *,
    user_id: int | None,
    action: str,
    target: str | int | None,
    node: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Decision:
    """Whether `user_id` may run `action` on `target` (and `node`, or the container's `labels`), and why.

    Never raises.
    """
    role = policy.role_of(user_id)
    if role is None:
        return Decision(Verdict.DENY, NOT_AUTHORISED, None, 0, None)
    entry = effective_entry(policy, action) if isinstance(action, str) else None
    if entry is None:
        return Decision(Verdict.DENY, f"unknown action {names.show(action)}", None, 0, role)

    def deny(reason: str) -> Decision:
        return Decision(Verdict.DENY, reason, entry.tier, 0, role)

    if role < entry.min_role:
        return deny(
            f"{entry.name} needs the {entry.min_role.label} role or higher;"
            f" you are {role.with_article}"
        )
    problem = _target_problem(policy, entry, target, node, labels)
    if problem is not None:
        return deny(problem)
    refusal = _mode_refusal(policy, entry)
    if refusal is not None:
        return deny(refusal)
    needed = approvals_needed(entry.tier)
    if needed == 0:
        reason = (
            f"{entry.name} is a read" if entry.tier == Tier.READ else f"{entry.name} runs at once"
        )
        return Decision(Verdict.ALLOW, reason, entry.tier, 0, role)
    if needed == 1:
        reason = f"{entry.name} needs approval by 1 approver other than you"
    else:
        reason = f"{entry.name} needs approval by {needed} approvers, neither of them you"
    return Decision(Verdict.NEEDS_APPROVAL, reason, entry.tier, needed, role)


def _target_problem(
    policy: Policy, entry: CatalogueEntry, target: object, node: object, labels: object = None
) -> str | None:
    if entry.target is not TargetKind.VM and node is not None:
        return f"{entry.name} takes no node"
    if entry.target is TargetKind.NONE:
        return f"{entry.name} takes no target" if target is not None else None
    if target is None:
        if entry.target_required:
            what = "a container name" if entry.target is TargetKind.CONTAINER else "a vmid"
            return f"{entry.name} needs {what}"
        problem = None
    elif entry.target is TargetKind.CONTAINER:
        problem = _container_problem(policy, entry, target, labels)
    else:
        problem = _vm_problem(policy, entry, target)
    if problem is None and entry.target is TargetKind.VM and node is not None:
        problem = _node_problem(policy, node)
    return problem


def _container_problem(
    policy: Policy, entry: CatalogueEntry, target: object, labels: object = None
) -> str | None:
    if isinstance(target, str) and target.startswith(names.STACK_PREFIX):
        return _stack_problem(policy, entry, target)
    if entry.stack_only:
        return f"{entry.name} acts on a whole Compose stack; name its project, e.g. /{entry.name} immich"
    problem = names.container_name_problem(target)
    if problem is not None:
        return problem
    assert isinstance(target, str)  # container_name_problem rejects non-strings
    if not names.container_matches(target, policy.containers, labels):
        empty = ", which is empty" if not policy.containers else ""
        return f"{target} is not on the container allowlist{empty}"
    restriction = _restriction(policy, entry)
    if restriction is not None and not names.container_matches(target, restriction, labels):
        return f"the policy does not allow {entry.name} on {target}"
    return None


def _stack_problem(policy: Policy, entry: CatalogueEntry, target: str) -> str | None:
    """A whole stack, `stack:<project>`: allowed only where that very entry is allowlisted."""
    problem = names.project_name_problem(target.removeprefix(names.STACK_PREFIX))
    if problem is not None:
        return problem
    if not entry.takes_stack:
        return f"{entry.name} acts on one container; name a container, not a stack"
    if target not in policy.containers:
        empty = ", which is empty" if not policy.containers else ""
        return f"{target} is not on the container allowlist{empty}"
    restriction = _restriction(policy, entry)
    if restriction is not None and target not in restriction:
        return f"the policy does not allow {entry.name} on {target}"
    return None


def _vm_problem(policy: Policy, entry: CatalogueEntry, target: object) -> str | None:
    vmid = names.parse_vmid(target)
    if vmid is None:
        return names.vmid_problem(target)
    if vmid not in policy.vms:
        empty = ", which is empty" if not policy.vms else ""
        return f"VM {vmid} is not on the VM allowlist{empty}"
    restriction = _restriction(policy, entry)
    if restriction is not None and vmid not in restriction:
        return f"the policy does not allow {entry.name} on VM {vmid}"
    return None


def _node_problem(policy: Policy, node: object) -> str | None:
    problem = names.node_name_problem(node)
    if problem is not None:
        return problem
    if node not in policy.nodes:
        empty = ", which is empty" if not policy.nodes else ""
        return f"node {node} is not on the node allowlist{empty}"
    return None


def _restriction(policy: Policy, entry: CatalogueEntry) -> frozenset[str | int] | None:
    override = policy.overrides.get(entry.name)
    return None if override is None else override.targets


def _mode_refusal(policy: Policy, entry: CatalogueEntry) -> str | None:
    """Why the policy's modes refuse this action whoever asks and whatever the target."""
    if policy.read_only and (entry.mutating or entry.tier > Tier.READ):
        return "read-only mode: only reads are allowed"
    if entry.dangerous and not policy.allow_dangerous_ops:
        return (
            f"{entry.name} is a dangerous operation, and dangerous operations are turned off"
            " (WINGMAN_ALLOW_DANGEROUS_OPS)"
        )
    return None


def may_approve(
    policy: Policy, *, approver_id: int, requester_id: int, already_approved_by: frozenset[int]
) -> ApprovalCheck:
    """Whether this tap by `approver_id` counts as an approval of `requester_id`'s request.

    Only approvers and admins count; the requester never counts, whatever their role;
    an approver counts once.
    """
    role = policy.role_of(approver_id)
    if role is None:
        return ApprovalCheck(False, NOT_AUTHORISED, None)
    if approver_id == requester_id:
        return ApprovalCheck(False, "you cannot approve your own request", role)
    if role < Role.APPROVER:
        return ApprovalCheck(
            False, f"only approvers can approve; you are {role.with_article}", role
        )
    if approver_id in already_approved_by:
        return ApprovalCheck(False, "you already approved this", role)
    return ApprovalCheck(True, "approval counted", role)


def run_time_refusal(
    policy: Policy,
    *,
    requester_id: int,
    action: str,
    target: str | int | None,
    approved_by: frozenset[int],
    labels: Mapping[str, str] | None = None,
) -> str | None:
    """Why an approved request may no longer run under `policy`, or None when it still may.

    The request is decided again as when it was made (role, target and allowlists, modes,
    dangerous operations), each approver must still be one who may approve it, and the
    votes must still be as many as the action's tier now asks for. Reasons speak of the
    requester, not "you": they are shown in the team chat.
    """
    decision = decide(policy, user_id=requester_id, action=action, target=target, labels=labels)
    if decision.verdict is Verdict.DENY:
        if decision.role is None:
            return f"the requester tg:{requester_id} no longer has a role"
        return decision.reason.replace("; you are ", "; the requester is ")
    for approver in sorted(approved_by):
        check = may_approve(
            policy, approver_id=approver, requester_id=requester_id, already_approved_by=frozenset()
        )
        if not check.allowed:
            return f"tg:{approver} may no longer approve it"
    if decision.approvals_needed > len(approved_by):
        return (
            f"{action} now needs {decision.approvals_needed} approvals; it has {len(approved_by)}"
        )
    return None


def needs_one_time_code(policy: Policy, tier: int) -> bool:
    """Whether an approval of this tier counts a vote only with the approver's one-time code."""
    return tier >= Tier.ONE_APPROVAL and tier >= policy.one_time_codes_from_tier


def container_visible(policy: Policy, name: str, labels: Mapping[str, str] | None = None) -> bool:
    """Whether /status may show this container (with these labels): exactly when `status` on it is allowed.

    A `stack:<project>` name is never a container: it is not visible here.
    """
    entry = effective_entry(policy, "status")
    assert entry is not None
    if not isinstance(name, str) or name.startswith(names.STACK_PREFIX):
        return False
    return _container_problem(policy, entry, name, labels) is None


def vm_visible(policy: Policy, vmid: int | str, node: str | None) -> bool:
    """Whether /vm status may show this VM on this node: exactly when `vm.status` allows it."""
    entry = effective_entry(policy, "vm.status")
    assert entry is not None
    if _vm_problem(policy, entry, vmid) is not None:
        return False
    return node is None or _node_problem(policy, node) is None


def allowed_actions(policy: Policy, user_id: int | None) -> list[CatalogueEntry]:
    """The actions this user may run under this policy, re-tiered, in catalogue order (for /help).

    Left out: actions above the user's role, actions the modes refuse (read-only,
    dangerous operations off), and actions that need a target when no target could pass
    (empty allowlist, or an empty target list in the policy file; for a stack-only action,
    no `stack:` entry).
    """
    role = policy.role_of(user_id)
    if role is None:
        return []
    result = []
    for name in CATALOGUE:
        entry = effective_entry(policy, name)
        assert entry is not None
        if role < entry.min_role or _mode_refusal(policy, entry) is not None:
            continue
        if entry.target_required and _no_target_can_pass(policy, entry):
            continue
        result.append(entry)
    return result


def _no_target_can_pass(policy: Policy, entry: CatalogueEntry) -> bool:
    allowlist = policy.containers if entry.target is TargetKind.CONTAINER else policy.vms
    restriction = _restriction(policy, entry)
    if entry.stack_only:  # only a stack: entry can ever pass
        stacks = [t for t in allowlist if isinstance(t, str) and t.startswith(names.STACK_PREFIX)]
        return not stacks or (restriction is not None and not set(stacks) & set(restriction))
    return not allowlist or (restriction is not None and not restriction)
