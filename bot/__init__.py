"""The Telegram adapter: commands in, signed requests to the executor out (arrives with issue 5)."""
