"""decide(): every action x every role x re-tiering x modes x target, against the rules.

The expected outcome of the big matrix comes from `expected()`, a plain transcription of
DESIGN.md's rules and table (tests/policy/test_policy_catalogue.py pins the same table);
the smaller tables below pin exact reasons and the order in which the checks run.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from types import MappingProxyType

import pytest

from policy import (
    CATALOGUE,
    ActionOverride,
    Decision,
    Policy,
    Role,
    TargetKind,
    Tier,
    Verdict,
    decide,
)

ALLOW, NEEDS_APPROVAL, DENY = Verdict.ALLOW, Verdict.NEEDS_APPROVAL, Verdict.DENY

# One user per role; 99 is known to nobody.
USERS = {None: 99, Role.VIEWER: 14, Role.OPERATOR: 13, Role.APPROVER: 12, Role.ADMIN: 11}
DESIGN_TIER = {
    "help": 0,
    "whoami": 0,
    "status": 0,
    "vm.status": 0,
    "pending": 0,
    "audit": 0,
    "verify": 0,
    "logs": 1,
    "restart": 1,
    "start": 1,
    "vm.start": 1,
    "deploy": 2,
    "rollback": 2,
    "stop": 2,
    "vm.shutdown": 2,
    "vm.reboot": 2,
    "vm.snapshot": 2,
    "vm.rollback": 3,
}
DESIGN_MIN_ROLE = {
    name: Role.VIEWER if tier == 0 else Role.OPERATOR for name, tier in DESIGN_TIER.items()
}
DESIGN_MIN_ROLE |= {"audit": Role.APPROVER, "verify": Role.ADMIN}

# Per target kind: an allowed target, a valid target not on the allowlist, and no target.
TARGETS: dict[TargetKind, list[str | int | None]] = {
    TargetKind.NONE: [None, "web"],
    TargetKind.CONTAINER: ["web", "app-7", "db", None],
    TargetKind.VM: [100, "101", 555, None],
}
ALLOWED_TARGETS = {"web", "app-7", 100, "101"}


@functools.cache
def matrix_policy(read_only: bool, dangerous: bool, action: str, tier: int | None) -> Policy:
    overrides = {} if tier is None else {action: ActionOverride(tier=Tier(tier))}
    return Policy(
        roles=MappingProxyType({uid: role for role, uid in USERS.items() if role is not None}),
        containers=frozenset({"web", "app-*"}),
        vms=frozenset({100, 101}),
        nodes=frozenset({"pve1"}),
        read_only=read_only,
        allow_dangerous_ops=dangerous,
        overrides=MappingProxyType(overrides),
    )


def expected(
    role: Role | None,
    action: str,
    tier_override: int | None,
    read_only: bool,
    dangerous: bool,
    target: str | int | None,
) -> tuple[Verdict, str]:
    """The verdict and a phrase its reason must contain, straight from the design's rules."""
    if role is None:
        return DENY, "not authorised"
    default = DESIGN_TIER[action]
    tier = default if tier_override is None else tier_override
    min_role = max(DESIGN_MIN_ROLE[action], Role.VIEWER if tier == 0 else Role.OPERATOR)
    if role < min_role:
        return DENY, f"needs the {min_role.name.lower()} role"
    kind = CATALOGUE[action].target
    if kind is TargetKind.NONE and target is not None:
        return DENY, "takes no target"
    if kind is not TargetKind.NONE and target is None and action not in ("status", "vm.status"):
        return DENY, f"{action} needs a"
    if target is not None and target not in ALLOWED_TARGETS:
        return DENY, "allowlist"
    if read_only and (default > 0 or tier > 0):
        return DENY, "read-only mode"
    if (default == 3 or tier == 3) and not dangerous:
        return DENY, "dangerous operation"
    if tier == 0:
        return ALLOW, "is a read"
    if tier == 1:
        return ALLOW, "runs at once"
    if tier == 2:
        return NEEDS_APPROVAL, "1 approver other than you"
    return NEEDS_APPROVAL, "2 approvers, neither of them you"


