"""One-time codes on the real daemon: a signed vote on a tier-3 request counts only with the
approver's current, unspent code; every refusal is audited and leaves the request pending."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pyotp
import pytest

from audit import AuditEntry
from executor import codes
from tests.executor.test_approvals import POLICY, executions, finished, request
from tests.harness import ADMIN, APPROVER, APPROVER2, Harness


@pytest.fixture
async def harness(make_harness: Any, tmp_path: Path) -> Harness:
    (tmp_path / "policy.yaml").write_text(POLICY)  # verify: tier 2, audit: tier 3
    return await make_harness(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True)


def wrong_code(harness: Harness, user: int) -> str:
    """Six digits that are none of the user's codes anywhere near now."""
    near = {harness.code(user, steps) for steps in range(-3, 4)}
    return next(c for c in (f"{d}" * 6 for d in range(10)) if c not in near)


async def approve(harness: Harness, user: int, approval_id: str, code: str | None = None) -> Any:
    args: dict[str, Any] = {"id": approval_id}
    if code is not None:
        args["code"] = code
    return await harness.client().call(user, "approval.approve", args)


async def last_vote(harness: Harness) -> AuditEntry:
    entries = [e for e in await harness.executor.audit.tail(20) if e.action == "approval.approve"]
    return entries[-1]


async def still_pending(harness: Harness, approval_id: str) -> bool:
    approval = await harness.executor.approvals.get(approval_id)
    return approval.state == "pending" and approval.votes == ()


async def test_a_signed_vote_without_a_code_does_not_count(harness: Harness) -> None:
    harness.enroll(ADMIN)
    approval_id = await request(harness, APPROVER, "audit", n=2)
    reply = await approve(harness, ADMIN, approval_id)
    assert (reply.http_status, reply.status, reply.reason) == (403, "denied", codes.MISSING)
    assert reply.result["code_required"] is True
    entry = await last_vote(harness)
    assert (entry.actor, entry.decision, entry.outcome) == ("tg:1", "refused", codes.MISSING)
    assert entry.params == {"approval": approval_id, "factor": "none"}
    assert await still_pending(harness, approval_id)


async def test_a_wrong_code_does_not_count(harness: Harness) -> None:
    approval_id = await request(harness, APPROVER, "audit", n=2)
    reply = await approve(harness, ADMIN, approval_id, wrong_code(harness, ADMIN))
    assert (reply.status, reply.reason) == ("denied", codes.WRONG)
    entry = await last_vote(harness)
    assert (entry.decision, entry.outcome, entry.params["factor"]) == ("refused", codes.WRONG, "totp")
    assert "code" not in entry.params  # the digits themselves are never written down
    assert await still_pending(harness, approval_id)


async def test_another_approvers_code_does_not_count(harness: Harness) -> None:
    harness.enroll(ADMIN)
    approval_id = await request(harness, APPROVER, "audit", n=2)
    reply = await approve(harness, ADMIN, approval_id, harness.code(APPROVER2))
    assert reply.reason == codes.WRONG and await still_pending(harness, approval_id)


async def test_a_correct_code_counts_and_the_audit_says_which_factor(harness: Harness) -> None:
    approval_id = await request(harness, APPROVER, "audit", n=2)
    first = await approve(harness, ADMIN, approval_id, harness.code(ADMIN))
    assert (first.status, first.reason) == ("pending", "approval 1 of 2 counted")
    entry = await last_vote(harness)
    assert (entry.decision, entry.params) == ("counted", {"approval": approval_id, "factor": "totp"})
    second = await approve(harness, APPROVER2, approval_id, harness.code(APPROVER2))
    assert second.status == "done"
    assert (await finished(harness, approval_id))["approval"]["state"] == "done"
    assert len(await executions(harness, "audit")) == 1


async def test_a_spent_code_does_not_count_again_even_after_a_restart(harness: Harness) -> None:
    first = await request(harness, APPROVER, "audit", n=2)
    second = await request(harness, APPROVER, "audit", n=3)
    code = harness.code(ADMIN)
    assert (await approve(harness, ADMIN, first, code)).status == "pending"
    replayed = await approve(harness, ADMIN, second, code)
    assert (replayed.status, replayed.reason) == ("denied", codes.REUSED)
    assert (await last_vote(harness)).outcome == codes.REUSED
    assert await still_pending(harness, second)
    await harness.restart()
    assert (await approve(harness, ADMIN, second, code)).reason == codes.REUSED
    assert await still_pending(harness, second)


async def test_a_code_older_than_the_last_one_spent_does_not_count(harness: Harness) -> None:
    """RFC 6238 5.2: after the code of step t counted, the (still in-window) code of t-1 is refused."""
    first = await request(harness, APPROVER, "audit", n=2)
    second = await request(harness, APPROVER, "audit", n=3)
    assert (await approve(harness, ADMIN, first, harness.code(ADMIN, 1))).status == "pending"
    assert (await approve(harness, ADMIN, second, harness.code(ADMIN))).reason == codes.REUSED
    assert await still_pending(harness, second)


async def test_an_approver_without_a_secret_is_told_how_to_enroll(harness: Harness) -> None:
    approval_id = await request(harness, APPROVER, "audit", n=2)
    enroll = "you have no one-time code set up; on the executor's host an admin runs: wingman approvers enroll 1"
    tap = await approve(harness, ADMIN, approval_id)  # told at the tap, not asked for digits first
    assert (tap.status, tap.reason) == ("denied", enroll) and "code_required" not in tap.result
    assert (await approve(harness, ADMIN, approval_id, "123456")).reason == enroll
    assert await still_pending(harness, approval_id)


