"""The bot's settings model: everything ``wingman bot`` reads (its token, its chat, its
signing key, the executor's socket), and nothing of the executor's."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from process.settings import ProcessSettings, setting

BOT = "Bot (wingman bot): holds no Docker socket, no Proxmox credentials"


class BotSettings(ProcessSettings):
    """Everything ``wingman bot`` reads: the token, the chat, its signing key, the socket."""

    telegram_bot_token: SecretStr | None = setting(None, "TELEGRAM_BOT_TOKEN", "The token @BotFather gave you (in Telegram: @BotFather, /newbot).", group=BOT, example="123456789:AA...")
    telegram_bot_token_file: Path | None = setting(None, "TELEGRAM_BOT_TOKEN_FILE", "A file holding the token (a compose secret or systemd credential); used when TELEGRAM_BOT_TOKEN is unset.", group=BOT, example="/run/secrets/telegram_bot_token")
    telegram_api_base: str | None = setting(None, "TELEGRAM_API_BASE", "A Bot API server base URL (self-hosted Bot API server). Default: Telegram's.", group=BOT, example="http://127.0.0.1:8081")
    chat_id: int | None = setting(None, "WINGMAN_CHAT_ID", "The group or channel for approval requests, alerts and reports.", group=BOT, example="-1001234567890")
    telegram_webhook_url: str | None = setting(None, "TELEGRAM_WEBHOOK_URL", "Receive updates by webhook at this public HTTPS URL (your TLS proxy forwards it to TELEGRAM_WEBHOOK_LISTEN) instead of long polling.", group=BOT, example="https://bot.example.org/wingman/telegram")
    telegram_webhook_listen: str = setting("127.0.0.1:8080", "TELEGRAM_WEBHOOK_LISTEN", "Webhook mode: the host:port the bot listens on, behind your TLS proxy.", group=BOT)
    telegram_webhook_secret: SecretStr | None = setting(None, "TELEGRAM_WEBHOOK_SECRET", "Webhook mode: the secret Telegram sends with every update (1-256 of A-Z a-z 0-9 _ -); updates without it are refused. Default: a new random one at each start.", group=BOT, example="a-long-random-string")
    bot_key: Path | None = setting(None, "WINGMAN_BOT_KEY", "The bot's request-signing PRIVATE key. Default: <WINGMAN_DATA_DIR>/keys/bot.key (made by wingman up).", group=BOT, example="./data/keys/bot.key")
