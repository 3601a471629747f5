"""The YAML policy file: what it accepts, and one line `<file>:<line>: <reason>` for the rest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from policy import ActionOverride, PolicyError, Tier, load_policy_file

FULL = """\
# a comment
roles: {admins: [1], approvers: [2], operators: [3], viewers: [4]}
allowlists: {containers: [web, "app-*"], vms: [100, 101], nodes: [pve1]}
read_only: false
allow_dangerous_ops: false
actions:
  restart: {tier: 2}
  deploy: {targets: [web]}
  vm.reboot:
    tier: 3
    targets: [101]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    loaded = load_policy_file(path)
    assert loaded.path == str(path)
    assert loaded.admins == {1}
    assert loaded.approvers == {2}
    assert loaded.operators == {3}
    assert loaded.viewers == {4}
    assert loaded.containers == {"web", "app-*"}
    assert loaded.vms == {100, 101}
    assert loaded.nodes == {"pve1"}
    assert (loaded.read_only, loaded.allow_dangerous_ops) == (False, False)
    assert dict(loaded.actions) == {
        "restart": ActionOverride(tier=Tier.ONE_APPROVAL),
        "deploy": ActionOverride(targets=frozenset({"web"})),
        "vm.reboot": ActionOverride(tier=Tier.TWO_APPROVALS, targets=frozenset({101})),
    }


def test_every_key_is_optional(tmp_path: Path) -> None:
    loaded = load_policy_file(write(tmp_path, "read_only: true\n"))
    assert loaded.read_only is True
    assert loaded.allow_dangerous_ops is None  # not mentioned: the settings decide
    assert not loaded.admins and not loaded.containers and not loaded.actions


def test_empty_lists_and_nulls_mean_empty(tmp_path: Path) -> None:
    text = "roles:\n  admins:\n  viewers: []\nallowlists: {containers: [], vms: ~}\nactions:\n"
    loaded = load_policy_file(write(tmp_path, text))
    assert not loaded.admins and not loaded.viewers and not loaded.containers and not loaded.vms


@pytest.mark.parametrize(
    ("text", "value"), [("yes", True), ("on", True), ("True", True), ("no", False)]
)
def test_yaml_booleans(tmp_path: Path, text: str, value: bool) -> None:
    assert load_policy_file(write(tmp_path, f"read_only: {text}\n")).read_only is value


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    assert load_policy_file(write(tmp_path, b"\xef\xbb\xbfread_only: true\n")).read_only is True


def test_quoted_numeric_container_name(tmp_path: Path) -> None:
    loaded = load_policy_file(write(tmp_path, 'allowlists: {containers: ["123", "yes"]}\n'))
    assert loaded.containers == {"123", "yes"}


# ---- errors: (file text, line the error must name, phrase the reason must contain).

