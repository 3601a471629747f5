"""Alert messages rendered: escaped text, recovered incidents, the buttons and their data."""

from __future__ import annotations

from typing import Any

from bot.alerts import CALLBACK_LIMIT, AlertButton, alert_keyboard, alert_text


def incident(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "1a2b3c4d", "container": "web", "state": "open", "count": 5, "kind": "exited", "exit_code": 137, "oom": True,
        "headline": "web exited (137, OOM killed) · restarted 4 times in 5m 0s", "logs": ["<b>boom</b> & gone"], "rollback": False,
    }  # fmt: skip
    return {**base, **overrides}


def test_an_open_incident_shows_its_headline_and_escaped_log_tail() -> None:
    text = alert_text({"incidents": [incident()]})
    assert text.startswith("🚨 <b>web exited (137, OOM killed) · restarted 4 times in 5m 0s</b>")
    assert "<pre>&lt;b&gt;boom&lt;/b&gt; &amp; gone</pre>" in text


def test_with_many_hosts_the_container_is_named_with_its_host() -> None:
    assert alert_text({"incidents": [incident()]}, host="nas").startswith("🚨 <b>web@nas exited (137")


def test_a_recovered_incident_is_one_line_without_buttons() -> None:
    closed = incident(state="closed", headline="web exited (3) · recovered after 3m 0s")
    assert alert_text({"incidents": [closed]}) == "✅ web exited (3) · recovered after 3m 0s"
    assert alert_keyboard({"incidents": [closed]}) is None


def test_buttons_are_logs_restart_and_roll_back_only_when_an_image_is_recorded() -> None:
    [row] = alert_keyboard({"incidents": [incident()]}).inline_keyboard  # type: ignore[union-attr]
    assert [b.text for b in row] == ["📜 Logs", "🔄 Restart"]
    [row] = alert_keyboard({"incidents": [incident(rollback=True)]}, host="nas").inline_keyboard  # type: ignore[union-attr]
    assert [b.text for b in row] == ["📜 Logs", "🔄 Restart", "⏪ Roll back"]
    assert [b.callback_data for b in row] == ["al:logs:web:nas", "al:restart:web:nas", "al:rollback:web:nas"]
    assert AlertButton.unpack("al:restart:web") == AlertButton(op="restart", target="web")


def test_grouped_incidents_get_a_row_each_and_no_data_over_64_bytes() -> None:
    long_name = "x" * 60
    markup = alert_keyboard({"incidents": [incident(), incident(container="db"), incident(container=long_name)]})
    assert markup is not None
    assert [[b.text for b in row] for row in markup.inline_keyboard] == [
        ["📜 Logs web", "🔄 Restart web"], ["📜 Logs db", "🔄 Restart db"],
    ]  # the long name's buttons would not fit in Telegram's 64 bytes: typed commands still work
    assert all(len(str(b.callback_data).encode()) <= CALLBACK_LIMIT for row in markup.inline_keyboard for b in row)
