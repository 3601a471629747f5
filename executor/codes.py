"""Approvers' one-time codes (TOTP, RFC 6238): secrets only the executor holds, and the check.

The bot holds the signing key, so a compromised bot can sign any approver's vote. A vote on
an approval that needs a code (tier 3; tier 2 too when the policy file says
``one_time_codes_from_tier: 2``) therefore counts only with the six digits the approver's
authenticator app shows, made from a secret the bot never sees.

Secrets: ``wingman approvers enroll <telegram id>`` makes one and writes it, base32, to
``<WINGMAN_DATA_DIR>/approver-codes/<telegram id>`` (the directory 0700, the file 0600
whatever the umask, written whole or not at all). The executor reads the file at each vote,
so an enrolment counts at once, without a restart.

The check: the code of the current 30 s step, or of one step either side (a phone's clock
is rarely exact). Each approver's accepted steps only move forward: a code whose step is not
newer than the approver's last accepted one is refused as reused (RFC 6238 section 5.2).
The accepted step is written to ``used_codes`` in the transaction that counts the vote, so
a code is spent exactly when a vote is counted with it, and stays spent across restarts.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyotp
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.schema import used_codes

DIRECTORY = "approver-codes"
ISSUER = "Wingman"
DIGITS = 6
STEP_SECONDS = 30
DRIFT_STEPS = 1  # steps either side of now that are still accepted
CODE_PATTERN = re.compile(r"[0-9]{6}")
_SECRET_PATTERN = re.compile(r"[A-Z2-7]{16,128}")

MISSING = "this request also needs your one-time code (the six digits your authenticator app shows for Wingman)"
NOT_ENROLLED = "you have no one-time code set up; on the executor's host an admin runs: wingman approvers enroll {user}"
UNREADABLE = "the executor cannot read your one-time code secret; an admin should run: wingman approvers enroll {user} --replace"
WRONG = "that one-time code is wrong (or your phone's clock is off); try the code your app shows now"
REUSED = "that one-time code was already used; wait for the next one (at most 30 s)"


class AlreadyEnrolled(Exception):
    """The approver has a secret already; ``--replace`` makes a new one."""


def secret_path(directory: Path, user_id: int) -> Path:
    return directory / str(user_id)


def enroll(directory: Path, user_id: int, *, replace: bool = False) -> tuple[str, Path]:
    """Make and store a new secret for ``user_id``; returns it and the file it is in."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # mkdir's mode passes through the umask, and an older one may be wider
    path = secret_path(directory, user_id)
    if path.exists() and not replace:
        raise AlreadyEnrolled(str(path))
    secret = pyotp.random_base32(32)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        os.write(fd, f"{secret}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)  # the old secret, if any, stays valid until this moment
    return secret, path


def provisioning_uri(secret: str, user_id: int) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=f"tg:{user_id}", issuer_name=ISSUER)


def read_secret(directory: Path, user_id: int) -> str | None:
    """The approver's secret; None when not enrolled. OSError or ValueError when unusable."""
    try:
        text = secret_path(directory, user_id).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    if not _SECRET_PATTERN.fullmatch(text):
        raise ValueError("not a base32 secret")
    return text


def matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step whose code ``code`` is (now, or one step either side), or None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    now = int(at // STEP_SECONDS)  # RFC 6238: T = floor((unix time - T0) / X), T0 = 0
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        # Compare every candidate, in constant time each, so timing says nothing.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """The one-time code a vote carries, and what is needed to check it."""

    approver: str  # "tg:<id>"
    code: str | None
    secret: str | None  # None: the approver is not enrolled
    unreadable: bool  # the secret's file exists but cannot be used
    at: float  # wall-clock time the code is checked for

    @property
    def factor(self) -> str:
        """What the vote carried, for the audit: "totp" when it gave a code."""
        return "totp" if self.code is not None else "none"

    async def spend(self, conn: AsyncConnection) -> str | None:
        """None when the code is right and newer than the approver's last (now recorded as
        used, in ``conn``'s transaction); otherwise the reason the vote does not count."""
        user = self.approver.removeprefix("tg:")
        # An approver without a usable secret is told so before being asked for digits.
        if self.unreadable:
            return UNREADABLE.format(user=user)
        if self.secret is None:
            return NOT_ENROLLED.format(user=user)
        if self.code is None:
            return MISSING
        step = matching_step(self.secret, self.code, self.at)
        if step is None:
            return WRONG
        last = (
            await conn.execute(select(func.max(used_codes.c.step)).where(used_codes.c.approver == self.approver))
        ).scalar()
        if last is not None and step <= last:
            return REUSED
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        written = await conn.execute(
            insert(used_codes).values(approver=self.approver, step=step, at=self.at).on_conflict_do_nothing()
        )
        if written.rowcount != 1:
            return REUSED  # the same code, spent a moment ago by a concurrent vote
        # Only the newest step matters from now on.
        await conn.execute(delete(used_codes).where(used_codes.c.approver == self.approver, used_codes.c.step < step))
        return None


class OneTimeCodes:
    """The executor's view of the enrolled secrets (read from disk at each vote)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    async def check_for(self, approver: str, user_id: int, code: str | None, at: float) -> CodeCheck:
        secret, unreadable = None, False
        if self.directory is not None:
            try:
                secret = await asyncio.to_thread(read_secret, self.directory, user_id)
            except (OSError, ValueError):
                unreadable = True
        return CodeCheck(approver=approver, code=code, secret=secret, unreadable=unreadable, at=at)
