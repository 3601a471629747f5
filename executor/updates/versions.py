"""Update policy and version tags: which tag, if any, a container should be offered. Pure.

A container's policy comes from its labels (:func:`policy_of`), with the executor's default
(``WINGMAN_UPDATE_POLICY``) where it has none:

- ``wingman.update=digest|patch|minor|major|off``: ``digest`` watches only the tag the
  container runs (a new image pushed under the same tag); ``patch``, ``minor`` and
  ``major`` also offer the newest version tag that changes at most that part of the
  version; ``off`` watches nothing.
- ``wingman.update.include=<regex>``: the tags that may be offered (the whole tag must
  match), for tags with a suffix such as ``1.27-alpine``. Without it a tag is offered only
  when it has the same shape as the running one: the same prefix (``v`` or none), the
  same number of parts and the same suffix, so ``1.2.3`` is never "updated" to
  ``1.2.4-rc1`` or ``1.2.4-alpine``.

A tag that is not a version (``latest``, ``stable``, a date) is only watched by digest.
Nothing here does I/O: tags in, a choice out, so the rules are held by property tests
(``tests/updates/test_versions.py``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

POLICY_LABEL = "wingman.update"
INCLUDE_LABEL = "wingman.update.include"
INCLUDE_MAX = 200  # characters of an include pattern: a label, not a program

# v1, 1.2, 1.2.3, 1.2.3.4, each part at most 9 digits, then an optional suffix such as
# -alpine, -rc1 or +build (Docker tags allow letters, digits, '_', '.', '-').
_VERSION = re.compile(r"(?P<prefix>[vV]?)(?P<numbers>[0-9]{1,9}(?:\.[0-9]{1,9}){0,3})(?P<suffix>[-_][A-Za-z0-9_.-]*)?")


class UpdatePolicy(enum.Enum):
    """How far a container may be moved; ordered from nothing to the most."""

    OFF = "off"
    DIGEST = "digest"
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"

    @property
    def watches_tags(self) -> bool:
        return self in (UpdatePolicy.PATCH, UpdatePolicy.MINOR, UpdatePolicy.MAJOR)


POLICY_NAMES = ", ".join(p.value for p in (UpdatePolicy.DIGEST, UpdatePolicy.PATCH, UpdatePolicy.MINOR, UpdatePolicy.MAJOR, UpdatePolicy.OFF))


def parse_policy(text: object) -> UpdatePolicy | None:
    """The policy a label or setting names (any case, surrounding blanks ignored); None if none."""
    if not isinstance(text, str):
        return None
    try:
        return UpdatePolicy(text.strip().lower())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A version tag taken apart; ordered by its numbers, then by the tag's text (a tie-break)."""

    numbers: tuple[int, ...]
    tag: str
    prefix: str = ""
    suffix: str = ""

    @property
    def shape(self) -> tuple[str, int, str]:
        """What two tags must share to be compared without an include pattern."""
        return (self.prefix.lower(), len(self.numbers), self.suffix)


def parse_version(tag: str) -> Version | None:
    """``tag`` as a version, or None when it is not one (``latest``, ``2024-01-01``…)."""
    match = _VERSION.fullmatch(tag) if isinstance(tag, str) else None
    if match is None:
        return None
    numbers = tuple(int(part) for part in match["numbers"].split("."))
    return Version(numbers, tag, match["prefix"], match["suffix"] or "")


def within(policy: UpdatePolicy, current: Version, candidate: Version) -> bool:
    """Whether ``policy`` allows moving from ``current`` to the newer ``candidate``."""
    if candidate.numbers <= current.numbers:
        return False
    if policy is UpdatePolicy.MAJOR:
        return True
    if policy is UpdatePolicy.MINOR:
        return candidate.numbers[:1] == current.numbers[:1]
    if policy is UpdatePolicy.PATCH:
        return len(current.numbers) >= 3 and candidate.numbers[:2] == current.numbers[:2]
    return False


def newest_tag(
    current_tag: str, tags: Iterable[str], policy: UpdatePolicy, include: re.Pattern[str] | None = None
) -> str | None:
    """The newest tag of ``tags`` that ``policy`` allows in place of ``current_tag``; None: none.

    Only version tags count; without ``include`` only those of the running tag's shape,
    with it only those it matches whole. The same tags in any order give the same answer.
    """
    if not policy.watches_tags:
        return None
    current = parse_version(current_tag)
    if current is None:
        return None
    best: Version | None = None
    for tag in tags:
        candidate = parse_version(tag)
        if candidate is None:
            continue
        if include is not None:
            if include.fullmatch(tag) is None:
                continue
        elif candidate.shape != current.shape:
            continue
        if within(policy, current, candidate) and (best is None or candidate > best):
            best = candidate
    return best.tag if best is not None else None


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """What a container's labels ask for, and one line about a label that could not be used."""

    policy: UpdatePolicy
    include: re.Pattern[str] | None = None
    problem: str | None = None


def policy_of(labels: Mapping[str, str] | None, default: UpdatePolicy) -> ContainerPolicy:
    """The container's update policy from its labels; a bad label is reported, never raised.

    A label that cannot be used falls back to watching by digest only (the least that
    still tells about updates), with ``problem`` saying what is wrong and how to fix it.
    """
    labels = labels or {}
    problems: list[str] = []
    policy = default
    if POLICY_LABEL in labels:
        named = parse_policy(labels[POLICY_LABEL])
        if named is None:
            shown = str(labels[POLICY_LABEL])[:40]
            problems.append(f"label {POLICY_LABEL}={shown!r} is not one of {POLICY_NAMES}; watching by digest only")
            policy = UpdatePolicy.DIGEST
        else:
            policy = named
    include: re.Pattern[str] | None = None
    text = labels.get(INCLUDE_LABEL)
    if text is not None and policy is not UpdatePolicy.OFF:
        if len(text) > INCLUDE_MAX:
            problems.append(f"label {INCLUDE_LABEL} is longer than {INCLUDE_MAX} characters; watching by digest only")
            policy = UpdatePolicy.DIGEST
        else:
            try:
                include = re.compile(text)
            except re.error as exc:
                problems.append(f"label {INCLUDE_LABEL}={text[:40]!r} is not a regular expression ({exc}); watching by digest only")
                policy = UpdatePolicy.DIGEST
    return ContainerPolicy(policy, include if policy.watches_tags else None, "; ".join(problems) or None)
