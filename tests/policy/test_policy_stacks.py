"""Compose stacks in the policy: `stack:<project>` allowlist entries and whole-stack targets.

The container's labels are passed in (the policy reads nothing): a container is allowed
through `stack:immich` exactly when its `com.docker.compose.project` label says `immich`,
whatever its name, so a container Compose recreated under a new name stays allowed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policy import ActionOverride, Policy, PolicyError, Verdict, container_visible, decide, load_policy_file, run_time_refusal
from policy.names import container_pattern_problem, project_of, stack_target

OPERATOR, APPROVER = 3, 2
POLICY = Policy.from_settings(approvers=[APPROVER], operators=[OPERATOR], containers=["web", "stack:immich"])
IMMICH = {"com.docker.compose.project": "immich", "com.docker.compose.service": "server"}
OTHER = {"com.docker.compose.project": "nextcloud"}


@pytest.mark.parametrize(
    ("name", "labels", "visible"),
    [
        ("immich_server_1", IMMICH, True),
        ("immich-server-1", IMMICH, True),  # Compose v2's naming: the name does not matter
        ("anything", IMMICH, True),
        ("immich_server_1", None, False),  # without its labels, only the name counts
        ("immich_server_1", OTHER, False),
        ("immich_server_1", {"com.docker.compose.project": "Immich"}, False),  # not a project name
        ("immich_server_1", {"com.docker.compose.project": 7}, False),
        ("web", None, True),
        ("web", OTHER, True),
        ("stack:immich", None, False),  # a stack is not a container
    ],
)
def test_a_stack_entry_allows_the_containers_labelled_with_its_project(
    name: str, labels: dict[str, object] | None, visible: bool
) -> None:
    assert container_visible(POLICY, name, labels) is visible  # type: ignore[arg-type]
    verdict = decide(POLICY, user_id=OPERATOR, action="logs", target=name, labels=labels).verdict  # type: ignore[arg-type]
    assert (verdict is Verdict.ALLOW) is visible


def test_a_whole_stack_is_a_target_only_where_its_entry_is_allowlisted() -> None:
    allowed = decide(POLICY, user_id=OPERATOR, action="restart", target="stack:immich")
    assert allowed.verdict is Verdict.ALLOW
    assert decide(POLICY, user_id=OPERATOR, action="status", target="stack:immich").verdict is Verdict.ALLOW
    other = decide(POLICY, user_id=OPERATOR, action="restart", target="stack:nextcloud")
    assert other.verdict is Verdict.DENY and other.reason == "stack:nextcloud is not on the container allowlist"
    # Every container of a stack being allowed by name does not make the stack a target.
    by_name = Policy.from_settings(operators=[OPERATOR], containers=["immich_server_1", "immich_db_1"])
    assert decide(by_name, user_id=OPERATOR, action="restart", target="stack:immich").verdict is Verdict.DENY


def test_actions_on_one_container_refuse_a_stack() -> None:
    for action in ("logs", "start", "stop", "deploy", "rollback"):
        decision = decide(POLICY, user_id=OPERATOR, action=action, target="stack:immich")
        assert decision.verdict is Verdict.DENY
        assert decision.reason == f"{action} acts on one container; name a container, not a stack"


@pytest.mark.parametrize("target", ["stack:", "stack:Immich", "stack:../x", "stack:a b", "stack:-x"])
def test_a_malformed_stack_target_is_refused_before_matching(target: str) -> None:
    decision = decide(POLICY, user_id=OPERATOR, action="restart", target=target)
    assert decision.verdict is Verdict.DENY and "is not a Compose project name" in decision.reason


def test_a_policy_file_restriction_narrows_stacks_too() -> None:
    policy = Policy(
        roles=POLICY.roles,
        containers=POLICY.containers,
        overrides={"restart": ActionOverride(targets=frozenset({"web"}))},
    )
    assert decide(policy, user_id=OPERATOR, action="restart", target="stack:immich").verdict is Verdict.DENY
    assert decide(policy, user_id=OPERATOR, action="restart", target="x", labels=IMMICH).verdict is Verdict.DENY
    assert decide(policy, user_id=OPERATOR, action="logs", target="x", labels=IMMICH).verdict is Verdict.ALLOW


def test_the_run_time_check_reads_the_labels_it_is_given() -> None:
    assert run_time_refusal(POLICY, requester_id=OPERATOR, action="deploy", target="x", approved_by=frozenset({APPROVER}), labels=IMMICH) is None
    refusal = run_time_refusal(POLICY, requester_id=OPERATOR, action="deploy", target="x", approved_by=frozenset({APPROVER}), labels=OTHER)
    assert refusal == "x is not on the container allowlist"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [("stack:immich", None), ("stack:paperless-ngx", None), ("stack:", "is not a Compose project name"),
     ("stack:Immich", "is not a Compose project name"), ("stack:im*", "is not a Compose project name")],
)  # fmt: skip
def test_allowlist_entries_are_checked(entry: str, problem: str | None) -> None:
    found = container_pattern_problem(entry)
    assert found is None if problem is None else problem in (found or "")


def test_settings_and_the_policy_file_take_stack_entries(tmp_path: Path) -> None:
    assert "stack:immich" in Policy.from_settings(containers=["stack:immich"]).containers
    with pytest.raises(PolicyError, match="WINGMAN_CONTAINER_ALLOWLIST: 'Immich' is not a Compose project name"):
        Policy.from_settings(containers=["stack:Immich"])
    path = tmp_path / "policy.yaml"
    path.write_text('allowlists: {containers: ["stack:immich"]}\nactions: {restart: {targets: ["stack:immich"]}}\n')
    loaded = load_policy_file(path)
    assert loaded.containers == {"stack:immich"}
    path.write_text('allowlists:\n  containers: ["stack:Bad"]\n')
    with pytest.raises(PolicyError, match=r"policy.yaml:2: .*'Bad' is not a Compose project name"):
        load_policy_file(path)


def test_stack_targets_and_project_labels_parse() -> None:
    assert stack_target("stack:immich") == "immich"
    assert stack_target("immich") is None and stack_target("stack:Bad") is None and stack_target(3) is None
    assert project_of(IMMICH) == "immich"
    assert project_of({}) is None and project_of(None) is None and project_of(["x"]) is None


def test_update_takes_a_whole_stack_only_and_waits_for_an_approver() -> None:
    decision = decide(POLICY, user_id=OPERATOR, action="update", target="stack:immich")
    assert decision.verdict is Verdict.NEEDS_APPROVAL and decision.approvals_needed == 1
    one = decide(POLICY, user_id=OPERATOR, action="update", target="web")
    assert one.verdict is Verdict.DENY and one.reason == "update acts on a whole Compose stack; name its project, e.g. /update immich"


def test_help_offers_update_only_where_a_stack_is_allowlisted() -> None:
    from policy import allowed_actions

    assert "update" in [e.name for e in allowed_actions(POLICY, OPERATOR)]
    by_name = Policy.from_settings(operators=[OPERATOR], containers=["web"])
    assert "update" not in [e.name for e in allowed_actions(by_name, OPERATOR)]