def legal_tiers(action: str) -> list[int | None]:
    # The file loader refuses tier 0 for a mutating action and tiers below 2 for a tier-3 one.
    lowest = {0: 0, 1: 1, 2: 1, 3: 2}[DESIGN_TIER[action]]
    return [None, *range(lowest, 4)]


Case = tuple[str, Role | None, int | None, bool, bool, str | int | None]
MATRIX: list[Case] = [
    (action, role, tier, read_only, dangerous, target)
    for action in DESIGN_TIER
    for role in USERS
    for tier in legal_tiers(action)
    for read_only, dangerous in itertools.product((False, True), repeat=2)
    for target in TARGETS[CATALOGUE[action].target]
]


def assert_sensible(decision: Decision) -> None:
    assert decision.reason.strip()
    assert "\n" not in decision.reason
    if decision.verdict is NEEDS_APPROVAL:
        assert decision.approvals_needed in (1, 2)
    else:
        assert decision.approvals_needed == 0


@pytest.mark.parametrize(("action", "role", "tier", "read_only", "dangerous", "target"), MATRIX)
def test_decision_matrix(
    action: str,
    role: Role | None,
    tier: int | None,
    read_only: bool,
    dangerous: bool,
    target: str | int | None,
) -> None:
    policy = matrix_policy(read_only, dangerous, action, tier)
    decision = decide(policy, user_id=USERS[role], action=action, target=target)

    verdict, phrase = expected(role, action, tier, read_only, dangerous, target)
    assert decision.verdict is verdict, decision.reason
    assert phrase in decision.reason
    assert_sensible(decision)
    assert decision.role is role
    if role is None:
        assert decision.tier is None
    else:
        assert decision.tier == (DESIGN_TIER[action] if tier is None else tier)
    if verdict is NEEDS_APPROVAL:
        assert decision.approvals_needed == decision.tier - 1  # type: ignore[operator]


def test_matrix_covers_every_verdict_for_every_kind() -> None:
    # A guard on the matrix itself: it must reach ALLOW, NEEDS_APPROVAL and DENY widely.
    seen = {
        expected(role, action, tier, ro, dg, target)[0]
        for action, role, tier, ro, dg, target in MATRIX
    }
    assert seen == {ALLOW, NEEDS_APPROVAL, DENY}
    assert len(MATRIX) > 4000


POLICY = Policy.from_settings(
    admins=[1],
    approvers=[2, 22],
    operators=[3],
    viewers=[4],
    containers=["web", "app-*"],
    vms=[100, 101],
    nodes=["pve1"],
)


@pytest.mark.parametrize(
    ("user", "action", "target", "node", "verdict", "reason"),
    [
        (99, "status", None, None, DENY, "you are not authorised to use this bot"),
        (99, "exec", "web", None, DENY, "you are not authorised to use this bot"),
        (3, "exec", None, None, DENY, "unknown action 'exec'"),
        (3, "Deploy", "web", None, DENY, "unknown action 'Deploy'"),
        (
            4,
            "deploy",
            "web",
            None,
            DENY,
            "deploy needs the operator role or higher; you are a viewer",
        ),
        (
            3,
            "audit",
            None,
            None,
            DENY,
            "audit needs the approver role or higher; you are an operator",
        ),
        (
            2,
            "verify",
            None,
            None,
            DENY,
            "verify needs the admin role or higher; you are an approver",
        ),
        (
            3,
            "deploy",
            "web",
            None,
            NEEDS_APPROVAL,
            "deploy needs approval by 1 approver other than you",
        ),
        (3, "restart", "app-1", None, ALLOW, "restart runs at once"),
        (4, "status", None, None, ALLOW, "status is a read"),
        (3, "restart", "db", None, DENY, "db is not on the container allowlist"),
        (3, "restart", None, None, DENY, "restart needs a container name"),
        (3, "vm.start", None, None, DENY, "vm.start needs a vmid"),
        (3, "vm.start", 555, None, DENY, "VM 555 is not on the VM allowlist"),
        (3, "vm.start", 100, "pve9", DENY, "node pve9 is not on the node allowlist"),
        (3, "vm.start", 100, "pve1", ALLOW, "vm.start runs at once"),
        (4, "help", "web", None, DENY, "help takes no target"),
        (3, "restart", "web", "pve1", DENY, "restart takes no node"),
        (
            3,
            "vm.rollback",
            100,
            None,
            DENY,
            "vm.rollback is a dangerous operation, and dangerous operations are turned off"
            " (WINGMAN_ALLOW_DANGEROUS_OPS)",
        ),
    ],
)
def test_reasons(
    user: int,
    action: str,
    target: str | int | None,
    node: str | None,
    verdict: Verdict,
    reason: str,
) -> None:
    decision = decide(POLICY, user_id=user, action=action, target=target, node=node)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_unknown_user_learns_nothing_about_the_action_or_target() -> None:
    reasons = {
        decide(POLICY, user_id=99, action=action, target=target).reason
        for action in ("deploy", "exec", "verify", "status")
        for target in ("web", "db", "../etc", None, 100)
    }
    assert reasons == {"you are not authorised to use this bot"}


