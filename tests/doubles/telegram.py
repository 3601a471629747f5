"""A Telegram Bot API test double: one small HTTP server the whole suite points the bot at.

Telegram is unreachable from the test machines, so end-to-end tests run the real bot (aiogram's
``Bot`` and ``Dispatcher``, real HTTP) against this server instead. It plays the part aiogram's
own ``MockedBot`` plays in aiogram's suite, but at the HTTP boundary, so aiogram's session,
serialisation and error mapping are exercised too::

    async with TelegramDouble() as double:
        bot = Bot(double.token, session=AiohttpSession(api=TelegramAPIServer.from_base(double.base_url)))
        update_id = double.send_text(7, "/status")           # a user writes to the bot
        reply = await double.wait_for(lambda: double.last_bot_message(7))
        assert reply.text == "All services up"              # what a human sees

What it serves: ``POST|GET /bot<token>/<method>`` with url-encoded, multipart or JSON bodies, the
methods listed in ``TelegramDouble.IMPLEMENTED`` with the result shapes of the Bot API, and the
error answers Telegram gives (``{"ok": false, "error_code": …, "description": …}``), so aiogram
raises the same exceptions it raises in production. What tests can read: ``calls``,
``messages``, ``chat(chat_id)``, ``files``, ``callback_answers``, ``updates``; what they can
do: ``send_text``, ``press``, ``fail_next``, ``wait_for``.

Honesty rules (the double is only useful if code that passes here works against Telegram):

- Where Telegram's behaviour is documented or known from its source (TDLib's HTML parser, the
  error descriptions), the double copies it, including the inconvenient parts: an edit without
  ``reply_markup`` removes the inline keyboard; an edit that changes nothing is a 400; bots in
  groups do not see plain messages (privacy mode); writing to a user who never opened the bot
  is a 403, to a chat the bot is not in a 400.
- Where the double is deliberately stricter than Telegram it says so in the error description
  (bare ``&`` in HTML, see ``strict_html``).
- A Bot API method the double does not implement answers 501 naming the double, so a missing
  feature of the fake is never mistaken for a bug in the bot; an unknown method is a 404.
- A request Telegram rejects changes nothing, and neither does an injected failure.

Known simplifications: Telegram's own entity detection covers URLs with a scheme, bot commands
and @mentions only; the 4096 limit counts code points; a photo comes back in one size; Markdown
parse modes answer 501; flood limits and callback-query expiry happen only when injected; a
webhook's updates are posted when the test calls ``deliver_webhook`` (to the address it
names), not by the double on its own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import mimetypes
import re
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from aiohttp.web_request import FileField

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_ID",
    "BOT_USERNAME",
    "DEFAULT_TOKEN",
    "CallbackAnswer",
    "DoubleTimeout",
    "HtmlError",
    "MessageVersion",
    "RecordedCall",
    "StoredMessage",
    "TelegramDouble",
    "UploadedFile",
    "UploadedPart",
    "detect_entities",
    "image_size",
    "parse_html",
    "utf16_length",
]

JSONObject = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)

BOT_ID: Final = 42
BOT_USERNAME: Final = "wingman_test_bot"
BOT_FIRST_NAME: Final = "Wingman"
# Telegram tokens start with the bot's id, and aiogram's ``Bot.id`` reads it from there.
DEFAULT_TOKEN: Final = f"{BOT_ID}:TEST-wingman-double-token"

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
# Without ``allowed_updates`` Telegram sends every update type except these.
OPT_IN_UPDATE_TYPES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
CHAT_ACTIONS: Final = frozenset(
    """
    typing upload_photo record_video upload_video record_voice upload_voice upload_document
    choose_sticker find_location record_video_note upload_video_note
    """.split()
)

# Bot API parameters whose values are JSON-serialised objects or arrays on the wire (aiogram,
# like every client, sends them as JSON strings inside a form).
_JSON_PARAMS: Final = frozenset(
    """
    allowed_updates caption_entities commands custom_emoji_ids entities explanation_entities
    input_message_content link_preview_options media menu_button message_ids options
    permissions prices question_entities reaction reply_markup reply_parameters results rights
    scope shipping_options
    """.split()
)
_INT_PARAMS: Final = frozenset(
    """
    cache_time chat_id duration from_chat_id height limit max_connections message_id
    message_thread_id offset reply_to_message_id timeout until_date user_id width
    """.split()
)
_BOOL_PARAMS: Final = frozenset(
    """
    allow_paid_broadcast allow_sending_without_reply disable_content_type_detection
    disable_notification disable_web_page_preview drop_pending_updates has_spoiler
    protect_content revoke show_alert show_caption_above_media
    """.split()
)
# Inline keyboard buttons must carry exactly one of these; a text-only button is a 400.
_BUTTON_ACTIONS: Final = frozenset(
    """
    url callback_data web_app login_url switch_inline_query switch_inline_query_current_chat
    switch_inline_query_chosen_chat copy_text callback_game pay
    """.split()
)


def _bot_api_method_names() -> dict[str, str]:
    """Every method of the Bot API aiogram knows, lower-cased name → canonical name.

    Telegram's method names are case-insensitive; knowing the real ones lets the double tell
    "the double lacks this method" (501) from "Telegram has no such method" (404).
    """
    import aiogram.methods

    names: dict[str, str] = {}
    for attribute in aiogram.methods.__all__:
        api_name = getattr(getattr(aiogram.methods, attribute), "__api_method__", None)
        if isinstance(api_name, str):
            names[api_name.lower()] = api_name
    return names


_BOT_API_METHODS: Final = _bot_api_method_names()


# ---------------------------------------------------------------------------------------------
# What tests read
# ---------------------------------------------------------------------------------------------


@dataclass
class RecordedCall:
    """One request the bot made, with the answer it got."""

    method: str
    """Canonical Bot API name (``sendMessage``), whatever case the client used."""
    params: JSONObject
    """Decoded parameters: ints, bools and JSON values as Python objects, uploads as ``UploadedPart``."""
    time: float
    """``time.monotonic()`` when the request arrived."""
    status: int
    """HTTP status of the answer: 200, or the error code (injected or real)."""
    duration: float = 0.0
    description: str | None = None
    """The error description, ``None`` on success."""
    result: Any = None
    injected: bool = False
    """True when ``fail_next`` produced the answer."""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class UploadedPart:
    """A file part of a multipart request, as it arrived."""

    filename: str | None
    content_type: str
    data: bytes

    def __repr__(self) -> str:  # keeps call dumps readable: no megabytes of bytes
        return f"UploadedPart({self.filename!r}, {len(self.data)} bytes)"


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded (``sendDocument``/``sendPhoto``), kept with its bytes."""

    kind: Literal["document", "photo"]
    file_id: str
    file_unique_id: str
    file_name: str | None
    mime_type: str | None
    data: bytes
    width: int = 0
    height: int = 0

    def to_api(self) -> JSONObject:
        if self.kind == "photo":
            return {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "file_size": len(self.data),
                "width": self.width,
                "height": self.height,
            }
        document: JSONObject = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.file_name is not None:
            document["file_name"] = self.file_name
        if self.mime_type is not None:
            document["mime_type"] = self.mime_type
        document["file_size"] = len(self.data)
        return document

    def __repr__(self) -> str:
        return f"UploadedFile({self.kind}, {self.file_name!r}, {len(self.data)} bytes, {self.file_id})"


