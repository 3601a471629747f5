"""Policy.from_settings: validating the settings and merging the policy file into them."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from policy import (
    ActionOverride,
    Policy,
    PolicyError,
    PolicyFile,
    Role,
    Tier,
    Verdict,
    decide,
)


def test_defaults_allow_nothing() -> None:
    policy = Policy.from_settings()
    assert policy == Policy()
    assert not policy.roles and not policy.containers and not policy.vms and not policy.nodes
    assert (policy.read_only, policy.allow_dangerous_ops) == (False, False)


def test_roles_from_settings() -> None:
    policy = Policy.from_settings(admins=[1], approvers=[2], operators=[3], viewers=[4])
    assert dict(policy.roles) == {1: Role.ADMIN, 2: Role.APPROVER, 3: Role.OPERATOR, 4: Role.VIEWER}
    assert policy.role_of(5) is None


@pytest.mark.parametrize(
    "lists",
    [
        {"viewers": [7], "admins": [7]},
        {"admins": [7], "viewers": [7], "operators": [7]},
        {"approvers": [7], "admins": [7]},
    ],
)
def test_a_user_in_several_lists_gets_the_highest_role(lists: dict[str, list[int]]) -> None:
    assert Policy.from_settings(**lists).role_of(7) is Role.ADMIN  # type: ignore[arg-type]


def test_the_highest_role_wins_across_settings_and_file() -> None:
    file = PolicyFile(path="p.yaml", viewers=frozenset({7, 8}), admins=frozenset({9}))
    policy = Policy.from_settings(operators=[7], viewers=[9], file=file)
    assert policy.role_of(7) is Role.OPERATOR  # operator in settings beats viewer in file
    assert policy.role_of(8) is Role.VIEWER  # only in the file
    assert policy.role_of(9) is Role.ADMIN  # admin in file beats viewer in settings


def test_allowlists_are_the_union() -> None:
    file = PolicyFile(
        path="p.yaml",
        containers=frozenset({"db", "app-*"}),
        vms=frozenset({101}),
        nodes=frozenset({"pve2"}),
    )
    policy = Policy.from_settings(containers=["web"], vms=[100], nodes=["pve1"], file=file)
    assert policy.containers == {"web", "db", "app-*"}
    assert policy.vms == {100, 101}
    assert policy.nodes == {"pve1", "pve2"}


@pytest.mark.parametrize(
    ("env", "file_says", "read_only"),
    [
        (False, None, False),
        (False, False, False),
        (False, True, True),
        (True, None, True),
        (True, False, True),  # the file cannot turn read-only off
        (True, True, True),
    ],
)
def test_read_only_is_on_if_either_says_so(
    env: bool, file_says: bool | None, read_only: bool
) -> None:
    file = PolicyFile(path="p.yaml", read_only=file_says)
    assert Policy.from_settings(read_only=env, file=file).read_only is read_only


@pytest.mark.parametrize(
    ("env", "file_says", "allowed"),
    [
        (False, None, False),
        (False, False, False),
        (False, True, False),  # the file alone can never turn dangerous operations on
        (True, None, True),
        (True, False, False),  # but it can turn them off
        (True, True, True),
    ],
)
def test_dangerous_ops_need_the_setting_and_no_veto_from_the_file(
    env: bool, file_says: bool | None, allowed: bool
) -> None:
    file = PolicyFile(path="p.yaml", allow_dangerous_ops=file_says)
    assert Policy.from_settings(allow_dangerous_ops=env, file=file).allow_dangerous_ops is allowed


@pytest.mark.parametrize("env", [False, True])
def test_without_a_file_the_settings_decide(env: bool) -> None:
    policy = Policy.from_settings(read_only=env, allow_dangerous_ops=env)
    assert (policy.read_only, policy.allow_dangerous_ops) == (env, env)


def test_action_overrides_come_from_the_file() -> None:
    overrides = MappingProxyType({"restart": ActionOverride(tier=Tier.ONE_APPROVAL)})
    file = PolicyFile(path="p.yaml", actions=overrides)
    policy = Policy.from_settings(operators=[3], containers=["web"], file=file)
    assert policy.overrides == overrides
    decision = decide(policy, user_id=3, action="restart", target="web")
    assert decision.verdict is Verdict.NEEDS_APPROVAL


def test_ids_may_be_given_as_decimal_text() -> None:
    policy = Policy.from_settings(admins=["1"], vms=["100"])
    assert policy.role_of(1) is Role.ADMIN
    assert policy.vms == {100}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"admins": ["x"]}, "WINGMAN_ADMINS: 'x' is not a Telegram user id"),
        ({"approvers": [0]}, "WINGMAN_APPROVERS: 0 is not a Telegram user id"),
        ({"operators": [True]}, "WINGMAN_OPERATORS: True is not a Telegram user id"),
        ({"viewers": [-3]}, "WINGMAN_VIEWERS: -3 is not a Telegram user id"),
        ({"viewers": "1,2"}, "WINGMAN_VIEWERS: expected a list of values, not a single string"),
        ({"containers": "web"}, "WINGMAN_CONTAINER_ALLOWLIST: expected a list of values"),
        ({"containers": ["a*b"]}, "WINGMAN_CONTAINER_ALLOWLIST: 'a*b': the only pattern allowed"),
        ({"containers": ["*"]}, "WINGMAN_CONTAINER_ALLOWLIST: a bare '*'"),
        ({"containers": ["web;id"]}, "WINGMAN_CONTAINER_ALLOWLIST: 'web;id' is not a valid"),
        ({"vms": [99]}, "WINGMAN_VM_ALLOWLIST: 99 is not a vmid (a whole number from 100"),
        ({"vms": ["1e3"]}, "WINGMAN_VM_ALLOWLIST: '1e3' is not a vmid"),
        ({"nodes": ["pve 1"]}, "WINGMAN_NODE_ALLOWLIST: 'pve 1' is not a valid node name"),
        ({"read_only": "yes"}, "WINGMAN_READ_ONLY: expected true or false, got 'yes'"),
        ({"allow_dangerous_ops": 1}, "WINGMAN_ALLOW_DANGEROUS_OPS: expected true or false"),
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_settings(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert caught.value.line is None
    assert "\n" not in str(caught.value)


def test_policy_is_immutable() -> None:
    policy = Policy.from_settings(admins=[1])
    with pytest.raises(AttributeError):
        policy.read_only = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.roles[2] = Role.ADMIN  # type: ignore[index]
