"""The per-user rate limit through the real bot and the Bot API double: a command over the
limit is never run and never passes in silence, and the limiter's memory stays bounded.

The limiter's clock is its seam: a virtual clock here, moved by the test, so a minute of
limits takes no time. Whether a command went unanswered is seen after another user's
command is answered: the bot takes updates in order, and the limiter decides a command
before anything of it reaches the executor or Telegram.
"""

from __future__ import annotations

import pytest

from bot.ratelimit import notice
from tests.bot.conftest import World
from tests.harness import ADMIN, OPERATOR, VIEWER

STRANGERS = range(70_000, 70_120)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(world: World) -> Clock:
    clock = Clock()
    world.app.rate_limit.clock = clock
    return clock


def bot_texts(world: World, chat: int) -> list[str]:
    return [m.text for m in world.double.chat(chat) if m.from_bot]


async def answered_in_order(world: World, user: int) -> None:
    """Wait until a command sent now by ``user`` (not limited) is answered: every update
    sent before it has been decided by then."""
    [reply] = await world.reply_to(user, "/whoami", team=False)
    assert reply.text.startswith("You are")


async def test_every_command_over_the_limit_is_answered_with_when_to_retry_and_none_runs(world: World, clock: Clock) -> None:
    for _ in range(20):
        world.say(OPERATOR, "/whoami", team=False)
    await world.double.wait_for(lambda: len(bot_texts(world, OPERATOR)) == 20 or None, timeout=30, what="20 answers")

    clock.now = 1_005.0
    [first] = await world.reply_to(OPERATOR, "/restart web", team=False)
    assert first.text == notice(20, 55)
    assert first.text == "⏳ Not run: at most 20 commands a minute. Try again in 55 s; commands sent before then are not run either."

    clock.now = 1_012.0  # 7 s after that answer: this one is covered by it, and not run
    world.say(OPERATOR, "/restart web", team=False)
    await answered_in_order(world, ADMIN)
    assert bot_texts(world, OPERATOR)[20:] == [notice(20, 55)]

    clock.now = 1_015.0  # 10 s after the first answer: the next refused command is answered again
    [second] = await world.reply_to(OPERATOR, "/restart web", team=False)
    assert second.text == notice(20, 45)

    clock.now = 1_060.0  # a minute after the 20: the operator may act again
    [again] = await world.reply_to(OPERATOR, "/whoami", team=False)
    assert again.text == f"You are tg:{OPERATOR}, operator."

    assert bot_texts(world, OPERATOR)[20:] == [notice(20, 55), notice(20, 45), f"You are tg:{OPERATOR}, operator."]
    entries = await world.harness.executor.audit.tail(200)
    assert [e for e in entries if e.action == "restart"] == []  # none of the three ran, nor reached the executor


async def test_help_states_the_limit(world: World) -> None:
    [reply] = await world.reply_to(VIEWER, "/help")
    assert "At most 20 commands a minute each; past that a command is not run, and the bot says when to try again." in reply.text


async def test_the_limiter_forgets_quiet_users_and_remembers_a_bounded_number(world: World, clock: Clock) -> None:
    limiter = world.app.rate_limit
    limiter.max_users = 50
    for user in STRANGERS:
        world.double.add_user(user, first_name=f"stranger{user}")
        world.say(user, "/whoami", team=False)
    await answered_in_order(world, ADMIN)  # after all 120 strangers
    assert len(limiter) == 50  # the 50 who wrote last, of 121
    await world.double.wait_for(
        lambda: all(bot_texts(world, user) for user in STRANGERS) or None, timeout=60, what="an answer to each stranger"
    )  # decided before the admin's command, but answered after the executor's word
    assert all(bot_texts(world, user) == ["❌ you are not authorised to use this bot"] for user in STRANGERS)

    clock.now += 60.0  # a whole window later, every one of them is forgotten
    await answered_in_order(world, VIEWER)
    assert len(limiter) == 1


async def test_a_user_who_keeps_writing_keeps_their_count_while_others_are_forgotten(world: World, clock: Clock) -> None:
    """Past ``max_users`` the longest-quiet user is forgotten first, never an active one."""
    limiter = world.app.rate_limit
    limiter.max_users = 10
    strangers = list(STRANGERS)[:16]
    for user in strangers:
        world.double.add_user(user)
    for _ in range(20):
        world.say(OPERATOR, "/whoami", team=False)
    await world.double.wait_for(lambda: len(bot_texts(world, OPERATOR)) == 20 or None, timeout=30, what="20 answers")
    for user in strangers[:8]:
        world.say(user, "/whoami", team=False)
    [first] = await world.reply_to(OPERATOR, "/restart web", team=False)
    assert first.text == notice(20, 60)
    for user in strangers[8:]:
        world.say(user, "/whoami", team=False)
    clock.now = 1_010.0
    [second] = await world.reply_to(OPERATOR, "/restart web", team=False)
    assert second.text == notice(20, 50)  # still counted: not run
    assert len(limiter) == 10
