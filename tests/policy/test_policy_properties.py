"""Properties over arbitrary input: decide never raises, never lets a target past the allowlist."""

from __future__ import annotations

import os
import tempfile
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import (
    CATALOGUE,
    ActionOverride,
    Policy,
    PolicyError,
    Tier,
    Verdict,
    decide,
    load_policy_file,
    may_approve,
)

CONTAINERS = frozenset({"web", "app-*"})
VMS = frozenset({100, 101})
NODES = frozenset({"pve1"})


def in_container_allowlist(name: str) -> bool:
    # Written independently of policy.names: exact names, or 'app-' plus at least one char.
    return name == "web" or (name.startswith("app-") and len(name) > 4)


user_ids = st.one_of(st.sampled_from([1, 2, 3, 4]), st.integers(), st.none(), st.booleans())
actions = st.one_of(
    st.sampled_from(sorted(CATALOGUE)),
    st.text(max_size=20),
    st.sampled_from(["", "vm", "exec", "VM.START"]),
)
near_names = st.sampled_from(
    ["web", "web ", "Web", "app-", "app-1", "app-*", "xapp-1", "../web", "db"]
)
targets = st.one_of(
    st.none(),
    near_names,
    st.text(max_size=140),
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", fullmatch=True),
    st.integers(),
    st.sampled_from([100, 101, "100", "0100", 99, True, 100.0]),
)
nodes = st.one_of(st.none(), st.sampled_from(["pve1", "pve2", "PVE1"]), st.text(max_size=10))
ROLES = Policy.from_settings(admins=[1], approvers=[2], operators=[3], viewers=[4]).roles


def make_policy(
    read_only: bool,
    dangerous: bool,
    action: str,
    tier: Tier | None,
    restrict: frozenset[str | int] | None,
) -> Policy:
    entry = CATALOGUE[action]
    override = ActionOverride(
        # The loader refuses tier 0 for a mutating action, tiers below 2 for a tier-3 one,
        # and targets for a targetless one.
        tier=None
        if (tier == Tier.READ and entry.mutating)
        or (tier is not None and entry.tier == Tier.TWO_APPROVALS and tier < Tier.ONE_APPROVAL)
        else tier,
        targets=None if entry.target.value == "none" else restrict,
    )
    return Policy(
        roles=ROLES,
        containers=CONTAINERS,
        vms=VMS,
        nodes=NODES,
        read_only=read_only,
        allow_dangerous_ops=dangerous,
        overrides=MappingProxyType({action: override}),
    )


policies = st.builds(
    make_policy,
    st.booleans(),
    st.booleans(),
    st.sampled_from(sorted(CATALOGUE)),
    st.one_of(st.none(), st.sampled_from(list(Tier))),
    st.sampled_from([None, frozenset({"web", 101}), frozenset()]),
)


@settings(max_examples=1000, deadline=None)
@given(policy=policies, user_id=user_ids, action=actions, target=targets, node=nodes)
def test_decide_is_total_and_never_allows_outside_the_allowlist(
    policy: Policy, user_id: object, action: object, target: object, node: object
) -> None:
    decision = decide(policy, user_id=user_id, action=action, target=target, node=node)  # type: ignore[arg-type]

    assert decision.verdict in set(Verdict)
    assert decision.reason.strip() and "\n" not in decision.reason
    if decision.verdict is Verdict.DENY:
        return
    entry = CATALOGUE[action]  # type: ignore[index]
    assert decision.role is not None and decision.role >= entry.min_role
    kind = entry.target.value
    if kind == "none":
        assert target is None
    elif target is not None:
        if kind == "container":
            assert isinstance(target, str) and in_container_allowlist(target)
        else:
            assert not isinstance(target, bool)
            assert int(target) in VMS  # type: ignore[call-overload]
            assert str(int(target)) == str(target)  # type: ignore[call-overload]
    if node is not None:
        assert kind == "vm" and node in NODES
    if policy.read_only:
        assert decision.tier == Tier.READ and not entry.mutating
    if entry.tier == Tier.TWO_APPROVALS or decision.tier == Tier.TWO_APPROVALS:
        assert policy.allow_dangerous_ops


@settings(max_examples=500, deadline=None)
@given(approver=user_ids, requester=user_ids, already=st.frozensets(st.integers(0, 5)))
def test_may_approve_is_total_and_never_counts_the_requester(
    approver: object, requester: object, already: frozenset[int]
) -> None:
    policy = Policy.from_settings(admins=[1], approvers=[2], operators=[3], viewers=[4])
    check = may_approve(
        policy,
        approver_id=approver,  # type: ignore[arg-type]
        requester_id=requester,  # type: ignore[arg-type]
        already_approved_by=already,
    )
    assert check.reason.strip()
    if check.allowed:
        assert approver != requester
        assert approver in (1, 2) and approver not in already


yaml_ish = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "roles:",
                "  admins: [1]",
                "  viewers: [x]",
                "allowlists:",
                "  containers: [web, 'a*']",
                "  vms: [100, 5]",
                "actions:",
                "  deploy: {tier: 2}",
                "  exec: {}",
                "read_only: yes",
                "read_only: maybe",
                "- a",
                "  - b",
                "{",
                "]",
                "&a [1]",
                "*a",
                "\t",
                "---",
                "? x",
                ": y",
            ]
        ),
        max_size=12,
    ).map("\n".join),
)


@settings(max_examples=500, deadline=None)
@given(text=yaml_ish)
def test_the_loader_answers_any_text_with_a_policy_or_one_line_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "policy.yaml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as stream:
            stream.write(text)
        try:
            loaded = load_policy_file(path)
        except PolicyError as error:
            message = str(error)
            assert message.startswith(path + ":")
            assert "\n" not in message
        else:
            assert loaded.path == path
