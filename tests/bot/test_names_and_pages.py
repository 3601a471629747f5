"""What people read, through the real bot and the Bot API double: people by name (escaped,
with the id where two look alike), and ``/audit`` a page at a time with buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.audit_pages import AuditPage
from tests.bot.conftest import TEAM, World
from tests.bot.test_approvals import answer_to_tap, final_text, request_approval
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER


async def test_approvals_and_pending_show_people_by_name(world: World) -> None:
    world.double.add_user(OPERATOR, username="olga_ops")
    world.double.add_user(APPROVER, first_name="<b>x</b>")
    first = await request_approval(world, OPERATOR, "/stop web")
    message = await world.approval_message(first)
    assert "Requested by @olga_ops" in message.text

    [pending] = await world.reply_to(VIEWER, "/pending")
    assert f"{first} stop web by @olga_ops" in pending.text

    assert await answer_to_tap(world, APPROVER, first, "reject") == "Rejected."
    rejected = await final_text(world, first, "🚫 rejected")
    # The characters a person typed, not bold text: escaped like any text a user chose.
    assert "🚫 rejected by <b>x</b>" in rejected.text
    assert not any(e["type"] == "bold" and rejected.text[e["offset"]:e["offset"] + e["length"]] == "x" for e in rejected.entities)
    # The audit records the ids, never the names.
    entries = await world.harness.executor.audit.tail(10)
    assert {(e.actor, e.action) for e in entries} >= {(f"tg:{OPERATOR}", "stop"), (f"tg:{APPROVER}", "approval.reject")}
    assert not any("olga" in str(e.params) or "<b>" in str(e.params) for e in entries)


async def test_two_people_shown_alike_get_their_ids(world: World) -> None:
    world.double.add_user(OPERATOR, first_name="Sam")
    world.double.add_user(APPROVER2, first_name="sam")
    approval_id = await request_approval(world, OPERATOR, "/stop web")
    await world.approval_message(approval_id)
    assert await answer_to_tap(world, APPROVER2, approval_id, "approve") == "Approved: running now."
    ended = await final_text(world, approval_id, "Approved by")
    assert f"Requested by Sam (tg:{OPERATOR})" in ended.text
    assert f"Approved by sam (tg:{APPROVER2})" in ended.text


def page_buttons(message: Any) -> dict[str, str]:
    return {b["text"]: b["callback_data"] for b in message.buttons}


async def test_audit_pages_with_older_and_newer_buttons_edited_in_place(world: World) -> None:
    world.double.add_user(ADMIN, username="root_admin")
    for _ in range(8):  # enough entries for three pages of three
        await world.reply_to(ADMIN, "/whoami")
    [page] = await world.reply_to(APPROVER, "/audit 3")
    first_lines = page.text.splitlines()
    assert len(first_lines) == 3
    assert [line.split()[2:4] for line in first_lines] == [["@root_admin", "whoami"]] * 3  # seq, time, who, what
    assert list(page_buttons(page)) == ["◀ Older"]
    assert all(len(data.encode()) <= 64 for data in page_buttons(page).values())

    async def tap(user: int, label: str) -> Any:
        current = next(m for m in world.double.chat(TEAM) if m.message_id == page.message_id)
        before = len(world.double.callback_answers)
        world.double.press(user, current, page_buttons(current)[label])
        return (await world.double.wait_for(
            lambda: world.double.callback_answers[before:] or None, timeout=30, what=f"the answer to {user}'s {label}"
        ))[0]  # fmt: skip

    answer = await tap(APPROVER, "◀ Older")
    assert answer.show_alert is False
    older = next(m for m in world.double.chat(TEAM) if m.message_id == page.message_id)
    older_lines = older.text.splitlines()
    assert len(older_lines) == 3 and int(older_lines[-1].split()[0]) == int(first_lines[0].split()[0]) - 1
    assert list(page_buttons(older)) == ["◀ Older", "Newer ▶"]
    assert len(older.history) == 1  # edited in place, not posted again

    # A tap is a request by whoever tapped: a viewer may not read the audit trail.
    refused = await tap(VIEWER, "Newer ▶")
    assert refused.show_alert is True and refused.text == "audit needs the approver role or higher; you are a viewer"
    assert next(m for m in world.double.chat(TEAM) if m.message_id == page.message_id).text == older.text
    [denied] = [e for e in await world.harness.executor.audit.tail(5) if e.actor == f"tg:{VIEWER}"]
    assert (denied.action, denied.decision) == ("audit", "denied")

    await tap(APPROVER, "Newer ▶")
    newer = next(m for m in world.double.chat(TEAM) if m.message_id == page.message_id)
    assert newer.text.splitlines() == first_lines
    assert len([m for m in world.double.chat(TEAM) if m.from_bot and m.text.startswith(first_lines[0])]) == 1


def test_the_longest_page_button_fits_in_64_bytes_and_reads_back() -> None:
    data = AuditPage(way="o", seq=10**15, n=50, host="h" * 20).pack()
    assert len(data.encode()) <= 64
    assert AuditPage.unpack(data) == AuditPage(way="o", seq=10**15, n=50, host="h" * 20)


async def test_audit_from_many_hosts_pages_each_host(world: World, make_harness: Any, socket_dir: Path) -> None:
    """With two executors, /audit shows both with a row of buttons per host; a tap turns the
    message into that host's page, and its buttons keep naming the host."""
    nas = await make_harness(executor_name="nas", data_dir=world.harness.home / "nas", socket=socket_dir / "nas.sock")
    world.settings = world.settings.model_copy(
        update={"executors": {"local": world.harness.settings.socket_path, "nas": nas.settings.socket_path}}
    )
    await world.restart_bot()
    for _ in range(3):
        await world.reply_to(ADMIN, "/whoami")
    [page] = await world.reply_to(APPROVER, "/audit 2")
    assert "local" in page.text and "nas" in page.text
    buttons = page_buttons(page)
    assert {"◀ Older · local", "◀ Older · nas"} <= set(buttons)
    world.double.press(APPROVER, page, buttons["◀ Older · nas"])
    edited = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.message_id == page.message_id and m.history), None),
        timeout=30, what="the page edited to nas's older entries",
    )  # fmt: skip
    assert edited.text.startswith("🖥 nas\n")
    assert all(AuditPage.unpack(data).host == "nas" for data in page_buttons(edited).values())
    assert "Newer ▶" in page_buttons(edited)


async def test_the_daily_report_names_people_escaped(world: World) -> None:
    world.double.add_user(OPERATOR, first_name="<b>x</b>")
    world.double.add_user(ADMIN, username="root_admin")
    await world.reply_to(OPERATOR, "/status")
    await world.reply_to(ADMIN, "/whoami")
    assert await world.harness.daemon.scheduler.run_job("daily-report") is not None
    report = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and "daily audit report" in m.text), None),
        timeout=30, what="the daily report",
    )  # fmt: skip
    people = next(line for line in report.text.splitlines() if line.startswith("People: "))
    assert "<b>x</b> 1" in people and "@root_admin 1" in people and "tg:" not in people
    assert not any(e["type"] == "bold" for e in report.entities)  # the name's tags are text
