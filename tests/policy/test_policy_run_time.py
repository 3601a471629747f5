"""run_time_refusal(): an approved request decided again under the policy of the moment it runs."""

from __future__ import annotations

import pytest

from policy import ActionOverride, Policy, Tier, run_time_refusal
from policy.model import PolicyFile

REQUESTER, APPROVER, APPROVER2, ADMIN = 3, 2, 5, 1


def policy(**changes: object) -> Policy:
    settings: dict[str, object] = {
        "admins": [ADMIN],
        "approvers": [APPROVER, APPROVER2],
        "operators": [REQUESTER],
        "containers": ["web", "app-*"],
        "vms": [100],
        "allow_dangerous_ops": True,
    }
    settings.update(changes)
    return Policy.from_settings(**settings)  # type: ignore[arg-type]


def refusal(p: Policy, action: str = "deploy", target: str | int | None = "web", approved_by: frozenset[int] = frozenset({APPROVER})) -> str | None:
    return run_time_refusal(p, requester_id=REQUESTER, action=action, target=target, approved_by=approved_by)


def test_an_unchanged_policy_lets_it_run() -> None:
    assert refusal(policy()) is None
    assert refusal(policy(), "vm.rollback", 100, frozenset({APPROVER, APPROVER2})) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"operators": []}, "the requester tg:3 no longer has a role"),
        ({"operators": [], "viewers": [REQUESTER]}, "deploy needs the operator role or higher; the requester is a viewer"),
        ({"containers": ["app-*"]}, "web is not on the container allowlist"),
        ({"containers": []}, "web is not on the container allowlist, which is empty"),
        ({"read_only": True}, "read-only mode: only reads are allowed"),
        ({"approvers": [APPROVER2]}, "tg:2 may no longer approve it"),
    ],
)
def test_a_narrower_policy_refuses_it(changes: dict[str, object], reason: str) -> None:
    assert refusal(policy(**changes)) == reason


def test_dangerous_operations_turned_off_refuse_a_tier_3_request() -> None:
    reason = refusal(policy(allow_dangerous_ops=False), "vm.rollback", 100, frozenset({APPROVER, APPROVER2}))
    assert reason is not None and "dangerous operations are turned off" in reason


def test_a_target_restriction_added_by_the_file_refuses_it() -> None:
    file = PolicyFile(path="p.yaml", actions={"deploy": ActionOverride(targets=frozenset({"app-*"}))})
    assert refusal(policy(file=file)) == "the policy does not allow deploy on web"


def test_an_action_re_tiered_up_needs_the_votes_its_tier_now_asks_for() -> None:
    file = PolicyFile(path="p.yaml", actions={"deploy": ActionOverride(tier=Tier.TWO_APPROVALS)})
    assert refusal(policy(file=file)) == "deploy now needs 2 approvals; it has 1"
    assert refusal(policy(file=file), approved_by=frozenset({APPROVER, APPROVER2})) is None


def test_an_action_re_tiered_down_still_runs_with_the_votes_it_has() -> None:
    file = PolicyFile(path="p.yaml", actions={"stop": ActionOverride(tier=Tier.IMMEDIATE)})
    assert refusal(policy(file=file), "stop") is None


def test_the_requester_as_approver_never_counts() -> None:
    # A vote by the requester cannot have been counted; if one is found it refuses the run.
    assert refusal(policy(), approved_by=frozenset({REQUESTER})) == "tg:3 may no longer approve it"