@dataclass(frozen=True)
class MessageVersion:
    """A message's content before one of its edits."""

    raw_text: str
    text: str
    entities: list[JSONObject]
    reply_markup: JSONObject | None
    date: int
    """When this version was made: the send date or the date of the edit that made it."""


@dataclass
class StoredMessage:
    """A message in a chat as Telegram holds it, user's or bot's.

    ``text`` is what a human sees (for ``parse_mode=HTML``: tags stripped, entities unescaped,
    surrounding whitespace trimmed) and is what Telegram returns as ``Message.text``;
    ``raw_text`` is what the bot sent. For documents and photos both hold the caption.
    """

    chat: JSONObject
    message_id: int
    sender: JSONObject
    date: int
    kind: Literal["text", "document", "photo"]
    raw_text: str
    text: str
    entities: list[JSONObject]
    parse_mode: str | None = None
    reply_markup: JSONObject | None = None
    file: UploadedFile | None = None
    reply_to_message: JSONObject | None = None
    edit_date: int | None = None
    history: list[MessageVersion] = field(default_factory=list)
    """Earlier versions, oldest first; each edit appends the version it replaced."""
    deleted: bool = False

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    @property
    def key(self) -> tuple[int, int]:
        return (self.chat_id, self.message_id)

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def inline_keyboard(self) -> list[list[JSONObject]]:
        if self.reply_markup is None:
            return []
        rows: list[list[JSONObject]] = self.reply_markup.get("inline_keyboard", [])
        return rows

    @property
    def buttons(self) -> list[JSONObject]:
        """The inline keyboard's buttons, row by row."""
        return [button for row in self.inline_keyboard for button in row]

    def button(self, label: str) -> JSONObject:
        """The inline button whose text is ``label``; ``KeyError`` listing the labels if none is."""
        for candidate in self.buttons:
            if candidate.get("text") == label:
                return candidate
        labels = [b.get("text") for b in self.buttons]
        raise KeyError(f"message {self.key} has no button {label!r}; its buttons: {labels}")

    def to_api(self, *, with_reply: bool = True) -> JSONObject:
        """The Bot API ``Message`` object for this message."""
        message: JSONObject = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": self.chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            message["edit_date"] = self.edit_date
        if with_reply and self.reply_to_message is not None:
            message["reply_to_message"] = self.reply_to_message
        if self.kind == "text":
            message["text"] = self.text
            if self.entities:
                message["entities"] = self.entities
        else:
            assert self.file is not None
            if self.kind == "document":
                message["document"] = self.file.to_api()
            else:
                message["photo"] = [self.file.to_api()]
            if self.text:
                message["caption"] = self.text
                if self.entities:
                    message["caption_entities"] = self.entities
        # Message.reply_markup is documented as "inline keyboard attached to the message":
        # reply keyboards are shown to the user but never echoed back.
        if self.reply_markup is not None and "inline_keyboard" in self.reply_markup:
            message["reply_markup"] = self.reply_markup
        return message


@dataclass(frozen=True)
class CallbackAnswer:
    """One ``answerCallbackQuery``: what the user saw after pressing a button."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    query: JSONObject
    """The callback query it answers, as it was delivered."""

    @property
    def data(self) -> str | None:
        data = self.query.get("data")
        return data if isinstance(data, str) else None

    @property
    def user_id(self) -> int:
        return int(self.query["from"]["id"])


class DoubleTimeout(AssertionError):
    """``wait_for`` gave up; the message says what it waited for and what the bot did meanwhile."""


# ---------------------------------------------------------------------------------------------
# Errors, as Telegram words them
# ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status and the body Telegram sends with it."""

    def __init__(self, status: int, description: str, parameters: JSONObject | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONObject:
        body: JSONObject = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def _not_implemented(what: str) -> ApiError:
    # 501 makes aiogram raise TelegramServerError with this text: loud, and clearly the double's.
    return ApiError(501, f"Not Implemented: the Telegram test double does not implement {what} (tests/doubles/telegram.py)")


_NOT_FOUND_BODY: Final = {"ok": False, "error_code": 404, "description": "Not Found"}


@dataclass(frozen=True)
class _Fault:
    status: int
    description: str
    parameters: JSONObject | None


@dataclass(frozen=True)
class _Described:
    """A successful result that Telegram sends with a ``description`` (the webhook methods)."""

    result: Any
    description: str


# ---------------------------------------------------------------------------------------------
# Text: UTF-16 offsets, Telegram's HTML parser, entity detection
# ---------------------------------------------------------------------------------------------


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Bot API entity offsets and lengths."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


class HtmlError(Exception):
    """The text is not HTML Telegram accepts; the message is TDLib's wording."""


@dataclass
class _OpenTag:
    name: str
    attributes: dict[str, str]
    offset: int  # UTF-16 offset in the visible text where the tag's content starts
    start: int  # index into the visible-text buffer where the tag's content starts


_HTML_TAGS: Final = frozenset(
    """
    a b strong i em s strike del u ins tg-spoiler tg-emoji tg-time span pre code blockquote
    """.split()
)
_SIMPLE_TAG_ENTITIES: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_NAMED_HTML_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_END: Final = "\0"  # TDLib scans a NUL-terminated string; a sentinel keeps the port close


def _is_space(char: str) -> bool:
    return char in " \t\r\n\0\v"


def _decode_html_entity(text: str, pos: int) -> tuple[str | None, int]:
    """TDLib's decode_html_entity: numeric references and only lt, gt, amp, quot; ';' optional."""
    end = pos + 1
    if text[pos + 1] == "#":
        end += 1
        value = 0
        if text[pos + 2] == "x":
            end += 1
            while text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while text[end] in "0123456789":
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None, pos
        char = chr(value)
    else:
        while text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_HTML_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None, pos
        char = named
    if text[end] == ";":
        end += 1
    return char, end


def parse_html(
    source: str,
    *,
    strict: bool = True,
    resolve_user: Callable[[int], JSONObject | None] = lambda _user_id: None,
) -> tuple[str, list[JSONObject]]:
    """Visible text and entities of ``source`` under ``parse_mode=HTML``, as Telegram computes them.

    A port of TDLib's ``parse_html`` (which the Bot API server uses): the same accepted tags,
    the same error messages with UTF-8 byte offsets. One deliberate difference when ``strict``:
    an ``&`` that starts no entity is rejected, where Telegram shows it literally; Telegram's
    documentation requires ``&amp;``, and an unescaped ``&`` means unescaped input, which breaks
    on the next ``<``. Raises ``HtmlError``.
    """
    text = source + _HTML_END
    size = len(source)

    def byte_offset(pos: int) -> int:
        return len(source[:pos].encode("utf-8", "surrogatepass"))

    visible: list[str] = []
    offset = 0  # UTF-16 length of ``visible``
    entities: list[JSONObject] = []
    open_tags: list[_OpenTag] = []
    i = 0
    while i < size:
        char = text[i]
        if char == "&":
            decoded, end = _decode_html_entity(text, i)
            if decoded is not None:
                if 0xD800 <= ord(decoded) <= 0xDFFF:
                    raise HtmlError(
                        "Text contains invalid Unicode characters after decoding HTML entities, "
                        "check for unmatched surrogate code units"
                    )
                visible.append(decoded)
                offset += utf16_length(decoded)
                i = end
                continue
            if strict:
                raise HtmlError(
                    f'Unescaped "&" at byte offset {byte_offset(i)}; Telegram would show it literally, '
                    'but its documentation requires "&amp;" and the test double enforces that'
                )
        if char != "<":
            visible.append(char)
            offset += utf16_length(char)
            i += 1
            continue

        begin = i
        i += 1
        if text[i] != "/":
            while not _is_space(text[i]) and text[i] != ">":
                i += 1
            if i >= size:
                raise HtmlError(f"Unclosed start tag at byte offset {byte_offset(begin)}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise HtmlError(f'Unsupported start tag "{tag}" at byte offset {byte_offset(begin)}')
            attributes: dict[str, str] = {}
            while text[i] != ">":
                while i < size and _is_space(text[i]):
                    i += 1
                if text[i] == ">":
                    break
                name_begin = i
                while not _is_space(text[i]) and text[i] not in "=>":
                    i += 1
                name = text[name_begin:i]
                if not name:
                    raise HtmlError(f'Empty attribute name in the tag "{tag}" at byte offset {byte_offset(begin)}')
                while i < size and _is_space(text[i]):
                    i += 1
                if text[i] != "=":
                    if tag == "blockquote" and name == "expandable":  # the one valueless attribute
                        attributes[name] = ""
                        continue
                    raise HtmlError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {byte_offset(begin)}"
                    )
                i += 1
                while i < size and _is_space(text[i]):
                    i += 1
                if i >= size:
                    raise HtmlError(f'Unclosed start tag "{tag}" at byte offset {byte_offset(begin)}')
                if text[i] not in "'\"":
                    # A name token: letters, digits, periods, hyphens; not case-sensitive.
                    token_begin = i
                    while text[i].isascii() and (text[i].isalnum() or text[i] in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if not _is_space(text[i]) and text[i] != ">":
                        raise HtmlError(f"Unexpected end of name token at byte offset {byte_offset(token_begin)}")
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < size and text[i] != quote:
                        if text[i] == "&":
                            decoded, end = _decode_html_entity(text, i)
                            if decoded is not None:
                                chars.append(decoded)
                                i = end
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < size:
                        i += 1
                    value = "".join(chars)
                if i >= size:
                    raise HtmlError(f"Unclosed start tag at byte offset {byte_offset(begin)}")
                attributes[name] = value
            if tag == "span" and attributes.get("class") != "tg-spoiler":
                raise HtmlError(f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(begin)}')
            open_tags.append(_OpenTag(tag, attributes, offset, len(visible)))
            i += 1
            continue

        # An end tag.
        if not open_tags:
            raise HtmlError(f"Unexpected end tag at byte offset {byte_offset(begin)}")
        while not _is_space(text[i]) and text[i] != ">":
            i += 1
        end_name = text[begin + 2 : i]
        while i < size and _is_space(text[i]):
            i += 1
        if text[i] != ">":
            raise HtmlError(f"Unclosed end tag at byte offset {byte_offset(begin)}")
        opened = open_tags.pop()
        if end_name and end_name != opened.name:
            raise HtmlError(
                f'Unmatched end tag at byte offset {byte_offset(begin)}, expected "</{opened.name}>", '
                f'found "</{end_name}>"'
            )
        if offset > opened.offset:
            entity = _tag_entity(opened, offset - opened.offset, "".join(visible[opened.start :]), entities, resolve_user)
            if entity is not None:
                entities.append(entity)
        i += 1

    if open_tags:
        raise HtmlError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1].name}"')
    for entity in entities:
        entity.pop("_language", None)
    return "".join(visible), _sorted_entities(entities)