@pytest.mark.parametrize("user_id", [True, False, 1.0, "1", None, -1, 0, 2**70])
def test_anything_but_a_known_int_user_id_is_unknown(user_id: object) -> None:
    decision = decide(POLICY, user_id=user_id, action="help", target=None)  # type: ignore[arg-type]
    assert (decision.verdict, decision.role) == (DENY, None)


def test_read_only_reason() -> None:
    policy = Policy.from_settings(operators=[3], containers=["web"], read_only=True)
    decision = decide(policy, user_id=3, action="restart", target="web")
    assert (decision.verdict, decision.reason) == (DENY, "read-only mode: only reads are allowed")
    assert decide(policy, user_id=3, action="status", target="web").verdict is ALLOW


def test_two_approvals_reason() -> None:
    policy = Policy.from_settings(operators=[3], vms=[100], allow_dangerous_ops=True)
    decision = decide(policy, user_id=3, action="vm.rollback", target=100)
    assert decision.verdict is NEEDS_APPROVAL
    assert decision.reason == "vm.rollback needs approval by 2 approvers, neither of them you"
    assert (decision.tier, decision.approvals_needed) == (Tier.TWO_APPROVALS, 2)


# ---- order of checks: each row fails two checks; the earlier one must be the reason given.


@pytest.mark.parametrize(
    ("user", "action", "target", "node", "read_only", "reason_has"),
    [
        (4, "exec", "db", None, False, "unknown action"),  # unknown action before target
        (4, "restart", "db", None, False, "operator role"),  # role before allowlist
        (4, "restart", "../x", None, True, "operator role"),  # role before name check
        (3, "restart", "../x", None, True, "not a valid container name"),  # name before mode
        (3, "restart", "db", None, True, "allowlist"),  # allowlist before read-only
        (3, "vm.start", 555, "pve9", False, "VM 555"),  # vmid before node
        (3, "vm.start", 100, "pve9", True, "node pve9"),  # node before read-only
        (3, "vm.rollback", 555, None, False, "VM allowlist"),  # allowlist before dangerous ops
        (3, "vm.rollback", 100, None, True, "read-only"),  # read-only before dangerous ops
    ],
)
def test_order_of_checks(
    user: int, action: str, target: str | int, node: str | None, read_only: bool, reason_has: str
) -> None:
    policy = Policy.from_settings(
        operators=[3],
        viewers=[4],
        containers=["web"],
        vms=[100],
        nodes=["pve1"],
        read_only=read_only,
    )
    decision = decide(policy, user_id=user, action=action, target=target, node=node)
    assert decision.verdict is DENY
    assert reason_has in decision.reason


# ---- targets: names are validated before matching; empty allowlists allow nothing.


@pytest.mark.parametrize(
    "target",
    [
        "",
        " web",
        "web ",
        "web;rm -rf /",
        "../web",
        "/web",
        "web/x",
        "$(id)",
        "`id`",
        "a b",
        "-web",
        ".web",
        "_web",
        "web\n",
        "wéb",
        "app-*",
        "app-?",
        "x" * 129,
        "web\x00",
    ],
)
def test_invalid_container_names_are_refused_before_matching(target: str) -> None:
    # An allowlist that would match anything that looks like web or app- must not matter.
    decision = decide(POLICY, user_id=1, action="restart", target=target)
    assert decision.verdict is DENY
    assert "not a valid container name" in decision.reason
    assert "\n" not in decision.reason


