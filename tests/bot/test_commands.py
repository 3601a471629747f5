"""Every command through the real bot, from every role, and what a person sees."""

from __future__ import annotations

import pytest

from tests.bot.conftest import USERS, World
from tests.harness import ADMIN, APPROVER, OPERATOR, STRANGER, VIEWER


@pytest.mark.parametrize("user", list(USERS))
async def test_whoami_from_each_role(world: World, user: int) -> None:
    [reply] = await world.reply_to(user, "/whoami")
    role = USERS[user]
    if role is None:
        assert reply.text == "❌ you are not authorised to use this bot"
    else:
        assert reply.text == f"You are tg:{user}, {role}."


async def test_a_stranger_gets_one_short_refusal_and_is_audited(world: World) -> None:
    [reply] = await world.reply_to(STRANGER, "/deploy web nginx:1.27", team=False)
    assert reply.text == "❌ you are not authorised to use this bot"
    assert len([m for m in world.double.chat(STRANGER) if m.from_bot]) == 1
    entry = (await world.harness.executor.audit.tail(1))[0]
    assert (entry.actor, entry.action, entry.decision) == (f"tg:{STRANGER}", "deploy", "denied")


@pytest.mark.parametrize(("user", "present", "absent"), [
    (VIEWER, ["/status [name|project]", "/pending"], ["/restart <name|project>", "/verify", "/audit [n]"]),
    (OPERATOR, ["/restart <name|project>", "/deploy <name> <image:tag>"], ["/verify", "/audit [n]"]),
    (APPROVER, ["/audit [n]"], ["/verify"]),
    (ADMIN, ["/verify", "/audit [n]", "/deploy <name> <image:tag>"], []),
])
async def test_help_lists_only_what_the_user_may_run(world: World, user: int, present: list[str], absent: list[str]) -> None:
    [reply] = await world.reply_to(user, "/help")
    for usage in present:
        assert usage in reply.text
    for usage in absent:
        assert usage not in reply.text


async def test_commands_with_the_bot_name_and_in_private_chats(world: World) -> None:
    [reply] = await world.reply_to(ADMIN, "/whoami@wingman_test_bot")
    assert reply.text == f"You are tg:{ADMIN}, admin."
    [private] = await world.reply_to(VIEWER, "/pending", team=False)
    assert private.text == "Nothing is waiting for approval."


async def test_other_groups_are_ignored(world: World) -> None:
    world.double.add_chat(-100999, chat_type="supergroup", title="elsewhere")
    world.double.send_text(ADMIN, "/whoami", chat_id=-100999)
    # The same user's next command in the team chat is answered, the other group's never was.
    [reply] = await world.reply_to(ADMIN, "/whoami")
    assert reply.text.startswith("You are")
    assert [m for m in world.double.chat(-100999) if m.from_bot] == []


@pytest.mark.parametrize(("text", "answer"), [
    ("/deploy web", "Usage: /deploy <name> <image:tag>"),
    ("/logs web many", "Usage: /logs <name> [lines] — lines is a number, e.g. /logs web 100"),
    ("/vm dance 100", "Usage: /vm status [vmid]"),
])
async def test_bad_arguments_get_one_usage_line(world: World, text: str, answer: str) -> None:
    [reply] = await world.reply_to(OPERATOR, text)
    assert reply.text.startswith(answer)


async def test_html_in_names_and_arguments_renders_literally(world: World) -> None:
    [reply] = await world.reply_to(OPERATOR, "/restart <b>x</b>&amp;")
    assert "<b>x</b>&amp;" in reply.text  # what a person sees: the characters, not bold text
    [reply] = await world.reply_to(ADMIN, "/audit 3")
    assert "<b>x</b>&amp;" in reply.text


async def test_audit_and_verify_for_admins(world: World) -> None:
    [reply] = await world.reply_to(ADMIN, "/verify")
    assert reply.text.startswith("✅ ok:")
    [reply] = await world.reply_to(APPROVER, "/audit 2")
    assert "whoami" in reply.text or "verify" in reply.text


async def test_the_command_menu_is_set_at_start(world: World) -> None:
    commands = [c["command"] for c in world.double.my_commands()]
    assert {"help", "status", "deploy", "pending"} <= set(commands)


async def test_an_executor_that_is_down_gets_a_clear_line(world: World) -> None:
    await world.harness.stop()
    [reply] = await world.reply_to(ADMIN, "/whoami")
    assert reply.text.startswith("⚠️ The executor is not answering right now; nothing was done.")
