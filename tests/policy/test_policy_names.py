"""Container names and patterns, vmids, node names and user ids: what is valid, what matches."""

from __future__ import annotations

import pytest

from policy import names

# ---- glob matching: `app-*` stands for one or more characters after `app-`.


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("app-1", True),
        ("app-web", True),
        ("app-a.b_c-d", True),
        ("app--", True),
        ("app-", False),  # '*' needs at least one character: 'app-' is not in the family
        ("app", False),
        ("xapp-1", False),  # the prefix anchors at the start
        ("App-1", False),  # names are case-sensitive, as in Docker
        ("ap-1", False),
        ("web", True),  # exact entry
        ("web1", False),
        ("we", False),
        ("Web", False),
    ],
)
def test_matching(name: str, matches: bool) -> None:
    assert names.container_matches(name, ["web", "app-*"]) is matches


@pytest.mark.parametrize(("pattern", "name"), [("db_*", "db_1"), ("svc.*", "svc.web")])
def test_underscore_and_dot_separators_also_make_globs(pattern: str, name: str) -> None:
    assert names.container_pattern_problem(pattern) is None
    assert names.container_matches(name, [pattern])


def test_no_patterns_match_nothing() -> None:
    assert not names.container_matches("web", [])


@pytest.mark.parametrize(
    "pattern", ["*", "a*", "app*", "*-app", "a*-*", "app-?", "app-[12]", "ap*p-"]
)
def test_malformed_patterns_never_act_as_globs(pattern: str) -> None:
    # Even if one slips past validation (a hand-built Policy), it only matches its own text.
    for name in ("app-1", "a", "ab", "app", "web", "apple-1"):
        assert not names.container_matches(name, [pattern])


# ---- pattern validation (the allowlist and policy file use it).


@pytest.mark.parametrize(
    "pattern", ["web", "app-*", "db_*", "a.*", "A1-*", "x" * 128, "x" * 127 + "-*"]
)
def test_valid_patterns(pattern: str) -> None:
    assert names.container_pattern_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason_has"),
    [
        ("*", "bare '*'"),
        ("app*", "must be the start of a valid container name ending in '-', '_' or '.'"),
        ("-*", "must be the start of a valid container name"),
        ("*-app", "one trailing '*'"),
        ("app-**", "one trailing '*'"),
        ("a*b-*", "one trailing '*'"),
        ("app-?", "one trailing '*'"),
        ("app-[0-9]", "one trailing '*'"),
        ("app]", "one trailing '*'"),
        ("x" * 128 + "-*", "must be the start of a valid container name"),
        ("we b", "not a valid container name"),
        ("", "not a valid container name"),
        (7, "not a container name or 'prefix-*' pattern"),
    ],
)
def test_invalid_patterns(pattern: object, reason_has: str) -> None:
    problem = names.container_pattern_problem(pattern)
    assert problem is not None
    assert reason_has in problem


# ---- container names (Docker's rule).


@pytest.mark.parametrize("name", ["w", "web", "Web-1", "a.b_c-d", "0", "9lives", "x" * 128])
def test_valid_container_names(name: str) -> None:
    assert names.container_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-a",
        ".a",
        "_a",
        "a b",
        "a/b",
        "a;b",
        "a$b",
        "a\n",
        "\u00e9",
        "x" * 129,
        "a\x00",
        None,
        5,
    ],
)
def test_invalid_container_names(name: object) -> None:
    problem = names.container_name_problem(name)
    assert problem is not None
    assert "container name" in problem
    assert "\n" not in problem


# ---- vmids, node names, user ids.


@pytest.mark.parametrize(
    ("value", "vmid"),
    [
        (100, 100),
        ("100", 100),
        (999_999_999, 999_999_999),
        ("999999999", 999_999_999),
        (99, None),
        ("99", None),
        (1_000_000_000, None),
        ("1000000000", None),
        ("0100", None),
        ("1_000", None),
        ("+100", None),
        ("100\n", None),
        ("\u0661\u0660\u0660", None),  # Arabic-Indic digits: int() would accept them
        ("9" * 5000, None),
        (True, None),
        (100.0, None),
        (None, None),
    ],
)
def test_parse_vmid(value: object, vmid: int | None) -> None:
    assert names.parse_vmid(value) == vmid


@pytest.mark.parametrize("node", ["pve", "pve1", "pve-1", "P", "a" * 63, "1pve"])
def test_valid_node_names(node: str) -> None:
    assert names.node_name_problem(node) is None


@pytest.mark.parametrize("node", ["", "-pve", "pve-", "pve_1", "pve.lan", "a" * 64, "pve 1", None])
def test_invalid_node_names(node: object) -> None:
    assert names.node_name_problem(node) is not None


@pytest.mark.parametrize(
    ("value", "user_id"),
    [
        (1, 1),
        ("42", 42),
        (2**52, 2**52),
        (0, None),
        (-5, None),
        ("-5", None),
        ("05", None),
        (True, None),
        (1.0, None),
        ("", None),
        ("1" * 21, None),
    ],
)
def test_parse_user_id(value: object, user_id: int | None) -> None:
    assert names.parse_user_id(value) == user_id


@pytest.mark.parametrize("value", ["web", "x" * 500, "a\nb", "\u00e9\u202e", 5, None, ["a"]])
def test_show_is_short_ascii_and_one_line(value: object) -> None:
    shown = names.show(value)
    assert shown.isascii()
    assert "\n" not in shown
    assert len(shown) <= 40
