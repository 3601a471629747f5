"""The Telegram test double, checked through the real aiogram client.

If these pass, aiogram parses every answer the double gives and maps its errors to the same
exceptions Telegram's answers produce, so the bot's end-to-end tests exercise real code paths.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from tests.doubles.telegram import DEFAULT_TOKEN, DoubleTimeout, HtmlError, TelegramDouble, parse_html

ALICE = 7  # a user who has opened a private chat with the bot
TEAM = -1001234  # a supergroup the bot is a member of


def keyboard(*labels_and_data: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=label, callback_data=data)] for label, data in labels_and_data]
    )


def png(width: int, height: int) -> bytes:
    """A valid, tiny PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
async def double() -> AsyncIterator[TelegramDouble]:
    async with TelegramDouble() as running:
        running.add_user(ALICE, username="alice", first_name="Alice")
        yield running


async def close_quickly(session: AiohttpSession) -> None:
    """Close the session without AiohttpSession.close()'s 250 ms wait for TLS connections to
    wind down: plain HTTP to 127.0.0.1 has none, and the wait would double this file's run time."""
    client = await session.create_session()  # the session's own aiohttp client, created if need be
    await client.close()


@pytest.fixture
async def bot(double: TelegramDouble) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(double.base_url))
    yield Bot(double.token, session=session)
    await close_quickly(session)


# -- identity, routing, encodings -------------------------------------------------------------


async def test_get_me_is_the_wingman_test_bot(bot: Bot, double: TelegramDouble) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.first_name, me.is_bot) == (42, "wingman_test_bot", "Wingman", True)
    assert me.can_read_all_group_messages is False  # privacy mode, Telegram's default
    assert bot.id == me.id
    assert [call.method for call in double.calls] == ["getMe"]


async def test_a_token_of_another_bot_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="belongs to bot 123"):
        TelegramDouble(token="123:ABC")


async def test_a_wrong_token_is_unauthorized(double: TelegramDouble) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(double.base_url))
    stranger = Bot("42:not-the-token", session=session)
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await close_quickly(session)
    assert double.calls[-1].status == 401


async def test_raw_requests_in_every_encoding(double: TelegramDouble) -> None:
    base = f"{double.base_url}/bot{double.token}"
    markup = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/sendMessage", json={"chat_id": ALICE, "text": "json", "reply_markup": markup}) as answer:
            sent = await answer.json()
        async with http.post(
            f"{base}/SENDMESSAGE", data={"chat_id": str(ALICE), "text": "form", "reply_markup": json.dumps(markup)}
        ) as answer:
            assert answer.status == 200  # method names are case-insensitive
        async with http.get(f"{base}/getMe") as answer:
            assert (await answer.json())["result"]["id"] == 42
        async with http.post(f"{base}/noSuchMethod") as answer:
            assert (answer.status, await answer.json()) == (
                404,
                {"ok": False, "error_code": 404, "description": "Not Found"},
            )
        async with http.post(f"{double.base_url}/bot1:wrong/getMe") as answer:
            assert (answer.status, await answer.json()) == (
                401,
                {"ok": False, "error_code": 401, "description": "Unauthorized"},
            )
    assert sent["ok"] and sent["result"]["reply_markup"] == markup
    assert [m.text for m in double.chat(ALICE)] == ["json", "form"]
    assert [m.reply_markup for m in double.chat(ALICE)] == [markup, markup]
    assert double.calls_to("sendMessage")[1].params["chat_id"] == ALICE  # decoded to an int


async def test_a_real_method_the_double_lacks_fails_loudly(bot: Bot) -> None:
    with pytest.raises(TelegramServerError, match="test double does not implement sendSticker"):
        await bot.send_sticker(ALICE, "CAACAgIAAxkBAAE")


# -- messages ---------------------------------------------------------------------------------


