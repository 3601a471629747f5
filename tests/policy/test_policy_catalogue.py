"""The catalogue is exactly the DESIGN.md table: names, tiers, roles, targets, nothing more."""

from __future__ import annotations

import dataclasses

import pytest

from policy import CATALOGUE, Role, TargetKind, Tier, approvals_needed

V, OP, AP, AD = Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN
NONE, CONTAINER, VM = TargetKind.NONE, TargetKind.CONTAINER, TargetKind.VM

# Written out from DESIGN.md's "Chat commands and default tiers", not derived from the code.
DESIGN_TABLE = {
    "help": (0, V, NONE),
    "whoami": (0, V, NONE),
    "status": (0, V, CONTAINER),
    "vm.status": (0, V, VM),
    "pending": (0, V, NONE),
    "updates": (0, V, NONE),
    "audit": (0, AP, NONE),
    "verify": (0, AD, NONE),
    "logs": (1, OP, CONTAINER),
    "restart": (1, OP, CONTAINER),
    "start": (1, OP, CONTAINER),
    "vm.start": (1, OP, VM),
    "deploy": (2, OP, CONTAINER),
    "rollback": (2, OP, CONTAINER),
    "stop": (2, OP, CONTAINER),
    "update": (2, OP, CONTAINER),  # issue 18: a whole Compose stack (stack_only)
    "vm.shutdown": (2, OP, VM),
    "vm.reboot": (2, OP, VM),
    "vm.snapshot": (2, OP, VM),
    "vm.rollback": (3, OP, VM),
}


def test_the_catalogue_is_closed_and_complete() -> None:
    assert set(CATALOGUE) == set(DESIGN_TABLE)


@pytest.mark.parametrize("name", sorted(DESIGN_TABLE))
def test_entry_matches_the_design_table(name: str) -> None:
    tier, min_role, target = DESIGN_TABLE[name]
    entry = CATALOGUE[name]
    assert entry.name == name
    assert (entry.tier, entry.min_role, entry.target) == (tier, min_role, target)
    assert entry.mutating is (tier >= 1)
    assert entry.dangerous is (tier == 3)
    assert entry.target_required is (target is not NONE and name not in ("status", "vm.status"))
    assert entry.description and "\n" not in entry.description
    assert entry.usage.startswith("/")


def test_actions_without_a_handler_are_not_in_the_catalogue() -> None:
    # An entry without a handler would collect approvals for something that cannot run.
    assert "remove" not in CATALOGUE and "prune" not in CATALOGUE


def test_entries_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOGUE["deploy"].tier = Tier.READ  # type: ignore[misc]
    with pytest.raises(TypeError):
        CATALOGUE["exec"] = CATALOGUE["deploy"]  # type: ignore[index]


def test_roles_are_ordered() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert [int(r) for r in Role] == [1, 2, 3, 4]


@pytest.mark.parametrize(("tier", "needed"), [(0, 0), (1, 0), (2, 1), (3, 2)])
def test_approvals_needed(tier: int, needed: int) -> None:
    assert approvals_needed(tier) == needed


@pytest.mark.parametrize("tier", [-1, 4, 99])
def test_approvals_needed_refuses_a_tier_that_does_not_exist(tier: int) -> None:
    with pytest.raises(ValueError, match="tiers are 0 to 3"):
        approvals_needed(tier)
