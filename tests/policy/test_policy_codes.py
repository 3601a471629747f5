"""One-time codes in policy: tier 3 always needs them, a policy file may extend them to tier 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy import Policy, PolicyError, PolicyFile, Tier, load_policy_file, needs_one_time_code


def test_by_default_only_tier_three_needs_a_code() -> None:
    policy = Policy.from_settings()
    assert [needs_one_time_code(policy, tier) for tier in range(4)] == [False, False, False, True]


def test_a_policy_file_may_extend_codes_to_tier_two(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("one_time_codes_from_tier: 2\n")
    loaded = load_policy_file(path)
    assert loaded.one_time_codes_from_tier is Tier.ONE_APPROVAL
    policy = Policy.from_settings(file=loaded)
    assert [needs_one_time_code(policy, tier) for tier in range(4)] == [False, False, True, True]


def test_a_file_saying_three_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("one_time_codes_from_tier: 3\n")
    policy = Policy.from_settings(file=load_policy_file(path))
    assert policy.one_time_codes_from_tier is Tier.TWO_APPROVALS


def test_a_file_not_mentioning_it_keeps_the_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("read_only: false\n")
    assert load_policy_file(path).one_time_codes_from_tier is None
    assert Policy.from_settings(file=load_policy_file(path)).one_time_codes_from_tier is Tier.TWO_APPROVALS


def test_a_hand_built_file_cannot_drop_the_code_for_tier_three() -> None:
    # A validated file never says 4; a hand-built one must not turn tier 3's code off either.
    policy = Policy.from_settings(file=PolicyFile(path="x", one_time_codes_from_tier=Tier.TWO_APPROVALS))
    assert needs_one_time_code(policy, 3)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1", "must be 2 or 3"),
        ("0", "must be 2 or 3"),
        ("4", "must be 2 or 3"),
        ("two", "must be a whole number"),
        ("[2]", "must be a whole number"),
        ("02", "plain decimal"),
    ],
)
def test_other_values_name_the_line(tmp_path: Path, value: str, reason: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"read_only: false\none_time_codes_from_tier: {value}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert f"{path}:2: " in str(caught.value) and reason in str(caught.value)