BAD = [
    ("empty", "", 1, "the policy file is empty"),
    ("comments only", "# nothing\n# here\n", 1, "the policy file is empty"),
    ("not a mapping: list", "- roles\n- actions\n", 1, "must be a mapping"),
    ("not a mapping: scalar", "\n\nhello\n", 3, "must be a mapping"),
    ("not YAML: bad indentation", "roles:\n  admins: [1]\n bad: 2\n", 3, "not valid YAML"),
    ("not YAML: unclosed flow", "roles: {admins: [1\n\n", 3, "not valid YAML"),
    ("not YAML: tab", "roles:\n\tadmins: [1]\n", 2, "not valid YAML"),
    (
        "two documents",
        "read_only: true\n---\nread_only: false\n",
        2,
        "not valid YAML: expected a single document in the stream, but found another document",
    ),
    ("unknown top-level key", "read_only: true\nreadonly: true\n", 2, "unknown key 'readonly'"),
    (
        "unknown role list",
        "roles:\n  admins: [1]\n  owners: [2]\n",
        3,
        "unknown key 'owners' in roles",
    ),
    ("unknown allowlist", "allowlists:\n  images: [x]\n", 2, "unknown key 'images' in allowlists"),
    (
        "duplicate top-level key",
        "read_only: false\nactions: {}\nread_only: true\n",
        3,
        "duplicate key 'read_only' (first on line 1)",
    ),
    ("duplicate nested key", "roles:\n  admins: [1]\n  admins: [2]\n", 3, "duplicate key 'admins'"),
    (
        "duplicate action",
        "actions:\n  restart: {tier: 2}\n  restart: {tier: 3}\n",
        3,
        "duplicate key 'restart'",
    ),
    (
        "duplicate action key",
        "actions:\n  restart: {tier: 2, tier: 3}\n",
        2,
        "duplicate key 'tier'",
    ),
    ("non-string key", "1: true\n", 1, "keys must be names"),
    ("merge key", "base: &b {read_only: true}\n", 1, "unknown key 'base'"),
    ("roles not a mapping", "roles: [1, 2]\n", 1, "roles must be a mapping"),
    ("role list not a list", "roles:\n  admins: 1\n", 2, "admins must be a list"),
    ("user id as text", "roles:\n  viewers:\n    - 4\n    - four\n", 4, "Telegram user id"),
    ("user id zero", "roles:\n  viewers: [0]\n", 2, "positive whole number"),
    ("user id negative", "roles:\n  viewers: [-7]\n", 2, "must be a positive whole number"),
    ("user id octal", "roles:\n  viewers: [017]\n", 2, "plain decimal"),
    ("user id float", "roles:\n  viewers: [1.5]\n", 2, "whole number"),
    ("read_only text", "read_only: maybe\n", 1, "read_only must be true or false"),
    ("read_only number", "\nread_only: 1\n", 2, "read_only must be true or false"),
    (
        "dangerous list",
        "allow_dangerous_ops: [true]\n",
        1,
        "allow_dangerous_ops must be true or false",
    ),
    ("read_only null", "read_only:\n", 1, "read_only must be true or false"),
    (
        "bad glob in the middle",
        "allowlists:\n  containers:\n    - web\n    - 'a*b'\n",
        4,
        "one trailing '*'",
    ),
    ("bare star", "allowlists: {containers: ['*']}\n", 1, "bare '*'"),
    (
        "glob without separator",
        "allowlists:\n  containers: [app*]\n",
        2,
        "ending in '-', '_' or '.'",
    ),
    ("question mark", "allowlists:\n  containers: ['app-?']\n", 2, "one trailing '*'"),
    ("bracket", "allowlists:\n  containers: ['app-[12]']\n", 2, "one trailing '*'"),
    (
        "path in container name",
        "allowlists:\n  containers: [../etc]\n",
        2,
        "not a valid container name",
    ),
    ("number as container name", "allowlists:\n  containers: [123]\n", 2, 'quote names like "123"'),
    ("vmid too small", "allowlists:\n  vms: [100, 99]\n", 2, "from 100 to 999999999"),
    ("vmid too large", "allowlists:\n  vms:\n    - 1000000000\n", 3, "from 100 to 999999999"),
    ("vmid as text", "allowlists:\n  vms: ['100']\n", 2, "a vmid must be a whole number"),
    ("bad node", "allowlists:\n  nodes: [pve_1]\n", 2, "not a valid node name"),
    (
        "unknown action",
        "actions:\n  restart: {tier: 1}\n  exec: {tier: 1}\n",
        3,
        "unknown action 'exec'",
    ),
    ("action not a mapping", "actions:\n  restart: 2\n", 2, "restart must be a mapping"),
    ("empty override", "actions:\n  restart: {}\n", 2, "give a tier, targets, or both"),
    ("null override", "actions:\n  restart:\n", 2, "give a tier, targets, or both"),
    (
        "unknown override key",
        "actions:\n  restart: {tier: 2, role: admin}\n",
        2,
        "unknown key 'role' in restart",
    ),
    ("tier 4", "actions:\n  deploy:\n    tier: 4\n", 3, "tier must be 0, 1, 2 or 3"),
    ("tier -1", "actions:\n  deploy: {tier: -1}\n", 2, "tier must be 0, 1, 2 or 3"),
    ("tier +1", "actions:\n  deploy: {tier: +1}\n", 2, "plain decimal"),
    ("tier text", "actions:\n  deploy: {tier: high}\n", 2, "tier must be a whole number"),
    ("tier quoted", "actions:\n  deploy: {tier: '2'}\n", 2, "tier must be a whole number"),
    ("tier float", "actions:\n  deploy: {tier: 2.0}\n", 2, "tier must be a whole number"),
    ("tier bool", "actions:\n  deploy: {tier: true}\n", 2, "tier must be a whole number"),
    ("mutating to 0", "actions:\n  restart:\n    tier: 0\n", 3, "restart changes things"),
    ("logs to 0", "actions:\n  logs: {tier: 0}\n", 2, "cannot be tier 0"),
    ("tier 3 to 1", "actions:\n  vm.rollback:\n    tier: 1\n", 3, "vm.rollback is a tier-3"),
    ("tier 3 to 0", "roles:\n  admins: [1]\nactions:\n  vm.rollback: {tier: 0}\n", 4, "cannot be tier 0"),
    (
        "targets on a targetless action",
        "actions:\n  audit: {targets: [web]}\n",
        2,
        "audit takes no target",
    ),
    ("targets not a list", "actions:\n  deploy: {targets: web}\n", 2, "must be a list"),
    ("bad target glob", "actions:\n  deploy:\n    targets: [web, 'w*b']\n", 3, "one trailing '*'"),
    (
        "container target on a VM action",
        "actions:\n  vm.start: {targets: [web]}\n",
        2,
        "a vmid must be a whole number",
    ),
    (
        "python tag",
        "read_only: !!python/object/apply:os.system ['echo pwned']\n",
        1,
        "read_only must be true or false",
    ),
    ("custom tag", "roles:\n  admins: [!secret 1]\n", 2, "Telegram user id"),
    ("NUL character", "read_only: true\nx: \x00\n", 2, "character YAML does not allow: U+0000"),
]