def _tag_entity(
    tag: _OpenTag,
    length: int,
    content: str,
    entities: list[JSONObject],
    resolve_user: Callable[[int], JSONObject | None],
) -> JSONObject | None:
    """The entity a closed tag makes, or None; may instead merge into the last entity (pre + code)."""
    entity: JSONObject = {"offset": tag.offset, "length": length}
    last = entities[-1] if entities else None
    same_range = last is not None and last["offset"] == tag.offset and last["length"] == length
    if tag.name in _SIMPLE_TAG_ENTITIES:
        return {"type": _SIMPLE_TAG_ENTITIES[tag.name], **entity}
    if tag.name == "a":
        url = tag.attributes.get("href") or content  # <a> without href links its own text
        match = re.fullmatch(r"tg://user\?id=(\d+)", url)
        if match:
            user = resolve_user(int(match.group(1)))
            return None if user is None else {"type": "text_mention", **entity, "user": user}
        normalized = _normalize_url(url)
        return None if normalized is None else {"type": "text_link", **entity, "url": normalized}
    if tag.name == "code":
        language = tag.attributes.get("class", "")
        language = language[len("language-") :] if language.startswith("language-") else ""
        if last is not None and same_range and last["type"] == "pre" and language:
            last["language"] = language
            return None
        # The language waits here for an enclosing <pre>; a lone code entity drops it.
        return {"type": "code", **entity, "_language": language} if language else {"type": "code", **entity}
    if tag.name == "pre":
        if last is not None and same_range and last["type"] == "code" and last.get("_language"):
            # <pre><code class="language-x">…</code></pre> is one pre entity with a language.
            last["type"] = "pre"
            last["language"] = last.pop("_language")
            return None
        return {"type": "pre", **entity}
    if tag.name == "blockquote":
        kind = "expandable_blockquote" if "expandable" in tag.attributes else "blockquote"
        return {"type": kind, **entity}
    if tag.name == "tg-emoji":
        emoji_id = tag.attributes.get("emoji-id", "")
        if not emoji_id.isdigit():
            raise HtmlError("Invalid custom emoji identifier specified")
        return {"type": "custom_emoji", **entity, "custom_emoji_id": emoji_id}
    if tag.name == "tg-time":
        unix = tag.attributes.get("unix", "")
        if not unix.isdigit():
            return None
        date_time: JSONObject = {"type": "date_time", **entity, "unix_time": int(unix)}
        if tag.attributes.get("format"):
            date_time["date_time_format"] = tag.attributes["format"]
        return date_time
    raise AssertionError(f"unhandled tag {tag.name}")  # _HTML_TAGS and this function disagree


def _normalize_url(url: str) -> str | None:
    """The URL Telegram stores for a text link, or None when it drops the link as invalid."""
    url = url.strip()
    if not url:
        return None
    if "://" not in url and not url.startswith("tg:"):
        url = "http://" + url  # Telegram accepts "example.com" and links it over http
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc:
            return None
        # Telegram answers "https://example.com" as "https://example.com/".
        return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, parts.fragment))
    if scheme in ("tg", "ton", "tonsite"):
        return url
    return None


def _sorted_entities(entities: Iterable[JSONObject]) -> list[JSONObject]:
    # Telegram orders entities by offset, the outer one first when two start together.
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


def _trim(text: str, entities: list[JSONObject]) -> tuple[str, list[JSONObject]]:
    """Drop leading and trailing spaces and newlines, as Telegram does, moving entities along."""
    stripped = text.lstrip(" \n")
    cut = len(text) - len(stripped)  # spaces and newlines: one UTF-16 unit each
    stripped = stripped.rstrip(" \n")
    limit = utf16_length(stripped)
    kept: list[JSONObject] = []
    for entity in entities:
        start = max(0, entity["offset"] - cut)
        end = min(limit, entity["offset"] + entity["length"] - cut)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