async def test_send_message_returns_a_full_message(bot: Bot, double: TelegramDouble) -> None:
    first = await bot.send_message(ALICE, "Deploy <b>web</b>?", parse_mode="HTML", reply_markup=keyboard(("Yes", "y")))
    second = await bot.send_message(ALICE, "Second")
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.from_user is not None and first.from_user.id == 42
    assert (first.chat.id, first.chat.type, first.chat.username) == (ALICE, "private", "alice")
    assert first.text == "Deploy web?"
    assert first.entities is not None and [(e.type, e.offset, e.length) for e in first.entities] == [("bold", 7, 3)]
    assert first.reply_markup is not None and first.reply_markup.model_dump() == keyboard(("Yes", "y")).model_dump()
    stored = double.messages[(ALICE, 1)]
    assert (stored.raw_text, stored.text, stored.from_bot) == ("Deploy <b>web</b>?", "Deploy web?", True)


async def test_messages_only_reach_chats_that_exist(bot: Bot, double: TelegramDouble) -> None:
    double.send_text(8, "hi", chat_id=TEAM, chat_type="supergroup")  # user 8 is known, never wrote privately
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation with a user"):
        await bot.send_message(8, "hello")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "hello")
    await bot.send_message(TEAM, "hello team")
    assert [m.text for m in double.chat(TEAM)] == ["hi", "hello team"]


async def test_edit_message_text_changes_the_stored_message(bot: Bot, double: TelegramDouble) -> None:
    sent = await bot.send_message(ALICE, "Deploying web…", reply_markup=keyboard(("Cancel", "cancel")))
    edited = await bot.edit_message_text(
        "Deployed <i>web</i>", chat_id=ALICE, message_id=sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.text == "Deployed web" and edited.edit_date is not None
    stored = double.messages[(ALICE, sent.message_id)]
    assert (stored.raw_text, stored.text) == ("Deployed <i>web</i>", "Deployed web")
    assert [version.text for version in stored.history] == ["Deploying web…"]
    # As on Telegram, an edit that does not repeat the inline keyboard removes it.
    assert stored.reply_markup is None and edited.reply_markup is None


async def test_an_identical_edit_is_not_modified(bot: Bot, double: TelegramDouble) -> None:
    sent = await bot.send_message(ALICE, "<b>Status</b>: up", parse_mode="HTML", reply_markup=keyboard(("Refresh", "r")))
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new message content"):
        # Other tags, same rendering: Telegram compares what the message shows, not the markup.
        await bot.edit_message_text(
            "<strong>Status</strong>: up",
            chat_id=ALICE,
            message_id=sent.message_id,
            parse_mode="HTML",
            reply_markup=keyboard(("Refresh", "r")),
        )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=ALICE, message_id=sent.message_id, reply_markup=keyboard(("Refresh", "r")))
    assert double.messages[(ALICE, sent.message_id)].history == []
    await bot.edit_message_reply_markup(chat_id=ALICE, message_id=sent.message_id)  # removes the keyboard
    assert double.messages[(ALICE, sent.message_id)].reply_markup is None


async def test_edits_and_deletes_of_missing_messages(bot: Bot, double: TelegramDouble) -> None:
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=ALICE, message_id=99)
    sent = await bot.send_message(ALICE, "temporary")
    assert await bot.delete_message(ALICE, sent.message_id) is True
    assert double.chat(ALICE) == [] and double.messages[(ALICE, sent.message_id)].deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(ALICE, sent.message_id)
    double.send_text(ALICE, "my own words")
    users_message = double.chat(ALICE)[-1]
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("yours now", chat_id=ALICE, message_id=users_message.message_id)


async def test_text_is_limited_after_entity_parsing(bot: Bot, double: TelegramDouble) -> None:
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(ALICE, "x" * 4097)
    # Tags do not count, and an entity is one character of the visible text.
    fits = "<b>" + "&lt;" * 4096 + "</b>"
    sent = await bot.send_message(ALICE, fits, parse_mode="HTML")
    assert sent.text == "<" * 4096
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(ALICE, "<b> </b>", parse_mode="HTML")
    assert len(double.chat(ALICE)) == 1