@pytest.mark.parametrize(("text", "line", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_errors_name_the_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message
    assert "\n" not in message
    assert caught.value.line == line
    assert caught.value.where == str(path)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"read_only: true\n# caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8") as caught:
        load_policy_file(path)
    assert str(caught.value) == f"{path}:2: not UTF-8 text"


def test_a_python_tag_is_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    text = f"roles: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(PolicyError):
        load_policy_file(write(tmp_path, text))
    assert not marker.exists()


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "roles: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert "\n" not in str(caught.value)


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(PolicyError, match="not a policy file") as caught:
        load_policy_file(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_alias_bombs_stay_cheap(tmp_path: Path) -> None:
    # Aliases share nodes and lists must hold scalars, so this fails on the first nested list.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    text = "allowlists:\n  containers: *a29\n" + "\n".join(lines) + "\n"
    with pytest.raises(PolicyError):
        load_policy_file(write(tmp_path, text))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp / "missing.yaml", "no such file"),
        (lambda tmp: tmp, "is a directory, not a policy file"),
        (lambda tmp: tmp / "missing-dir" / "policy.yaml", "no such file"),
        (lambda tmp: Path(str(tmp) + "/bad\x00name"), "cannot be read"),
    ],
)
def test_unreadable_files_name_the_file_without_a_line(
    make: object, reason: str, tmp_path: Path
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in str(caught.value)
    assert caught.value.line is None


def test_a_file_name_with_a_newline_still_gives_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "read_only: 3\n", name="odd\nname.yaml")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert "\n" not in str(caught.value)


def test_the_module_docstring_example_is_a_valid_file(tmp_path: Path) -> None:
    import policy.file

    doc = policy.file.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\n\n", 1)[0]
    loaded = load_policy_file(write(tmp_path, textwrap.dedent(example)))
    assert loaded.containers == {"web", "app-*", "stack:immich"}
    assert loaded.actions["restart"].tier == Tier.ONE_APPROVAL
