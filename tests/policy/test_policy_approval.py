"""may_approve: only approvers count, never the requester, each approver once."""

from __future__ import annotations

import pytest

from policy import Policy, Role, may_approve

POLICY = Policy.from_settings(admins=[1, 11], approvers=[2, 22], operators=[3, 33], viewers=[4])
BY_ROLE = {Role.ADMIN: 1, Role.APPROVER: 2, Role.OPERATOR: 3, Role.VIEWER: 4}
REQUESTER = 33


@pytest.mark.parametrize("role", list(Role))
def test_nobody_approves_their_own_request_whatever_their_role(role: Role) -> None:
    user = BY_ROLE[role]
    for already in (frozenset(), frozenset({22}), frozenset({user})):
        check = may_approve(
            POLICY, approver_id=user, requester_id=user, already_approved_by=already
        )
        assert (check.allowed, check.reason) == (False, "you cannot approve your own request")
        assert check.role is role


@pytest.mark.parametrize(
    ("approver", "already", "allowed", "reason"),
    [
        (2, frozenset(), True, "approval counted"),
        (1, frozenset(), True, "approval counted"),
        (1, frozenset({2}), True, "approval counted"),  # a second, distinct approver
        (22, frozenset({2}), True, "approval counted"),
        (2, frozenset({2}), False, "you already approved this"),
        (1, frozenset({1, 22}), False, "you already approved this"),
        (3, frozenset(), False, "only approvers can approve; you are an operator"),
        (4, frozenset(), False, "only approvers can approve; you are a viewer"),
        (4, frozenset({4}), False, "only approvers can approve; you are a viewer"),
        (99, frozenset(), False, "you are not authorised to use this bot"),
        (99, frozenset({99}), False, "you are not authorised to use this bot"),
    ],
)
def test_approval_table(approver: int, already: frozenset[int], allowed: bool, reason: str) -> None:
    check = may_approve(
        POLICY, approver_id=approver, requester_id=REQUESTER, already_approved_by=already
    )
    assert (check.allowed, check.reason) == (allowed, reason)


def test_an_admin_requester_cannot_approve_but_another_admin_can() -> None:
    def check(approver: int) -> bool:
        return may_approve(
            POLICY, approver_id=approver, requester_id=1, already_approved_by=frozenset()
        ).allowed

    assert (check(1), check(11), check(2)) == (False, True, True)


def test_a_bool_is_not_user_1() -> None:
    check = may_approve(
        POLICY,
        approver_id=True,
        requester_id=REQUESTER,
        already_approved_by=frozenset(),
    )
    assert check.allowed is False
