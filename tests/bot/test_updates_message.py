"""The updates message, pure: what it lists, how, and the Deploy buttons' data."""

from __future__ import annotations

from typing import Any

from bot.formatting import as_plain
from bot.updates import DeployButton, age, updates_message

NOW = 1_800_000_000.0
OLD, NEW = "sha256:" + "1" * 60 + "abcd", "sha256:" + "2" * 60 + "ef01"


def update(target: str = "web", current: str = "1.2.3", new: str = "1.2.4", *, uid: str = "0123456789ab", created: Any = NOW - 2 * 86400) -> dict[str, Any]:
    return {
        "id": uid, "target": target, "image": f"reg.example/app:{current}", "current_tag": current, "new_tag": new,
        "current_digest": OLD, "new_digest": NEW, "reference": f"reg.example/app:{new}@{NEW}", "created": created,
    }  # fmt: skip


def test_one_message_lists_each_update_with_tags_short_digests_and_age_and_a_deploy_button() -> None:
    payload = {"updates": [update(), update("db", "15", "15", uid="ba9876543210", created=None)], "problems": ["reg.example: 401 Unauthorized"], "checked": 7}
    text, markup = updates_message([(None, payload, None)], now=NOW)
    plain = as_plain(text)
    assert plain.splitlines() == [
        "📦 2 updates available (7 containers checked)",
        "1. web · 1.2.3 → 1.2.4 · sha256:1111…abcd → sha256:2222…ef01 · built 2 days ago",
        "2. db · 15 (new image) · sha256:1111…abcd → sha256:2222…ef01",
        "⚠️ reg.example: 401 Unauthorized",
    ]
    assert markup is not None
    buttons = [row[0] for row in markup.inline_keyboard]
    assert [b.text for b in buttons] == ["🚀 Deploy web 1.2.4", "🚀 Deploy db 15"]
    assert [DeployButton.unpack(str(b.callback_data)) for b in buttons] == [DeployButton(id="0123456789ab"), DeployButton(id="ba9876543210")]


def test_with_several_hosts_each_update_names_its_host_and_a_silent_host_is_one_line() -> None:
    home = {"updates": [update()], "problems": [], "checked": 3}
    text, markup = updates_message([("home", home, None), ("nas", None, "not answering")], now=NOW)
    assert "1. web@home · 1.2.3 → 1.2.4" in as_plain(text)
    assert as_plain(text).splitlines()[-1] == "⚠️ nas: not answering"
    assert markup is not None
    data = str(markup.inline_keyboard[0][0].callback_data)
    assert DeployButton.unpack(data) == DeployButton(id="0123456789ab", host="home")
    longest = DeployButton(id="x" * 32, host="h" * 20).pack()
    assert len(longest.encode()) <= 64


def test_nothing_to_update_and_names_are_escaped() -> None:
    text, markup = updates_message([(None, {"updates": [], "problems": ["<reg>: rate limited (ratelimit-remaining: 0)"], "checked": 4}, None)], now=NOW)
    assert markup is None
    assert text == "✅ No updates: 4 containers checked, each runs its newest image.\n⚠️ &lt;reg&gt;: rate limited (ratelimit-remaining: 0)"
    text, _ = updates_message([(None, {"updates": [update("<b>x</b>")], "problems": [], "checked": 1}, None)], now=NOW)
    assert "&lt;b&gt;x&lt;/b&gt;" in text


def test_a_long_list_stays_one_message_and_says_how_many_more() -> None:
    many = [update(f"service-with-a-rather-long-name-{i:03}", uid=f"{i:012x}") for i in range(120)]
    text, markup = updates_message([(None, {"updates": many, "problems": [], "checked": 120}, None)], now=NOW)
    assert len(as_plain(text)) <= 4096
    assert markup is not None and len(markup.inline_keyboard) <= 50
    assert as_plain(text).splitlines()[-1] == f"… and {120 - len(markup.inline_keyboard)} more: deploy some, then send /updates again."


def test_age() -> None:
    assert [age(NOW - s, NOW) for s in (5, 120, 3600, 86400, 3 * 86400)] == [
        "built just now", "built 2 minutes ago", "built 1 hour ago", "built 1 day ago", "built 3 days ago"
    ]
    assert age(None, NOW) == "" and age("yesterday", NOW) == ""