_DETECTED: Final = (
    ("url", re.compile(r"(?<![\w@])https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)),
    ("bot_command", re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])")),
    ("mention", re.compile(r"(?<![\w/@])@[A-Za-z0-9_]{5,32}(?![\w@])")),
)
# Telegram finds no URLs, commands or mentions inside these.
_OPAQUE_ENTITIES: Final = frozenset({"code", "pre", "text_link", "text_mention", "custom_emoji", "date_time"})


def detect_entities(text: str, entities: list[JSONObject]) -> list[JSONObject]:
    """``entities`` plus the URLs, bot commands and @mentions Telegram finds in ``text`` itself.

    Telegram detects these in every message, the bot's included (it is how ``/start`` becomes a
    ``bot_command`` entity). This covers the common cases, not all of Telegram's rules (no
    hashtags, e-mails, phone numbers, scheme-less URLs).
    """
    taken = [(e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] in _OPAQUE_ENTITIES]
    found: list[JSONObject] = []
    for kind, pattern in _DETECTED:
        for match in pattern.finditer(text):
            start = utf16_length(text[: match.start()])
            end = start + utf16_length(match.group())
            if any(start < other_end and other_start < end for other_start, other_end in taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return _sorted_entities([*entities, *found])


@dataclass(frozen=True)
class _Rendered:
    raw: str
    text: str
    entities: list[JSONObject]


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF, JPEG or WebP image, or None if it is none of those."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        return None
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                pos += 2
                continue
            (segment,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return int(width), int(height)
            pos += 2 + int(segment)
    return None


# ---------------------------------------------------------------------------------------------
# Request decoding
# ---------------------------------------------------------------------------------------------


def _decode_value(name: str, value: Any) -> Any:
    """One parameter as the Bot API reads it: typed by name, since forms carry only strings."""
    if isinstance(value, FileField):
        return UploadedPart(value.filename, value.content_type, value.file.read())
    if name in _JSON_PARAMS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad_request("can't parse reply keyboard markup JSON object") from None
            raise _bad_request(f"can't parse {name} JSON object") from None
    if name in _INT_PARAMS and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if name in _BOOL_PARAMS and isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value


def _decode_params(raw: Mapping[str, Any]) -> JSONObject:
    params = {name: _decode_value(name, value) for name, value in raw.items()}
    # aiogram uploads files as separate parts and names them in the parameter: "attach://<part>".
    attached: set[str] = set()
    for name, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            part_name = value[len("attach://") :]
            part = params.get(part_name)
            if isinstance(part, UploadedPart):
                params[name] = part
                attached.add(part_name)
    for part_name in attached:
        del params[part_name]
    return params


async def _read_params(request: web.Request) -> JSONObject:
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad_request("can't parse JSON body") from None
            if not isinstance(body, dict):
                raise _bad_request("JSON body must be an object")
            raw.update(body)
        else:  # url-encoded and multipart alike
            form = await request.post()
            raw.update(form)
    return _decode_params(raw)


def _summary(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_Handler = Callable[[JSONObject], Awaitable[Any]]


# ---------------------------------------------------------------------------------------------
# The double
# ---------------------------------------------------------------------------------------------


class TelegramDouble:
    """A Bot API server on 127.0.0.1 holding chats, messages and an update queue in memory.

    One instance serves one bot (its ``token``). Use it as an async context manager, or call
    ``start()`` and ``close()``. Everything runs on the test's event loop, so tests read its
    state directly between awaits.

    ``privacy_mode`` (default on, Telegram's default for new bots) means that in groups the bot
    receives only commands, replies to its own messages and button presses; ``getMe`` reports it
    as ``can_read_all_group_messages``. ``strict_html`` (default on) rejects a bare ``&`` in HTML
    text, which Telegram tolerates; set it off to get Telegram's exact parser.
    """

    IMPLEMENTED: Final = (
        "getMe",
        "getUpdates",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "setMyCommands",
        "getMyCommands",
        "deleteMyCommands",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageMedia",
        "deleteMessage",
        "answerCallbackQuery",
        "sendDocument",
        "sendPhoto",
        "sendChatAction",
        "close",
        "logOut",
    )

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_id: int = BOT_ID,
        username: str = BOT_USERNAME,
        first_name: str = BOT_FIRST_NAME,
        privacy_mode: bool = True,
        strict_html: bool = True,
        clock: Callable[[], float] = time.time,
        recheck_interval: float = 0.05,
    ) -> None:
        prefix, _, secret = token.partition(":")
        if not prefix.isdigit() or not secret:
            raise ValueError(f"a bot token looks like '<bot id>:<secret>', not {token!r}")
        if int(prefix) != bot_id:
            # aiogram's Bot.id comes from the token; a token naming another bot than getMe would
            # make "is this message from me?" checks pass here and fail in production, or vice versa.
            raise ValueError(
                f"token {token!r} belongs to bot {prefix}, but the double plays bot {bot_id}; "
                f"use a token starting with '{bot_id}:' (e.g. DEFAULT_TOKEN)"
            )
        self.token = token
        self.bot_user: JSONObject = {"id": bot_id, "is_bot": True, "first_name": first_name, "username": username}
        self.privacy_mode = privacy_mode
        self.strict_html = strict_html
        self._clock = clock
        self._recheck_interval = recheck_interval

        self.calls: list[RecordedCall] = []
        self.messages: dict[tuple[int, int], StoredMessage] = {}
        self.files: list[UploadedFile] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.updates: list[JSONObject] = []
        """Every update ever queued, delivered or not, oldest first."""
        self.webhook_url = ""
        self.webhook_secret: str | None = None

        self._users: dict[int, JSONObject] = {}
        self._chats: dict[int, JSONObject] = {}
        self._chat_messages: dict[int, list[StoredMessage]] = {}
        self._pending: list[JSONObject] = []
        self._next_update_id = 100_001  # far from 0, so "falsy update id" bugs cannot hide
        self._callback_queries: dict[str, JSONObject] = {}
        self._next_callback_id = 1
        self._commands: dict[tuple[str, str], list[JSONObject]] = {}
        self._allowed_updates: frozenset[str] | None = None  # None: Telegram's default set
        self._webhook: JSONObject = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._file_serial = 0
        # One Event per waiter, set on every change. A Condition would do the same, but send_text
        # and press are synchronous and cannot take its lock.
        self._wakers: set[asyncio.Event] = set()
        self._polls_waiting = 0
        self._poll_generation = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageMedia": self._edit_message_media,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
            "close": self._ok,
            "logOut": self._ok,
        }
        assert tuple(handlers) == self.IMPLEMENTED
        self._handlers = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._serve)
        app.router.add_route("*", "/{tail:.*}", self._serve_unknown_path)
        # handler_cancellation: a long poll whose client went away (a stopped Dispatcher) ends
        # at once instead of holding the connection until its timeout.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        self._port = int(sock.getsockname()[1])
        self._runner = runner
        self._closing = False
        return self

    async def close(self) -> None:
        """Answer waiting long polls with no updates and stop listening. Safe to call twice."""
        if self._runner is None:
            return
        self._closing = True
        self._changed()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``TelegramAPIServer.from_base``."""
        if self._port is None:
            raise RuntimeError("the double is not started: use 'async with TelegramDouble()' or await start()")
        return f"http://127.0.0.1:{self._port}"

    @property
    def bot_id(self) -> int:
        return int(self.bot_user["id"])

    @property
    def username(self) -> str:
        return str(self.bot_user["username"])

    # -- reading state --------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one method (any case), oldest first."""
        name = self._canonical(method) or method
        return [call for call in self.calls if call.method == name]

    def chat(self, chat_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        """The messages of a chat in order, as its members see them (deleted ones left out)."""
        return [m for m in self._chat_messages.get(chat_id, []) if include_deleted or not m.deleted]

    def last_bot_message(self, chat_id: int) -> StoredMessage | None:
        """The newest undeleted message the bot sent to the chat, if any."""
        sent = [m for m in self.chat(chat_id) if m.from_bot]
        return sent[-1] if sent else None

    @property
    def documents(self) -> list[UploadedFile]:
        return [f for f in self.files if f.kind == "document"]

    @property
    def photos(self) -> list[UploadedFile]:
        return [f for f in self.files if f.kind == "photo"]

    async def deliver_webhook(self, target: str, *, secret: str | None = None) -> list[int]:
        """Post the queued updates to the webhook as Telegram does: one JSON update per POST,
        with ``X-Telegram-Bot-Api-Secret-Token`` (the registered secret unless ``secret`` is
        given); an update answered 2xx is delivered, any other stays queued. ``target`` stands
        for the registered HTTPS URL (the TLS-terminating proxy in front of the bot). Returns
        the HTTP statuses, in order."""
        if not self.webhook_url:
            raise LookupError("no webhook is set: the bot polls")
        header = secret if secret is not None else self.webhook_secret
        headers = {} if header is None else {"X-Telegram-Bot-Api-Secret-Token": header}
        self._pending = [u for u in self._pending if self._allowed(u)]  # as getUpdates does
        statuses = []
        async with aiohttp.ClientSession() as session:
            for update in list(self._pending):
                async with session.post(target, json=update, headers=headers) as response:
                    await response.read()
                    statuses.append(response.status)
                if 200 <= response.status < 300:
                    self._pending.remove(update)
        self._changed()
        return statuses

    @property
    def pending_updates(self) -> list[JSONObject]:
        """Queued updates the bot has not confirmed yet (a later getUpdates offset confirms)."""
        return list(self._pending)

    @property
    def polling(self) -> bool:
        """Whether a getUpdates long poll is waiting for an update right now."""
        return self._polls_waiting > 0

    def my_commands(self, scope: JSONObject | None = None, language_code: str = "") -> list[JSONObject]:
        """The command list set with setMyCommands for a scope and language (default: both unset)."""
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    # -- driving the bot ------------------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        *,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> JSONObject:
        """Make a user known with a private chat the bot may write to, as if they had pressed
        Start earlier. Without it (or a private ``send_text``) the bot's messages to the user
        fail as on Telegram: "Forbidden: bot can't initiate conversation with a user"."""
        user = self._remember_user(user_id, username=username, first_name=first_name, last_name=last_name)
        self._chats[user_id] = self._private_chat(user)
        return user

    def add_chat(
        self,
        chat_id: int,
        *,
        chat_type: Literal["group", "supergroup"] = "group",
        title: str | None = None,
        username: str | None = None,
    ) -> JSONObject:
        """Make a group the bot is a member of known, so the bot may write to it."""
        if chat_id >= 0:
            raise ValueError(f"group and supergroup ids are negative (e.g. -100123), not {chat_id}")
        known = self._chats.get(chat_id)
        if known is not None and known["type"] != chat_type:
            raise ValueError(f"chat {chat_id} is a {known['type']}, not a {chat_type}")
        title = title or (known or {}).get("title") or f"Test {chat_type} {chat_id}"
        chat: JSONObject = {"id": chat_id, "type": chat_type, "title": title}
        if username is not None:
            chat["username"] = username
        elif known is not None and "username" in known:
            chat["username"] = known["username"]
        self._chats[chat_id] = chat
        return chat

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: Literal["private", "group", "supergroup"] | None = None,
        chat_title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
        reply_to: StoredMessage | tuple[int, int] | None = None,
        entities: list[JSONObject] | None = None,
    ) -> int | None:
        """A user writes ``text``; returns the id of the ``message`` update queued for the bot.

        The chat is the user's private chat unless ``chat_id`` names a group (``chat_type`` is
        then needed the first time). Telegram's entities are attached, notably ``bot_command``
        for ``/cmd`` and ``/cmd@botname``. Returns None, queueing nothing, when Telegram would
        not deliver the message: in privacy mode, a group message that is neither a command
        (for this bot or for no bot in particular) nor a reply to the bot. The message is still
        stored in the chat.
        """
        if not text.strip():
            raise ValueError("Telegram clients do not send empty messages")
        if len(text) > MAX_TEXT_LENGTH:
            raise ValueError(f"Telegram clients split messages longer than {MAX_TEXT_LENGTH} characters")
        user = self._remember_user(user_id, username=username, first_name=first_name)
        chat = self._chat_for(user_id, chat_id, chat_type, chat_title)
        replied = self._message_at(reply_to) if reply_to is not None else None
        if replied is not None and replied.chat_id != chat["id"]:
            raise ValueError(f"message {replied.key} is not in chat {chat['id']}")
        message = self._store_message(
            chat,
            user,
            kind="text",
            rendered=_Rendered(text, text, detect_entities(text, _sorted_entities(entities or []))),
            reply_to=replied,
        )
        if chat["type"] != "private" and self.privacy_mode and not self._privacy_lets_through(message, replied):
            return None
        return self._queue_update("message", message.to_api())

    def press(self, user_id: int, message: StoredMessage | tuple[int, int], data: str) -> int:
        """A user presses the inline button carrying ``data`` under one of the bot's messages;
        returns the id of the ``callback_query`` update queued for the bot.

        Only buttons that are on the message now can be pressed, as in a real client.
        """
        stored = self._message_at(message)
        if stored.deleted:
            raise ValueError(f"message {stored.key} was deleted; its buttons are gone")
        if not stored.from_bot:
            raise ValueError(f"message {stored.key} is a user's message; only the bot's messages have inline buttons")
        if stored.chat["type"] == "private" and stored.chat_id != user_id:
            raise ValueError(f"user {user_id} cannot see message {stored.key} in another user's private chat")
        offered = [b.get("callback_data") for b in stored.buttons if "callback_data" in b]
        if data not in offered:
            raise ValueError(f"message {stored.key} has no button with callback_data {data!r}; it offers {offered}")
        user = self._remember_user(user_id)
        query_id = str(4_000_000_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        query: JSONObject = {
            "id": query_id,
            "from": user,
            "message": stored.to_api(),
            # A stable string per chat, as Telegram's chat_instance is.
            "chat_instance": str(abs(stored.chat_id) * 7919 + 104729),
            "data": data,
        }
        self._callback_queries[query_id] = query
        return self._queue_update("callback_query", query)

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        count: int = 1,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with an error instead of serving them.

        429 comes as Telegram's flood-wait (``Too Many Requests: retry after N`` with
        ``parameters.retry_after``), 500 as ``Internal Server Error``, 502 as ``Bad Gateway``;
        other statuses need the ``description`` Telegram would send (e.g. ``"Bad Request: chat
        not found"``, ``"Forbidden: bot was blocked by the user"``). Failed calls change nothing
        and are recorded with ``injected=True``.
        """
        name = self._canonical(method)
        if name is None:
            raise ValueError(f"{method!r} is not a Bot API method")
        if count < 1:
            raise ValueError("count must be at least 1")
        parameters: JSONObject | None = None
        if status == 429:
            parameters = {"retry_after": retry_after}
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif description is None:
            defaults = {401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}
            if status not in defaults:
                raise ValueError(f"say what Telegram answers with {status}: pass description=")
            description = defaults[status]
        faults = self._faults.setdefault(name, deque())
        faults.extend(_Fault(status, description, parameters) for _ in range(count))

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str | None = None) -> T:
        """Wait until ``predicate()`` is truthy and return its value; no sleeping in tests.

        Re-checks on every change to the double (a request arriving or answered, an update
        queued) and every ``recheck_interval`` seconds, so the predicate may also read state
        outside the double, such as what a handler recorded. Raises ``DoubleTimeout`` naming
        what it waited for and listing the bot's recent calls.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DoubleTimeout(self._timeout_report(what or _describe(predicate), timeout))
            await self._wait_change(min(remaining, self._recheck_interval))

    async def wait_for_call(
        self,
        method: str,
        where: Callable[[RecordedCall], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 10.0,
    ) -> RecordedCall:
        """The first recorded call of ``method`` at index ``since`` or later matching ``where``."""
        name = self._canonical(method) or method

        def find() -> RecordedCall | None:
            for call in self.calls[since:]:
                if call.method == name and (where is None or where(call)):
                    return call
            return None

        return await self.wait_for(find, timeout, what=f"a call to {name}" + (" matching the condition" if where else ""))

    # -- HTTP -----------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        self._changed()
        requested = request.match_info["method"]
        known = self._handlers.get(requested.lower())
        name = known[0] if known else (_BOT_API_METHODS.get(requested.lower()) or requested)
        params: JSONObject = {}
        unreadable: ApiError | None = None
        try:
            params = await _read_params(request)
        except ApiError as error:
            unreadable = error  # answered after the token and method checks, as Telegram orders them
        injected = False
        result: Any = None
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if known is None:
                raise _not_implemented(name) if name.lower() in _BOT_API_METHODS else ApiError(404, "Not Found")
            if unreadable is not None:
                raise unreadable
            faults = self._faults.get(name)
            if faults:
                fault = faults.popleft()
                injected = True
                raise ApiError(fault.status, fault.description, fault.parameters)
            result = await known[1](params)
            status, description = 200, None
            body: JSONObject
            if isinstance(result, _Described):
                body = {"ok": True, "result": result.result, "description": result.description}
                result = result.result
            else:
                body = {"ok": True, "result": result}
        except ApiError as error:
            status, description, body = error.status, error.description, error.body()
        except Exception as error:  # a bug in the double: answer loudly instead of dropping the connection
            log.exception("the Telegram test double failed to serve %s", name)
            status, description = 500, f"Internal Server Error: the Telegram test double crashed: {error!r}"
            body = {"ok": False, "error_code": status, "description": description}
        self.calls.append(
            RecordedCall(
                method=name,
                params=params,
                time=started,
                status=status,
                duration=time.monotonic() - started,
                description=description,
                result=result if status == 200 else None,
                injected=injected,
            )
        )
        self._changed()
        return web.json_response(body, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))

    async def _serve_unknown_path(self, request: web.Request) -> web.Response:
        return web.json_response(_NOT_FOUND_BODY, status=404)

    # -- methods: bot and updates ---------------------------------------------------------------

    async def _ok(self, params: JSONObject) -> bool:
        return True

    async def _get_me(self, params: JSONObject) -> JSONObject:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSONObject) -> list[JSONObject]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset", 0)
        limit = min(100, max(1, _int_param(params, "limit", 100)))
        timeout = max(0, _int_param(params, "timeout", 0))
        self._take_allowed_updates(params)

        # An offset confirms every update below it; a negative one keeps only the last -offset.
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]

        # A newer getUpdates ends an older one still waiting, as on Telegram: two pollers conflict.
        self._poll_generation += 1
        generation = self._poll_generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._polls_waiting += 1
        self._changed()
        try:
            while True:
                self._pending = [u for u in self._pending if self._allowed(u)]
                if self._pending:
                    return self._pending[:limit]
                if self._closing:
                    return []
                if generation != self._poll_generation:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                await self._wait_change(remaining)
        finally:
            self._polls_waiting -= 1

    async def _set_webhook(self, params: JSONObject) -> _Described:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if not url.lower().startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad_request("bad webhook: secret token contains unallowed characters")
        self._take_allowed_updates(params)
        already = url == self.webhook_url
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url = url
        self.webhook_secret = None if secret is None else str(secret)
        self._webhook = {key: params[key] for key in ("max_connections", "allowed_updates") if key in params}
        # Updates stay queued until deliver_webhook() posts them (the test names where to).
        return _Described(True, "Webhook is already set" if already else "Webhook was set")

    async def _delete_webhook(self, params: JSONObject) -> _Described:
        was_set = bool(self.webhook_url)
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url = ""
        self.webhook_secret = None
        self._webhook = {}
        return _Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _get_webhook_info(self, params: JSONObject) -> JSONObject:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
            **self._webhook,
        }

    # -- methods: commands ----------------------------------------------------------------------

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        return (json.dumps(scope or {"type": "default"}, sort_keys=True), str(language_code or ""))

    async def _set_my_commands(self, params: JSONObject) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    async def _get_my_commands(self, params: JSONObject) -> list[JSONObject]:
        return self.my_commands(params.get("scope"), str(params.get("language_code") or ""))

    async def _delete_my_commands(self, params: JSONObject) -> bool:
        self._commands.pop(self._commands_key(params.get("scope"), params.get("language_code")), None)
        return True

    # -- methods: messages ----------------------------------------------------------------------

    async def _send_message(self, params: JSONObject) -> JSONObject:
        # Like the Bot API server: parameters are parsed before the chat is looked up.
        rendered = self._render_text(params.get("text"), params)
        markup = _checked_markup(params.get("reply_markup"))
        chat = self._target_chat(params)
        replied = self._replied_message(chat, params)
        message = self._store_message(
            chat,
            self.bot_user,
            kind="text",
            rendered=rendered,
            parse_mode=params.get("parse_mode"),
            markup=markup,
            reply_to=replied,
        )
        return message.to_api()

    async def _edit_message_text(self, params: JSONObject) -> JSONObject:
        if params.get("inline_message_id"):
            raise _not_implemented("editing inline messages")
        rendered = self._render_text(params.get("text"), params)
        markup = _checked_markup(params.get("reply_markup"))
        message = self._message_to_edit(params)
        if message.kind != "text":
            raise _bad_request("there is no text in the message to edit")
        # Telegram drops an inline keyboard the edit does not repeat; a reply keyboard stays.
        new_markup = markup if markup is not None or _is_inline(message.reply_markup) else message.reply_markup
        if (rendered.text, rendered.entities, _inline_only(new_markup)) == (
            message.text,
            message.entities,
            _inline_only(message.reply_markup),
        ):
            raise _bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        self._remember_version(message)
        message.raw_text, message.text, message.entities = rendered.raw, rendered.text, rendered.entities
        message.parse_mode = params.get("parse_mode")
        message.reply_markup = new_markup
        message.edit_date = int(self._clock())
        return message.to_api()

    async def _edit_message_media(self, params: JSONObject) -> JSONObject:
        """A photo (or document) message's file and caption replaced; photos only here."""
        if params.get("inline_message_id"):
            raise _not_implemented("editing inline messages")
        media = params.get("media")
        if not isinstance(media, dict) or not media.get("media"):
            raise _bad_request("can't parse InputMedia: media not found")
        if media.get("type") != "photo":
            raise _not_implemented("editing media into anything but a photo")
        source = media["media"]
        if isinstance(source, str) and source.startswith("attach://"):
            source = params.get(source[len("attach://") :])
            if not isinstance(source, UploadedPart):
                raise _bad_request("can't find the attached file")
        message = self._message_to_edit(params)
        if message.kind == "text":
            raise _bad_request("there is no media in the message to edit")
        caption = media.get("caption")
        rendered = _Rendered("", "", [])
        if caption is not None and caption != "":
            rendered = self._render(str(caption), media.get("parse_mode", params.get("parse_mode")), media.get("caption_entities"))
            if len(rendered.text) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
        upload = self._resolve_file("photo", source)
        self._remember_version(message)
        message.kind, message.file = "photo", upload
        message.raw_text, message.text, message.entities = rendered.raw, rendered.text, rendered.entities
        message.edit_date = int(self._clock())
        if all(known.file_id != upload.file_id for known in self.files):
            self.files.append(upload)
        return message.to_api()

    async def _edit_message_reply_markup(self, params: JSONObject) -> JSONObject:
        if params.get("inline_message_id"):
            raise _not_implemented("editing inline messages")
        markup = _checked_markup(params.get("reply_markup"))
        message = self._message_to_edit(params)
        if _inline_only(markup) == _inline_only(message.reply_markup):
            raise _bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        self._remember_version(message)
        message.reply_markup = markup
        # Clients do not show a keyboard-only edit as "edited" (MTProto's edit_hide), so the
        # double leaves edit_date alone; tests read the change from history instead.
        return message.to_api()

    async def _delete_message(self, params: JSONObject) -> bool:
        chat = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = self.messages.get((int(chat["id"]), _as_int(message_id)))
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        message.deleted = True
        return True

    async def _answer_callback_query(self, params: JSONObject) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = self._callback_queries.get(query_id)
        if query is None:
            raise _bad_request("query is too old and response timeout expired or query ID is invalid")
        cache_time = params.get("cache_time")
        self.callback_answers.append(
            CallbackAnswer(
                callback_query_id=query_id,
                text=params.get("text"),
                show_alert=bool(params.get("show_alert", False)),
                url=params.get("url"),
                cache_time=cache_time if isinstance(cache_time, int) else None,
                query=query,
            )
        )
        return True

    async def _send_chat_action(self, params: JSONObject) -> bool:
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self._target_chat(params)
        return True

    async def _send_document(self, params: JSONObject) -> JSONObject:
        return await self._send_file("document", params)

    async def _send_photo(self, params: JSONObject) -> JSONObject:
        return await self._send_file("photo", params)

    async def _send_file(self, kind: Literal["document", "photo"], params: JSONObject) -> JSONObject:
        source = params.get(kind)
        if source is None or source == "":
            raise _bad_request(f"there is no {kind} in the request")
        caption = params.get("caption")
        rendered = _Rendered("", "", [])
        if caption is not None and caption != "":
            rendered = self._render(str(caption), params.get("parse_mode"), params.get("caption_entities"))
            if len(rendered.text) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
        markup = _checked_markup(params.get("reply_markup"))
        chat = self._target_chat(params)
        replied = self._replied_message(chat, params)
        upload = self._resolve_file(kind, source)
        message = self._store_message(
            chat,
            self.bot_user,
            kind=kind,
            rendered=rendered,
            parse_mode=params.get("parse_mode"),
            markup=markup,
            reply_to=replied,
            file=upload,
        )
        if all(known.file_id != upload.file_id for known in self.files):
            self.files.append(upload)
        return message.to_api()

    def _resolve_file(self, kind: Literal["document", "photo"], source: Any) -> UploadedFile:
        """The file a send names: a fresh upload, or the file_id of an earlier one."""
        if isinstance(source, UploadedPart):
            if not source.data:
                raise _bad_request("file must be non-empty")
            if len(source.data) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            width = height = 0
            if kind == "photo":
                size = image_size(source.data)
                if size is None:
                    raise _bad_request("IMAGE_PROCESS_FAILED")
                width, height = size
            self._file_serial += 1
            mime_type = None
            if kind == "document":
                # Telegram names the type from the file name, not from the part's header.
                mime_type = mimetypes.guess_type(source.filename or "")[0] or source.content_type or "application/octet-stream"
            return UploadedFile(
                kind=kind,
                file_id=f"{kind[:3].upper()}{self._file_serial:04d}-{secrets.token_urlsafe(12)}",
                file_unique_id=f"U{self._file_serial:04d}{secrets.token_hex(4)}",
                file_name=(source.filename or None) if kind == "document" else None,
                mime_type=mime_type,
                data=source.data,
                width=width,
                height=height,
            )
        if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
            raise _not_implemented("sending files by URL (upload the bytes instead)")
        for known in self.files:
            if known.file_id == source and known.kind == kind:
                return known
        raise _bad_request("wrong file identifier/HTTP URL specified")

    # -- helpers for the methods ----------------------------------------------------------------

    def _render_text(self, text: Any, params: JSONObject) -> _Rendered:
        if text is None or str(text) == "":
            raise _bad_request("message text is empty")
        rendered = self._render(str(text), params.get("parse_mode"), params.get("entities"))
        if not rendered.text:
            raise _bad_request("message text is empty")
        # The limit counts the text after entity parsing: tags do not count, entities are one char.
        if len(rendered.text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return rendered

    def _render(self, raw: str, parse_mode: Any, entities: Any) -> _Rendered:
        if entities is not None:  # explicit entities win over parse_mode
            if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
                raise _bad_request("can't parse entities JSON object")
            text, parsed = raw, _sorted_entities(entities)
        elif not parse_mode:
            text, parsed = raw, []
        elif str(parse_mode).lower() == "html":
            try:
                text, parsed = parse_html(raw, strict=self.strict_html, resolve_user=self._users.get)
            except HtmlError as error:
                raise _bad_request(f"can't parse entities: {error}") from None
        elif str(parse_mode).lower() in ("markdown", "markdownv2"):
            raise _not_implemented(f"parse_mode {parse_mode} (use HTML)")
        else:
            raise _bad_request("unsupported parse_mode")
        text, parsed = _trim(text, parsed)
        return _Rendered(raw, text, detect_entities(text, parsed))

    def _target_chat(self, params: JSONObject) -> JSONObject:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, int) and chat_id in self._chats:
            return self._chats[chat_id]
        if isinstance(chat_id, int) and chat_id in self._users:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self._chats.values():
                if chat["type"] != "private" and chat.get("username") == chat_id[1:]:
                    return chat
        # Telegram knows no chat the bot was never in, and users who never opened the bot.
        raise _bad_request("chat not found")

    def _replied_message(self, chat: JSONObject, params: JSONObject) -> StoredMessage | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id, allow = reply.get("message_id"), bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, chat["id"]):
                raise _not_implemented("replies to messages in other chats")
        else:
            message_id, allow = params.get("reply_to_message_id"), bool(params.get("allow_sending_without_reply"))
        if message_id is None:
            return None
        replied = self.messages.get((int(chat["id"]), _as_int(message_id)))
        if replied is None or replied.deleted:
            if allow:
                return None
            raise _bad_request("message to be replied not found")
        return replied

    def _message_to_edit(self, params: JSONObject) -> StoredMessage:
        chat = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = self.messages.get((int(chat["id"]), _as_int(message_id)))
        if message is None or message.deleted:
            raise _bad_request("message to edit not found")
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    def _remember_version(self, message: StoredMessage) -> None:
        message.history.append(
            MessageVersion(
                raw_text=message.raw_text,
                text=message.text,
                entities=message.entities,
                reply_markup=message.reply_markup,
                date=message.edit_date or message.date,
            )
        )

    def _store_message(
        self,
        chat: JSONObject,
        sender: JSONObject,
        *,
        kind: Literal["text", "document", "photo"],
        rendered: _Rendered,
        parse_mode: Any = None,
        markup: JSONObject | None = None,
        reply_to: StoredMessage | None = None,
        file: UploadedFile | None = None,
    ) -> StoredMessage:
        chat_id = int(chat["id"])
        in_chat = self._chat_messages.setdefault(chat_id, [])
        # Message ids count up per chat, shared by everyone writing in it.
        message_id = in_chat[-1].message_id + 1 if in_chat else 1
        message = StoredMessage(
            chat=dict(chat),
            message_id=message_id,
            sender=dict(sender),
            date=int(self._clock()),
            kind=kind,
            raw_text=rendered.raw,
            text=rendered.text,
            entities=rendered.entities,
            parse_mode=str(parse_mode) if parse_mode else None,
            reply_markup=markup,
            file=file,
            reply_to_message=reply_to.to_api(with_reply=False) if reply_to is not None else None,
        )
        in_chat.append(message)
        self.messages[message.key] = message
        self._changed()
        return message

    # -- helpers for driving --------------------------------------------------------------------

    def _remember_user(
        self,
        user_id: int,
        *,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> JSONObject:
        """The user, created or renamed: names given replace earlier ones, names left out stay."""
        if user_id <= 0:
            raise ValueError(f"user ids are positive, not {user_id}")
        if user_id == self.bot_id:
            raise ValueError(f"{user_id} is the bot itself")
        user = dict(self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"})
        for key, value in (("first_name", first_name), ("last_name", last_name), ("username", username)):
            if value is not None:
                user[key] = value
        user.setdefault("language_code", "en")
        self._users[user_id] = user
        if user_id in self._chats:  # a renamed user's private chat shows the new name
            self._chats[user_id] = self._private_chat(user)
        return user

    @staticmethod
    def _private_chat(user: JSONObject) -> JSONObject:
        chat: JSONObject = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat

    def _chat_for(
        self,
        user_id: int,
        chat_id: int | None,
        chat_type: Literal["private", "group", "supergroup"] | None,
        title: str | None,
    ) -> JSONObject:
        if chat_id is None or chat_id == user_id:
            if chat_type not in (None, "private"):
                raise ValueError(f"a {chat_type} needs its own (negative) chat_id")
            self.add_user(user_id)  # writing to the bot opens the private chat
            return self._chats[user_id]
        if chat_type == "private":
            raise ValueError(f"user {user_id}'s private chat has id {user_id}, not {chat_id}")
        known = self._chats.get(chat_id)
        if chat_type is None:
            if known is None:
                raise ValueError(f"chat {chat_id} is new: pass chat_type='group' or 'supergroup'")
            if known["type"] == "private":
                raise ValueError(f"chat {chat_id} is user {chat_id}'s private chat; user {user_id} cannot write there")
            return known
        return self.add_chat(chat_id, chat_type=chat_type, title=title)

    def _privacy_lets_through(self, message: StoredMessage, replied: StoredMessage | None) -> bool:
        """What a bot in privacy mode receives from a group (Telegram's bot FAQ)."""
        if replied is not None and replied.from_bot:
            return True
        first = message.entities[0] if message.entities else None
        if first is None or first["type"] != "bot_command" or first["offset"] != 0:
            return False
        _, _, addressee = message.text[: first["length"]].partition("@")
        return not addressee or addressee.lower() == self.username.lower()

    def _message_at(self, where: StoredMessage | tuple[int, int]) -> StoredMessage:
        key = where.key if isinstance(where, StoredMessage) else where
        message = self.messages.get(key)
        if message is None:
            raise LookupError(f"no message {key} (chat_id, message_id) in the double")
        return message

    def _queue_update(self, kind: str, payload: JSONObject) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, kind: payload}
        self.updates.append(update)
        self._pending.append(update)
        self._changed()
        return update_id

    def _take_allowed_updates(self, params: JSONObject) -> None:
        """getUpdates' and setWebhook's ``allowed_updates``: it sticks for later calls that
        leave it out, as on Telegram; an empty list means Telegram's default set."""
        allowed = params.get("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
                raise _bad_request("can't parse allowed_updates JSON object")
            self._allowed_updates = frozenset(allowed) if allowed else None

    def _allowed(self, update: JSONObject) -> bool:
        kind = next(key for key in update if key != "update_id")
        if self._allowed_updates is None:
            return kind not in OPT_IN_UPDATE_TYPES
        return kind in self._allowed_updates

    def _canonical(self, method: str) -> str | None:
        known = self._handlers.get(method.lower())
        if known is not None:
            return known[0]
        return _BOT_API_METHODS.get(method.lower())

    # -- waking ---------------------------------------------------------------------------------

    def _changed(self) -> None:
        for waker in self._wakers:
            waker.set()

    async def _wait_change(self, timeout: float) -> None:
        waker = asyncio.Event()
        self._wakers.add(waker)
        try:
            await asyncio.wait_for(waker.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._wakers.discard(waker)

    def _timeout_report(self, what: str, timeout: float) -> str:
        lines = [f"waited {timeout:g} s for {what}"]
        recent = self.calls[-12:]
        if recent:
            lines.append(f"the bot's last {len(recent)} of {len(self.calls)} calls, oldest first:")
            for call in recent:
                outcome = "ok" if call.ok else f"{call.status} {call.description}"
                injected = " (injected)" if call.injected else ""
                lines.append(f"  {call.method} {_summary(call.params)} -> {outcome}{injected}")
        else:
            lines.append("the bot made no calls at all (is it pointed at double.base_url with double.token?)")
        pending = [u["update_id"] for u in self._pending]
        lines.append(f"updates not yet confirmed by the bot: {pending or 'none'}; long poll waiting: {self.polling}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _describe(predicate: Callable[[], object]) -> str:
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)
    return source if len(source) <= 300 else source[:299] + "…"


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad_request("message identifier is not specified") from None


def _int_param(params: JSONObject, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_request(f"parameter \"{name}\" must be an integer")
    return value


def _is_inline(markup: JSONObject | None) -> bool:
    return markup is not None and "inline_keyboard" in markup


def _inline_only(markup: JSONObject | None) -> JSONObject | None:
    return markup if _is_inline(markup) else None


def _checked_markup(markup: Any) -> JSONObject | None:
    """The reply markup, checked the way Telegram checks inline keyboards."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request("can't parse inline keyboard markup JSON object")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request("can't parse inline keyboard button: Text must be String")
            if not _BUTTON_ACTIONS & button.keys():
                raise _bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
    return markup
