"""Wingman's policy: who may do what, at which tier, on which target. Pure: data in, decision out.

The executor builds one `Policy` at start-up (`Policy.from_settings`, optionally with
`load_policy_file`) and asks `decide` about every request and `may_approve` about every
approval tap. Nothing here reads the environment, the clock or the network; only
`load_policy_file` reads a file.
"""

from policy.catalogue import CATALOGUE, CatalogueEntry, approvals_needed
from policy.decide import (
    allowed_actions,
    container_visible,
    decide,
    effective_entry,
    may_approve,
    needs_one_time_code,
    run_time_refusal,
    vm_visible,
)
from policy.file import load_policy_file
from policy.model import (
    ActionOverride,
    ApprovalCheck,
    Decision,
    Policy,
    PolicyError,
    PolicyFile,
    Role,
    TargetKind,
    Tier,
    Verdict,
)

__all__ = [
    "CATALOGUE",
    "ActionOverride",
    "ApprovalCheck",
    "CatalogueEntry",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "Role",
    "TargetKind",
    "Tier",
    "Verdict",
    "allowed_actions",
    "approvals_needed",
    "container_visible",
    "decide",
    "effective_entry",
    "load_policy_file",
    "may_approve",
    "needs_one_time_code",
    "run_time_refusal",
    "vm_visible",
]