async def test_malformed_html_is_a_bad_request(bot: Bot, double: TelegramDouble) -> None:
    cases = {
        "<b>bold": 'Can\'t find end tag corresponding to start tag "b"',
        "1 < 2": 'Unsupported start tag "" at byte offset 2',
        "<blink>x</blink>": 'Unsupported start tag "blink" at byte offset 0',
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        "x</b>": "Unexpected end tag at byte offset 1",
        "é <b": "Unclosed start tag at byte offset 3",  # offsets count UTF-8 bytes
        "AT&T": 'Unescaped "&" at byte offset 2',
    }
    for text, reason in cases.items():
        with pytest.raises(TelegramBadRequest) as raised:
            await bot.send_message(ALICE, text, parse_mode="HTML")
        assert raised.value.message.startswith(f"Bad Request: can't parse entities: {reason}"), text
    assert double.chat(ALICE) == []
    assert all(call.status == 400 for call in double.calls_to("sendMessage"))


async def test_html_parsing_matches_telegram() -> None:
    text, entities = parse_html(
        '  <pre><code class="language-python">x = 1</code></pre> &amp; <a href="example.com">site</a> '
        '<tg-spoiler>s</tg-spoiler>&#33;&quot;  ',
        strict=False,
    )
    assert text == '  x = 1 & site s!"  '  # trimming is the sender's job, not the parser's
    assert entities == [
        {"type": "pre", "offset": 2, "length": 5, "language": "python"},
        {"type": "text_link", "offset": 10, "length": 4, "url": "http://example.com/"},
        {"type": "spoiler", "offset": 15, "length": 1},
    ]
    assert parse_html("AT&T", strict=False) == ("AT&T", [])  # Telegram's own, lenient reading
    assert parse_html("😀<b>x</b>")[1] == [{"type": "bold", "offset": 2, "length": 1}]  # UTF-16 offsets
    with pytest.raises(HtmlError, match='Tag "span" must have class "tg-spoiler"'):
        parse_html("<span>x</span>")