def test_longest_valid_container_name_is_matched_normally() -> None:
    name = "app-" + "x" * 124
    assert decide(POLICY, user_id=1, action="restart", target=name).verdict is ALLOW


@pytest.mark.parametrize("target", [100, "100", 101, "101"])
def test_vmids_may_be_ints_or_decimal_text(target: int | str) -> None:
    assert decide(POLICY, user_id=3, action="vm.start", target=target).verdict is ALLOW


@pytest.mark.parametrize(
    "target",
    [
        "0100",
        "+100",
        " 100",
        "100 ",
        "1_00",
        "1e2",
        "100.0",
        "abc",
        "",
        "\u0661\u0660\u0660",
        99,
        0,
        -100,
        1_000_000_000,
        True,
        100.0,
        [100],
    ],
)
def test_invalid_vmids_are_refused(target: object) -> None:
    decision = decide(POLICY, user_id=3, action="vm.start", target=target)  # type: ignore[arg-type]
    assert decision.verdict is DENY
    assert "not a vmid" in decision.reason


@pytest.mark.parametrize("target", [100, "web", b"web", 1.5, ["web"]])
def test_a_container_action_refuses_a_target_that_is_not_text(target: object) -> None:
    if target == "web":
        target = 5  # an int where a container name is expected
    decision = decide(POLICY, user_id=3, action="restart", target=target)  # type: ignore[arg-type]
    assert decision.verdict is DENY
    assert "not a container name" in decision.reason


@pytest.mark.parametrize(
    ("action", "target"), [("restart", "web"), ("status", "web"), ("vm.start", 100)]
)
def test_empty_allowlists_allow_nothing(action: str, target: str | int) -> None:
    policy = Policy.from_settings(admins=[1])
    decision = decide(policy, user_id=1, action=action, target=target)
    assert decision.verdict is DENY
    assert "allowlist, which is empty" in decision.reason


def test_status_without_target_is_allowed_even_with_empty_allowlists() -> None:
    policy = Policy.from_settings(viewers=[4])
    assert decide(policy, user_id=4, action="status", target=None).verdict is ALLOW
    assert decide(policy, user_id=4, action="vm.status", target=None).verdict is ALLOW


def test_empty_node_allowlist_refuses_any_given_node() -> None:
    policy = Policy.from_settings(operators=[3], vms=[100])
    denied = decide(policy, user_id=3, action="vm.start", target=100, node="pve1")
    assert denied.verdict is DENY
    assert denied.reason == "node pve1 is not on the node allowlist, which is empty"
    # Without a node only the vmid is checked; the executor passes the node when it knows it.
    assert decide(policy, user_id=3, action="vm.start", target=100).verdict is ALLOW


@pytest.mark.parametrize("node", ["", "pve1 ", "pve_1", "-pve", "pve/1", "a" * 64, 7])
def test_invalid_node_names_are_refused(node: object) -> None:
    decision = decide(POLICY, user_id=3, action="vm.status", target=None, node=node)  # type: ignore[arg-type]
    assert decision.verdict is DENY
    assert "not a valid node name" in decision.reason


def test_vm_status_listing_with_a_node_checks_the_node() -> None:
    assert decide(POLICY, user_id=4, action="vm.status", target=None, node="pve1").verdict is ALLOW
    assert decide(POLICY, user_id=4, action="vm.status", target=None, node="pve2").verdict is DENY


# ---- re-tiering and target restrictions from the policy file.


def with_overrides(**overrides: ActionOverride) -> Policy:
    return Policy(
        roles=MappingProxyType({1: Role.ADMIN, 2: Role.APPROVER, 3: Role.OPERATOR, 4: Role.VIEWER}),
        containers=frozenset({"web", "app-*"}),
        vms=frozenset({100, 101}),
        nodes=frozenset({"pve1"}),
        overrides=MappingProxyType({k.replace("_", "."): v for k, v in overrides.items()}),
    )


