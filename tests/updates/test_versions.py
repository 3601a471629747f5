"""Update policies and version tags: the table of cases, then the rules as properties."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.updates.versions import (
    UpdatePolicy,
    newest_tag,
    parse_policy,
    parse_version,
    policy_of,
    within,
)

TAGS = ["1.2.3", "1.2.4", "1.3.0", "2.0.0", "latest", "1.2.5-rc1", "v1.2.9", "1.27-alpine", "1.28-alpine", "1.29"]
P = UpdatePolicy


@pytest.mark.parametrize(
    ("policy", "current", "expected"),
    [
        (P.PATCH, "1.2.3", "1.2.4"),
        (P.MINOR, "1.2.3", "1.3.0"),
        (P.MAJOR, "1.2.3", "2.0.0"),
        (P.DIGEST, "1.2.3", None),
        (P.OFF, "1.2.3", None),
        (P.MAJOR, "2.0.0", None),
        (P.MAJOR, "latest", None),  # not a version: watched by digest only
        (P.MINOR, "1.27-alpine", "1.28-alpine"),  # the same suffix
        (P.MINOR, "1.27", "1.29"),
        (P.PATCH, "1.27", None),  # two parts: nothing is a patch of it
        (P.PATCH, "v1.2.3", "v1.2.9"),
    ],
)
def test_the_newest_tag_within_the_policy(policy: UpdatePolicy, current: str, expected: str | None) -> None:
    assert newest_tag(current, TAGS, policy) == expected


def test_an_include_pattern_chooses_the_tags_that_may_be_offered() -> None:
    alpine = re.compile(r"1\.\d+-alpine")
    assert newest_tag("1.27-alpine", [*TAGS, "1.30"], P.MINOR, alpine) == "1.28-alpine"
    assert newest_tag("1.2.3", TAGS, P.PATCH, re.compile(r"1\.2\.\d+(-rc\d+)?")) == "1.2.5-rc1"
    assert newest_tag("1.2.3", TAGS, P.MAJOR, re.compile(r"1\.\d+\.\d+")) == "1.3.0"


@pytest.mark.parametrize(
    ("labels", "policy", "problem"),
    [
        ({}, P.DIGEST, None),
        ({"wingman.update": "Minor "}, P.MINOR, None),
        ({"wingman.update": "off", "wingman.update.include": "("}, P.OFF, None),
        ({"wingman.update": "weekly"}, P.DIGEST, "label wingman.update='weekly' is not one of digest, patch, minor, major, off"),
        ({"wingman.update": "major", "wingman.update.include": "1.(2"}, P.DIGEST, "label wingman.update.include='1.(2' is not a regular expression"),
        ({"wingman.update": "major", "wingman.update.include": "x" * 201}, P.DIGEST, "label wingman.update.include is longer than 200"),
    ],
)
def test_labels_name_the_policy_and_a_bad_one_is_one_line(labels: dict[str, str], policy: UpdatePolicy, problem: str | None) -> None:
    found = policy_of(labels, P.DIGEST)
    assert found.policy is policy
    if problem is None:
        assert found.problem is None
    else:
        assert found.problem is not None and found.problem.startswith(problem) and "\n" not in found.problem


def test_policy_names() -> None:
    assert [parse_policy(t) for t in ("digest", "PATCH", " major", "nope", 3)] == [P.DIGEST, P.PATCH, P.MAJOR, None, None]
    assert parse_version("latest") is None and parse_version("1.2.3.4.5") is None
    assert parse_version("v1.02-x") is not None


# -- properties ------------------------------------------------------------------------------

numbers = st.lists(st.integers(0, 12), min_size=3, max_size=3).map(tuple)
version_tags = numbers.map(lambda n: ".".join(map(str, n)))
any_tags = st.lists(st.one_of(version_tags, st.sampled_from(["latest", "1.2", "v1.2.3", "1.2.3-rc1", "x"])), max_size=30)
tag_policies = st.sampled_from([P.PATCH, P.MINOR, P.MAJOR])


@settings(max_examples=300, deadline=None)
@given(current=version_tags, tags=any_tags, policy=st.sampled_from(list(P)))
def test_the_choice_is_newer_within_policy_and_nothing_allowed_beats_it(current: str, tags: list[str], policy: UpdatePolicy) -> None:
    chosen = newest_tag(current, tags, policy)
    now = parse_version(current)
    assert now is not None
    allowed = [v for v in map(parse_version, tags) if v is not None and v.shape == now.shape and within(policy, now, v)]
    if chosen is None:
        assert allowed == []
        return
    assert chosen in tags
    best = parse_version(chosen)
    assert best is not None and best.numbers > now.numbers and within(policy, now, best)
    assert all(v.numbers <= best.numbers for v in allowed)


@settings(max_examples=200, deadline=None)
@given(current=version_tags, tags=any_tags, policy=tag_policies, seed=st.integers())
def test_the_order_of_the_tag_list_does_not_matter(current: str, tags: list[str], policy: UpdatePolicy, seed: int) -> None:
    shuffled = list(tags)
    random.Random(seed).shuffle(shuffled)
    assert newest_tag(current, tags, policy) == newest_tag(current, shuffled, policy)


@settings(max_examples=200, deadline=None)
@given(current=version_tags, tags=any_tags)
def test_a_wider_policy_never_offers_less(current: str, tags: list[str]) -> None:
    def numbers_of(policy: UpdatePolicy) -> tuple[int, ...]:
        chosen = newest_tag(current, tags, policy)
        version = parse_version(chosen) if chosen is not None else None
        return version.numbers if version is not None else ()

    assert numbers_of(P.PATCH) <= numbers_of(P.MINOR) <= numbers_of(P.MAJOR)
    assert newest_tag(current, tags, P.DIGEST) is None and newest_tag(current, tags, P.OFF) is None


@settings(max_examples=200, deadline=None)
@given(current=version_tags, tags=any_tags, policy=tag_policies)
def test_an_include_pattern_only_narrows(current: str, tags: list[str], policy: UpdatePolicy) -> None:
    pattern = re.compile(r"\d+\.\d+\.[0-5]")
    chosen = newest_tag(current, tags, policy, pattern)
    if chosen is not None:
        assert pattern.fullmatch(chosen)
        now, best = parse_version(current), parse_version(chosen)
        assert now is not None and best is not None and within(policy, now, best)