async def test_commands_are_set_and_read_back(bot: Bot, double: TelegramDouble) -> None:
    commands = [BotCommand(command="status", description="Show services"), BotCommand(command="deploy", description="Deploy")]
    assert await bot.set_my_commands(commands) is True
    assert [c.model_dump() for c in await bot.get_my_commands()] == [c.model_dump() for c in commands]
    assert [c["command"] for c in double.my_commands()] == ["status", "deploy"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Deploy", description="uppercase is refused")])


async def test_callback_data_is_limited_to_64_bytes(bot: Bot, double: TelegramDouble) -> None:
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(ALICE, "Approve?", reply_markup=keyboard(("Yes", "y" * 65)))
    assert double.chat(ALICE) == []


async def test_replies_chat_actions_and_the_housekeeping_methods(bot: Bot, double: TelegramDouble) -> None:
    double.send_text(ALICE, "/status")
    asked = double.chat(ALICE)[-1]
    reply = await bot.send_message(ALICE, "All up", reply_parameters=ReplyParameters(message_id=asked.message_id))
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "/status"
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(ALICE, "?", reply_parameters=ReplyParameters(message_id=99))
    assert await bot.send_chat_action(ALICE, "typing") is True
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(ALICE, "dancing")
    assert await bot.set_webhook("https://wingman.example/hook") is True
    assert (await bot.get_webhook_info()).url == "https://wingman.example/hook"
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert double.pending_updates == [] and (await bot.get_webhook_info()).url == ""
    assert await bot.log_out() is True and await bot.close() is True


# -- files ------------------------------------------------------------------------------------


async def test_send_document_keeps_name_and_bytes(bot: Bot, double: TelegramDouble) -> None:
    payload = b"seq,action\n1,deploy\n"
    export = BufferedInputFile(payload, "audit.csv")
    sent = await bot.send_document(ALICE, export, caption="Audit <b>export</b>", parse_mode="HTML")
    assert sent.document is not None and (sent.document.file_name, sent.document.file_size) == ("audit.csv", len(payload))
    assert sent.caption == "Audit export"
    [document] = double.documents
    assert (document.file_name, document.data, document.mime_type) == ("audit.csv", payload, "text/csv")
    again = await bot.send_document(ALICE, sent.document.file_id)  # re-sending by file_id uploads nothing
    assert again.document is not None and again.document.file_id == document.file_id and len(double.documents) == 1
    with pytest.raises(TelegramBadRequest, match="file must be non-empty"):
        await bot.send_document(ALICE, BufferedInputFile(b"", "empty.txt"))


async def test_send_photo_reads_the_image_size(bot: Bot, double: TelegramDouble) -> None:
    sent = await bot.send_photo(ALICE, BufferedInputFile(png(3, 2), "chart.png"))
    assert sent.photo is not None and (sent.photo[-1].width, sent.photo[-1].height) == (3, 2)
    assert double.photos[0].data == png(3, 2)
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(ALICE, BufferedInputFile(b"not an image", "chart.png"))


async def test_edit_message_media_replaces_a_photo_and_its_caption(bot: Bot, double: TelegramDouble) -> None:
    from aiogram.types import InputMediaPhoto

    sent = await bot.send_photo(ALICE, BufferedInputFile(png(3, 2), "week.png"), caption="home")
    edited = await bot.edit_message_media(
        media=InputMediaPhoto(media=BufferedInputFile(png(4, 5), "week.png"), caption="<b>home, nas</b>", parse_mode="HTML"),
        chat_id=ALICE, message_id=sent.message_id,
    )  # fmt: skip
    assert not isinstance(edited, bool) and edited.photo is not None and (edited.photo[-1].width, edited.photo[-1].height) == (4, 5)
    assert edited.caption == "home, nas"
    [stored] = [m for m in double.chat(ALICE) if m.message_id == sent.message_id]
    assert stored.file is not None and stored.file.data == png(4, 5) and [v.text for v in stored.history] == ["home"]
    text = await bot.send_message(ALICE, "no picture here")
    with pytest.raises(TelegramBadRequest, match="there is no media in the message to edit"):
        await bot.edit_message_media(media=InputMediaPhoto(media=BufferedInputFile(png(1, 1), "x.png")), chat_id=ALICE, message_id=text.message_id)


# -- fault injection --------------------------------------------------------------------------


async def test_an_injected_429_is_a_retry_after_and_changes_nothing(bot: Bot, double: TelegramDouble) -> None:
    double.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(ALICE, "hello")
    assert raised.value.retry_after == 3
    assert double.chat(ALICE) == []
    await bot.send_message(ALICE, "hello")  # only the next call failed
    assert [(c.status, c.injected) for c in double.calls_to("sendMessage")] == [(429, True), (200, False)]
    assert (await double.wait_for_call("sendMessage", lambda call: call.ok)).params["text"] == "hello"
    assert [m.message_id for m in double.chat(ALICE)] == [1]


async def test_injected_500_and_400(bot: Bot, double: TelegramDouble) -> None:
    sent = await bot.send_message(ALICE, "v1")
    double.fail_next("editMessageText", status=500)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.edit_message_text("v2", chat_id=ALICE, message_id=sent.message_id)
    double.fail_next("editMessageText", count=2, status=400, description="Bad Request: chat not found")
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.edit_message_text("v2", chat_id=ALICE, message_id=sent.message_id)
    assert double.messages[(ALICE, sent.message_id)].text == "v1"
    assert [c.status for c in double.calls_to("editMessageText")] == [500, 400, 400]
    with pytest.raises(ValueError, match="not a Bot API method"):
        double.fail_next("sendMesage")


# -- updates ----------------------------------------------------------------------------------


async def test_a_long_poll_returns_as_soon_as_an_update_is_queued(bot: Bot, double: TelegramDouble) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await double.wait_for(lambda: double.polling, what="a long poll waiting")
    update_id = double.send_text(ALICE, "/status")
    updates = await poll
    assert [u.update_id for u in updates] == [update_id]
    message = updates[0].message
    assert message is not None and message.text == "/status"
    assert message.entities is not None and [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 7)]
    [call] = double.calls_to("getUpdates")
    assert call.params["timeout"] == 10 and call.duration < 5
    # An offset past an update confirms it: it is not delivered again.
    assert update_id is not None
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == []
    assert double.pending_updates == []