def test_a_restriction_narrows_the_allowlist() -> None:
    policy = with_overrides(deploy=ActionOverride(targets=frozenset({"web"})))
    assert decide(policy, user_id=3, action="deploy", target="web").verdict is NEEDS_APPROVAL
    refused = decide(policy, user_id=3, action="deploy", target="app-1")
    assert (refused.verdict, refused.reason) == (DENY, "the policy does not allow deploy on app-1")
    # Other actions keep the whole allowlist.
    assert decide(policy, user_id=3, action="restart", target="app-1").verdict is ALLOW


def test_a_restriction_never_widens_the_allowlist() -> None:
    policy = with_overrides(deploy=ActionOverride(targets=frozenset({"db", "web"})))
    refused = decide(policy, user_id=3, action="deploy", target="db")
    assert (refused.verdict, refused.reason) == (DENY, "db is not on the container allowlist")


def test_a_restriction_with_globs_and_vmids() -> None:
    policy = with_overrides(
        restart=ActionOverride(targets=frozenset({"app-*"})),
        vm_reboot=ActionOverride(targets=frozenset({101})),
    )
    assert decide(policy, user_id=3, action="restart", target="app-2").verdict is ALLOW
    assert decide(policy, user_id=3, action="restart", target="web").verdict is DENY
    assert decide(policy, user_id=3, action="vm.reboot", target="101").verdict is NEEDS_APPROVAL
    refused = decide(policy, user_id=3, action="vm.reboot", target=100)
    assert (refused.verdict, refused.reason) == (
        DENY,
        "the policy does not allow vm.reboot on VM 100",
    )


def test_an_empty_restriction_refuses_every_target() -> None:
    policy = with_overrides(stop=ActionOverride(targets=frozenset()))
    assert decide(policy, user_id=1, action="stop", target="web").verdict is DENY


def test_raising_a_read_to_tier_1_raises_its_minimum_role_to_operator() -> None:
    policy = with_overrides(status=ActionOverride(tier=Tier.IMMEDIATE))
    viewer = decide(policy, user_id=4, action="status", target=None)
    assert (viewer.verdict, viewer.reason) == (
        DENY,
        "status needs the operator role or higher; you are a viewer",
    )
    assert decide(policy, user_id=3, action="status", target=None).verdict is ALLOW


def test_re_tiering_never_lowers_the_minimum_role() -> None:
    policy = with_overrides(verify=ActionOverride(tier=Tier.ONE_APPROVAL))
    assert decide(policy, user_id=2, action="verify", target=None).verdict is DENY
    assert decide(policy, user_id=1, action="verify", target=None).verdict is NEEDS_APPROVAL


def test_a_hand_built_policy_cannot_make_a_mutating_action_a_read() -> None:
    # The file loader refuses tier 0 for a mutating action; decide stays safe without it.
    policy = with_overrides(deploy=ActionOverride(tier=Tier.READ))
    decision = decide(policy, user_id=3, action="deploy", target="web")
    assert (decision.verdict, decision.tier) == (NEEDS_APPROVAL, Tier.ONE_APPROVAL)
    viewer = decide(policy, user_id=4, action="deploy", target="web")
    assert viewer.verdict is DENY


def test_a_hand_built_policy_cannot_take_a_tier_3_action_below_tier_2() -> None:
    # The file loader refuses it; decide keeps such an action at tier 3 without it.
    for tier in (Tier.READ, Tier.IMMEDIATE):
        policy = dataclasses.replace(
            with_overrides(vm_rollback=ActionOverride(tier=tier)), allow_dangerous_ops=True
        )
        decision = decide(policy, user_id=3, action="vm.rollback", target=100)
        assert (decision.verdict, decision.tier, decision.approvals_needed) == (
            NEEDS_APPROVAL,
            Tier.TWO_APPROVALS,
            2,
        )


def test_a_hand_built_policy_with_a_bare_star_allows_nothing() -> None:
    policy = Policy(roles=MappingProxyType({1: Role.ADMIN}), containers=frozenset({"*", "a*"}))
    for target in ("web", "a", "ab", "*"):
        assert decide(policy, user_id=1, action="restart", target=target).verdict is DENY