async def test_an_unusable_secret_file_fails_closed(harness: Harness) -> None:
    harness.enroll(ADMIN)
    codes.secret_path(harness.settings.data_dir / codes.DIRECTORY, ADMIN).write_text("not base32!\n")
    approval_id = await request(harness, APPROVER, "audit", n=2)
    reply = await approve(harness, ADMIN, approval_id, "123456")
    assert reply.status == "denied" and "cannot read your one-time code secret" in reply.reason
    assert await still_pending(harness, approval_id)


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", 123456, "١٢٣٤٥٦", ""])
async def test_a_malformed_code_is_a_bad_request(harness: Harness, code: object) -> None:
    approval_id = await request(harness, APPROVER, "audit", n=2)
    reply = await harness.client().call(ADMIN, "approval.approve", {"id": approval_id, "code": code})
    assert (reply.http_status, reply.reason) == (400, "args.code must be the six digits of a one-time code")
    entry = await last_vote(harness)
    assert (entry.decision, entry.params) == ("bad_request", {"approval": approval_id, "factor": "totp"})
    assert await still_pending(harness, approval_id)


async def test_tier_two_needs_no_code_by_default(harness: Harness) -> None:
    approval_id = await request(harness, ADMIN, "verify")
    reply = await approve(harness, APPROVER, approval_id)
    assert reply.status == "done"
    assert (await last_vote(harness)).params == {"approval": approval_id, "factor": "none"}


async def test_a_policy_file_can_ask_codes_for_tier_two(make_harness: Any, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY + "one_time_codes_from_tier: 2\n")
    harness = await make_harness(policy=tmp_path / "policy.yaml")
    harness.enroll(APPROVER)
    approval_id = await request(harness, ADMIN, "verify")
    assert (await approve(harness, APPROVER, approval_id)).reason == codes.MISSING
    assert (await approve(harness, APPROVER, approval_id, harness.code(APPROVER))).status == "done"


async def test_the_approval_event_says_a_code_is_needed(harness: Harness) -> None:
    tier3 = await request(harness, APPROVER, "audit", n=2)
    tier2 = await request(harness, ADMIN, "verify")
    events = {e["ref"]: e for e in await harness.client().poll(wait=0) if e["kind"] == "approval.requested"}
    assert events[tier3]["payload"]["approval"]["code_required"] is True
    assert events[tier2]["payload"]["approval"]["code_required"] is False


def test_enrolment_writes_the_secret_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        secret, path = codes.enroll(tmp_path / "codes", 42)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert codes.read_secret(tmp_path / "codes", 42) == secret
    with pytest.raises(codes.AlreadyEnrolled):
        codes.enroll(tmp_path / "codes", 42)
    replaced, _ = codes.enroll(tmp_path / "codes", 42, replace=True)
    assert replaced != secret and codes.read_secret(tmp_path / "codes", 42) == replaced
    assert [p.name for p in path.parent.iterdir()] == ["42"]  # no temporary file left behind
    uri = codes.provisioning_uri(replaced, 42)
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(replaced).now()
    assert uri.startswith("otpauth://totp/Wingman:tg%3A42?secret=")


# RFC 6238 appendix B, SHA-1: the secret "12345678901234567890", codes cut to six digits.
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.mark.parametrize(
    ("code", "at", "step"),
    [
        ("287082", 59, 1),
        ("081804", 1111111109, 37037036),
        ("050471", 1111111111, 37037037),
        ("081804", 1111111111, 37037036),  # one step behind: still accepted (clock drift)
        ("050471", 1111111109, 37037037),  # one step ahead: accepted too
        ("287082", 1111111111, None),  # long gone
        ("005924", 1234567890, 41152263),
    ],
)
def test_the_rfc_test_vectors(code: str, at: float, step: int | None) -> None:
    assert codes.matching_step(RFC_SECRET, code, at) == step


def test_wingman_approvers_enroll(tmp_path: Path) -> None:
    """The command as an admin runs it: QR code and URI on the terminal, the secret 0600 with
    the executor (under umask 0), a second run refused unless --replace, bad ids one line."""
    from tests.audit.test_cli import one_line_error, wingman

    data = tmp_path / "data"
    old = os.umask(0)
    try:
        done = wingman("approvers", "enroll", "42", cwd=tmp_path, WINGMAN_DATA_DIR=str(data), WINGMAN_APPROVERS="42")
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    uri = next(line for line in done.stdout.splitlines() if line.startswith("otpauth://"))
    assert "█" in done.stdout  # the QR code, drawn in text
    path = data / codes.DIRECTORY / "42"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pyotp.parse_uri(uri).now() == pyotp.TOTP(path.read_text().strip()).now()
    assert "not an approver" not in done.stdout

    again = wingman("approvers", "enroll", "42", cwd=tmp_path, WINGMAN_DATA_DIR=str(data))
    one_line_error(again, 2, "already has a one-time code secret", "--replace")
    replaced = wingman("approvers", "enroll", "42", "--replace", cwd=tmp_path, WINGMAN_DATA_DIR=str(data))
    assert replaced.returncode == 0 and "note: tg:42 is not an approver" in replaced.stdout
    assert pyotp.parse_uri(uri).secret != path.read_text().strip()
    one_line_error(wingman("approvers", "enroll", "-3", cwd=tmp_path, WINGMAN_DATA_DIR=str(data)), 2, "is not a Telegram user id")
