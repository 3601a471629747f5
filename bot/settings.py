"""The bot's settings model: everything ``wingman bot`` reads (its token, its chat, its
signing key, the executors' sockets), and nothing of the executor's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr
from pydantic_settings import NoDecode

from process.settings import ProcessSettings, setting

BOT = "Bot (wingman bot): holds no Docker socket, no Proxmox credentials"

# An executor's name travels in every button's callback data (Telegram allows 64 bytes:
# "ap:approve:<32-character approval id>:<host>" leaves 20 for the host) and in `name@host`.
HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?")
HOST_NAME_RULE = "1 to 20 lowercase letters, digits and '-', not starting or ending with '-'"
EXECUTORS_EXAMPLE = "home=/run/wingman/executor.sock,nas=/run/wingman/nas.sock"


def parse_executors(value: Any) -> Any:
    """``home=/run/a.sock,nas=/run/b.sock`` → ``{"home": Path(...), "nas": Path(...)}``; a
    ValueError names what is wrong in one line."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    executors: dict[str, Path] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, equals, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not equals or not path:
            raise ValueError(f"{item!r} is not name=socket; write e.g. {EXECUTORS_EXAMPLE}")
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a host name: use {HOST_NAME_RULE}")
        if name in executors:
            raise ValueError(f"{name!r} is listed twice; give each executor one name")
        executors[name] = Path(path)
    if not executors:
        return None
    if len(set(executors.values())) < len(executors):
        raise ValueError("two names share one socket; each executor has its own")
    return executors


Executors = Annotated[dict[str, Path] | None, NoDecode, BeforeValidator(parse_executors)]


class BotSettings(ProcessSettings):
    """Everything ``wingman bot`` reads: the token, the chat, its signing key, the sockets.

    Executors: ``executor_sockets()`` is the one place that says which executors the bot
    talks to, as ``{name: socket}``. With ``WINGMAN_EXECUTORS`` set, the names are its own
    (each executor's ``WINGMAN_EXECUTOR_NAME`` must match: a request's token is signed for
    that name). Unset, it is ``{None: <WINGMAN_SOCKET>}``: one executor whose name the bot
    learns from its health answer, and which the chat never names.
    """

    telegram_bot_token: SecretStr | None = setting(None, "TELEGRAM_BOT_TOKEN", "The token @BotFather gave you (in Telegram: @BotFather, /newbot).", group=BOT, example="123456789:AA...")
    telegram_bot_token_file: Path | None = setting(None, "TELEGRAM_BOT_TOKEN_FILE", "A file holding the token (a compose secret or systemd credential); used when TELEGRAM_BOT_TOKEN is unset.", group=BOT, example="/run/secrets/telegram_bot_token")
    telegram_api_base: str | None = setting(None, "TELEGRAM_API_BASE", "A Bot API server base URL (self-hosted Bot API server). Default: Telegram's.", group=BOT, example="http://127.0.0.1:8081")
    chat_id: int | None = setting(None, "WINGMAN_CHAT_ID", "The group or channel for approval requests, alerts and reports.", group=BOT, example="-1001234567890")
    telegram_webhook_url: str | None = setting(None, "TELEGRAM_WEBHOOK_URL", "Receive updates by webhook at this public HTTPS URL (your TLS proxy forwards it to TELEGRAM_WEBHOOK_LISTEN) instead of long polling.", group=BOT, example="https://bot.example.org/wingman/telegram")
    telegram_webhook_listen: str = setting("127.0.0.1:8080", "TELEGRAM_WEBHOOK_LISTEN", "Webhook mode: the host:port the bot listens on, behind your TLS proxy.", group=BOT)
    telegram_webhook_secret: SecretStr | None = setting(None, "TELEGRAM_WEBHOOK_SECRET", "Webhook mode: the secret Telegram sends with every update (1-256 of A-Z a-z 0-9 _ -); updates without it are refused. Default: a new random one at each start.", group=BOT, example="a-long-random-string")
    quiet_hours: str | None = setting(None, "WINGMAN_QUIET_HOURS", "A daily window (HH:MM-HH:MM in WINGMAN_TIMEZONE; may cross midnight) when reports and other informational messages wait and arrive as one message at its end. Approval requests, alerts and failures are always sent at once.", group=BOT, example="23:00-07:00")
    bot_key: Path | None = setting(None, "WINGMAN_BOT_KEY", "The bot's request-signing PRIVATE key. Default: <WINGMAN_DATA_DIR>/keys/bot.key (made by wingman up).", group=BOT, example="./data/keys/bot.key")
    executors: Executors = setting(None, "WINGMAN_EXECUTORS", "Many hosts: each executor by name and socket (name=socket, comma-separated; names of 1-20 lowercase letters, digits and '-', each equal to that executor's WINGMAN_EXECUTOR_NAME). Unset: one executor at WINGMAN_SOCKET.", group=BOT, example=EXECUTORS_EXAMPLE)

    def executor_sockets(self) -> dict[str | None, Path]:
        """The executors by name: ``WINGMAN_EXECUTORS``, or ``{None: socket_path}`` (one
        executor, its name learned from it) when that is unset."""
        if self.executors:
            return dict(self.executors)
        return {None: self.socket_path}
