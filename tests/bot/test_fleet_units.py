"""The fleet's pure parts: WINGMAN_EXECUTORS parsing, and buttons that name a host within
Telegram's 64 bytes of callback data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.formatting import as_plain
from bot.handlers import CODE_PROMPT, ApprovalButton, Parsed, approval_keyboard, code_prompt, code_vote, command_of, parse
from bot.settings import BotSettings
from process.settings import SettingsError, load_settings


def settings(value: str | None) -> BotSettings:
    extra = {"WINGMAN_EXECUTORS": value} if value is not None else {}
    return load_settings(BotSettings, _env_file=None, WINGMAN_SOCKET="/run/one.sock", **extra)


def test_unset_is_one_executor_at_the_socket_named_by_itself() -> None:
    assert settings(None).executor_sockets() == {None: Path("/run/one.sock")}
    assert settings("  ").executor_sockets() == {None: Path("/run/one.sock")}


def test_executors_by_name_in_the_order_given() -> None:
    sockets = settings("home=/run/wingman/executor.sock, nas=/run/wingman/nas.sock,").executor_sockets()
    assert list(sockets.items()) == [("home", Path("/run/wingman/executor.sock")), ("nas", Path("/run/wingman/nas.sock"))]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("home", "WINGMAN_EXECUTORS: 'home' is not name=socket; write e.g. home=/run/wingman/executor.sock,nas=/run/wingman/nas.sock"),
        ("home=", "WINGMAN_EXECUTORS: 'home=' is not name=socket; write e.g. home=/run/wingman/executor.sock,nas=/run/wingman/nas.sock"),
        ("Home=/a", "WINGMAN_EXECUTORS: 'Home' is not a host name: use 1 to 20 lowercase letters, digits and '-', not starting or ending with '-'"),
        ("-a=/a", "WINGMAN_EXECUTORS: '-a' is not a host name: use 1 to 20 lowercase letters, digits and '-', not starting or ending with '-'"),
        ("a" * 21 + "=/a", f"WINGMAN_EXECUTORS: '{'a' * 21}' is not a host name: use 1 to 20 lowercase letters, digits and '-', not starting or ending with '-'"),
        ("a=/x,a=/y", "WINGMAN_EXECUTORS: 'a' is listed twice; give each executor one name"),
        ("a=/x,b=/x", "WINGMAN_EXECUTORS: two names share one socket; each executor has its own"),
    ],
)
def test_a_bad_list_is_one_line_naming_the_fix(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(value)
    assert str(caught.value) == problem


def test_the_longest_button_fits_in_64_bytes_and_reads_back() -> None:
    host, approval = "n" + "-" * 18 + "s", "A" * 32  # the longest host name and approval id
    for op in ("approve", "reject", "cancel"):
        packed = ApprovalButton(op=op, id=approval, host=host).pack()
        assert len(packed.encode()) <= 64
        assert ApprovalButton.unpack(packed) == ApprovalButton(op=op, id=approval, host=host)
    assert len(ApprovalButton(op="approve", id=approval, host=host).pack().encode()) == 64
    with pytest.raises(ValueError):
        ApprovalButton(op="approve", id=approval, host=host + "x").pack()


def test_one_executor_keeps_the_buttons_it_had() -> None:
    """Buttons posted before the bot knew of hosts still work: no host means the only one."""
    assert ApprovalButton(op="approve", id="abc123").pack() == "ap:approve:abc123"
    assert ApprovalButton.unpack("ap:approve:abc123") == ApprovalButton(op="approve", id="abc123", host="")
    keyboard = approval_keyboard("abc123", for_requester=False, host="nas")
    assert [b.callback_data for b in keyboard.inline_keyboard[0]] == ["ap:approve:abc123:nas", "ap:reject:abc123:nas"]


def test_a_code_prompt_names_the_host_and_the_reply_goes_there() -> None:
    prompt = code_prompt(2, "Ann", "abc123@nas")
    found = CODE_PROMPT.match(as_plain(prompt))
    assert found is not None and found.group(1) == "abc123@nas"
    assert code_vote(found.group(1), "123 456") == Parsed("approval.approve", {"id": "abc123", "code": "123456"}, "nas")


@pytest.mark.parametrize(("text", "parsed"), [
    ("/deploy web@nas nginx@sha256:ab", Parsed("deploy", {"target": "web", "image": "nginx@sha256:ab"}, "nas")),
    ("/status nas", Parsed("status", {"target": "nas"})),  # a host or a container: bot.routing decides
    ("/vm start 101@pve", Parsed("vm.start", {"target": 101}, "pve")),
    ("/cancel 3f2a9c1b@home", Parsed("approval.cancel", {"id": "3f2a9c1b"}, "home")),
    ("/logs db@home 50", Parsed("logs", {"target": "db", "lines": 50}, "home")),
])  # fmt: skip
def test_targets_name_their_host(text: str, parsed: Parsed) -> None:
    assert parse(*command_of(text)) == parsed