async def test_offset_limit_and_allowed_updates(bot: Bot, double: TelegramDouble) -> None:
    first, second, third = (double.send_text(ALICE, text) for text in ("one", "two", "three"))
    assert first is not None and second is not None and third is not None
    assert [u.update_id for u in await bot.get_updates(limit=2)] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=second + 1)] == [third]  # confirms one and two
    prompt = await bot.send_message(ALICE, "Go?", reply_markup=keyboard(("Go", "go")))
    pressed = double.press(ALICE, (ALICE, prompt.message_id), "go")
    double.send_text(ALICE, "four")
    # Update types the bot did not ask for are dropped, as Telegram never sends them.
    updates = await bot.get_updates(offset=third + 1, allowed_updates=["callback_query"])
    assert [u.update_id for u in updates] == [pressed]
    assert [u["update_id"] for u in double.pending_updates] == [pressed]
    assert updates[0].callback_query is not None and updates[0].callback_query.data == "go"
    assert double.calls_to("getUpdates")[-1].params["allowed_updates"] == ["callback_query"]


async def test_a_second_poller_ends_the_first_and_close_ends_the_last(bot: Bot, double: TelegramDouble) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await double.wait_for(lambda: double.polling)
    second = asyncio.create_task(bot.get_updates(timeout=10))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first
    await double.wait_for(lambda: double.polling)
    await double.close()  # a waiting long poll is answered at once, with no updates
    assert await second == []


async def test_privacy_mode_hides_plain_group_chatter(bot: Bot, double: TelegramDouble) -> None:
    assert double.send_text(8, "/status@wingman_test_bot", chat_id=TEAM, chat_type="supergroup") is not None
    assert double.send_text(8, "/status", chat_id=TEAM) is not None
    assert double.send_text(8, "/status@other_bot", chat_id=TEAM) is None
    assert double.send_text(8, "just chatting", chat_id=TEAM) is None
    question = await bot.send_message(TEAM, "Which tag?")
    assert double.send_text(8, "1.27", chat_id=TEAM, reply_to=(TEAM, question.message_id)) is not None
    texts = [m.text for m in double.chat(TEAM)]
    assert texts == ["/status@wingman_test_bot", "/status", "/status@other_bot", "just chatting", "Which tag?", "1.27"]
    chat = double.chat(TEAM)[0].chat
    assert chat["type"] == "supergroup" and chat["title"]


async def test_a_polling_dispatcher_gets_commands_and_button_presses(bot: Bot, double: TelegramDouble) -> None:
    seen: list[str] = []
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        assert message.from_user is not None
        seen.append(f"/start from {message.from_user.id} in {message.chat.id}")
        await message.answer("Approve the deploy?", reply_markup=keyboard(("Approve", "approve:17")))

    @router.callback_query(F.data.startswith("approve:"))
    async def approve(query: CallbackQuery) -> None:
        seen.append(f"pressed {query.data} by {query.from_user.id}")
        await query.answer("Approved", show_alert=True)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False))
    try:
        double.send_text(8, "/start@wingman_test_bot", chat_id=TEAM, chat_type="supergroup", first_name="Bob")
        prompt = await double.wait_for(lambda: double.last_bot_message(TEAM), timeout=5)
        assert prompt.text == "Approve the deploy?"
        double.press(8, prompt, prompt.button("Approve")["callback_data"])
        answer = await double.wait_for(lambda: double.callback_answers[-1] if double.callback_answers else None, timeout=5)
    finally:
        await dispatcher.stop_polling()
        await polling
    # The stopped poller's request went away with it; nothing is left waiting on the double.
    await double.wait_for(lambda: not double.polling, timeout=5)
    assert seen == [f"/start from 8 in {TEAM}", "pressed approve:17 by 8"]
    assert (answer.text, answer.show_alert, answer.data, answer.user_id) == ("Approved", True, "approve:17", 8)
    with pytest.raises(ValueError, match="no button with callback_data"):
        double.press(8, prompt, "approve:18")


async def test_wait_for_times_out_with_a_report(double: TelegramDouble) -> None:
    with pytest.raises(DoubleTimeout) as raised:
        await double.wait_for(lambda: double.chat(ALICE), timeout=0.1)
    report = str(raised.value)
    assert "double.chat(ALICE)" in report and "made no calls" in report


def test_default_token_names_the_default_bot() -> None:
    assert DEFAULT_TOKEN.startswith("42:")
