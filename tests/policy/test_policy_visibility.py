"""What /status lists and what /help offers: container_visible, vm_visible, allowed_actions."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from policy import (
    CATALOGUE,
    ActionOverride,
    Policy,
    Role,
    Tier,
    Verdict,
    allowed_actions,
    container_visible,
    decide,
    effective_entry,
    vm_visible,
)

POLICY = Policy.from_settings(
    admins=[1],
    approvers=[2],
    operators=[3],
    viewers=[4],
    containers=["web", "app-*"],
    vms=[100, 101],
    nodes=["pve1"],
)


@pytest.mark.parametrize(
    ("name", "visible"),
    [
        ("web", True),
        ("app-1", True),
        ("app-", False),
        ("db", False),
        ("../web", False),
        ("", False),
    ],
)
def test_container_visible(name: str, visible: bool) -> None:
    assert container_visible(POLICY, name) is visible


@pytest.mark.parametrize(
    ("vmid", "node", "visible"),
    [
        (100, "pve1", True),
        ("101", "pve1", True),
        (100, None, True),
        (100, "pve2", False),
        (102, "pve1", False),
        (99, "pve1", False),
        ("abc", "pve1", False),
        (100, "bad node", False),
    ],
)
def test_vm_visible(vmid: int | str, node: str | None, visible: bool) -> None:
    assert vm_visible(POLICY, vmid, node) is visible


def test_visibility_follows_a_status_restriction() -> None:
    policy = Policy(
        containers=frozenset({"web", "db"}),
        vms=frozenset({100, 101}),
        overrides=MappingProxyType(
            {
                "status": ActionOverride(targets=frozenset({"web"})),
                "vm.status": ActionOverride(targets=frozenset({101})),
            }
        ),
    )
    assert container_visible(policy, "web") and not container_visible(policy, "db")
    assert vm_visible(policy, 101, None) and not vm_visible(policy, 100, None)


def test_nothing_is_visible_with_empty_allowlists() -> None:
    assert not container_visible(Policy(), "web")
    assert not vm_visible(Policy(), 100, None)


def names(policy: Policy, user: int | None) -> list[str]:
    return [entry.name for entry in allowed_actions(policy, user)]


READS = ["help", "whoami", "status", "vm.status", "pending", "updates"]
ACTS = ["logs", "restart", "start", "vm.start", "deploy", "rollback", "stop"]
ACTS += ["vm.shutdown", "vm.reboot", "vm.snapshot"]


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, []),
        (99, []),
        (4, READS),
        (3, READS + ACTS),
        (2, [*READS, "audit", *ACTS]),
        (1, [*READS, "audit", "verify", *ACTS]),
    ],
)
def test_allowed_actions_by_role(user: int | None, expected: list[str]) -> None:
    assert sorted(names(POLICY, user)) == sorted(expected)


def test_allowed_actions_keeps_catalogue_order() -> None:
    assert names(POLICY, 1) == [name for name in CATALOGUE if name in names(POLICY, 1)]


def test_dangerous_actions_are_listed_only_when_allowed() -> None:
    policy = Policy.from_settings(
        operators=[3], containers=["web"], vms=[100], allow_dangerous_ops=True
    )
    assert "vm.rollback" in names(policy, 3)


def test_read_only_lists_only_reads() -> None:
    policy = Policy.from_settings(admins=[1], containers=["web"], vms=[100], read_only=True)
    assert names(policy, 1) == [*READS, "audit", "verify"]


def test_actions_no_target_could_pass_are_left_out() -> None:
    policy = Policy(
        roles=MappingProxyType({3: Role.OPERATOR}),
        containers=frozenset({"web"}),
        overrides=MappingProxyType({"deploy": ActionOverride(targets=frozenset())}),
    )
    listed = names(policy, 3)
    assert "restart" in listed and "deploy" not in listed  # empty target list
    assert "vm.start" not in listed  # empty VM allowlist
    assert "status" in listed and "vm.status" in listed  # listing needs no target


def test_allowed_actions_shows_entries_as_re_tiered() -> None:
    policy = Policy(
        roles=MappingProxyType({3: Role.OPERATOR, 4: Role.VIEWER}),
        containers=frozenset({"web"}),
        overrides=MappingProxyType(
            {
                "restart": ActionOverride(tier=Tier.ONE_APPROVAL),
                "pending": ActionOverride(tier=Tier.IMMEDIATE),
            }
        ),
    )
    by_name = {entry.name: entry for entry in allowed_actions(policy, 3)}
    assert by_name["restart"].tier == Tier.ONE_APPROVAL
    assert by_name["pending"].min_role == Role.OPERATOR
    assert "pending" not in names(policy, 4)


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("dangerous", [False, True])
@pytest.mark.parametrize("user", [1, 2, 3, 4])
def test_help_agrees_with_decide(read_only: bool, dangerous: bool, user: int) -> None:
    # Every action /help lists can be run on an allowed target; every other one cannot.
    policy = Policy.from_settings(
        admins=[1],
        approvers=[2],
        operators=[3],
        viewers=[4],
        containers=["web"],
        vms=[100],
        read_only=read_only,
        allow_dangerous_ops=dangerous,
    )
    listed = set(names(policy, user))
    for name, entry in CATALOGUE.items():
        target = {"none": None, "container": "web", "vm": 100}[entry.target.value]
        verdict = decide(policy, user_id=user, action=name, target=target).verdict
        assert (verdict is not Verdict.DENY) is (name in listed), name


def test_effective_entry() -> None:
    policy = Policy(
        overrides=MappingProxyType({"vm.rollback": ActionOverride(tier=Tier.ONE_APPROVAL)})
    )
    entry = effective_entry(policy, "vm.rollback")
    assert entry is not None
    assert (entry.tier, entry.dangerous) == (Tier.ONE_APPROVAL, True)  # still dangerous
    raised = effective_entry(
        Policy(overrides=MappingProxyType({"stop": ActionOverride(tier=Tier.TWO_APPROVALS)})),
        "stop",
    )
    assert raised is not None and raised.dangerous
    assert effective_entry(policy, "exec") is None
    assert effective_entry(Policy(), "deploy") is CATALOGUE["deploy"]
