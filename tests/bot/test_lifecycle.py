"""Stopping the bot: SIGTERM is honoured even while Telegram cannot be reached at start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from audit import generate_key_pair

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_during_a_start_that_cannot_reach_telegram_stops_the_bot(tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "keys", "bot")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WINGMAN_", "TELEGRAM_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN="42:TEST-token",
        TELEGRAM_API_BASE=f"http://127.0.0.1:{closed_port}",
        WINGMAN_BOT_KEY=str(tmp_path / "keys" / "bot.key"),
        WINGMAN_SOCKET=str(tmp_path / "executor.sock"),
    )
    bot = subprocess.Popen([sys.executable, "-m", "wingman", "bot"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert bot.stderr is not None
        for line in bot.stderr:  # the start is retrying the command menu against the closed port
            if "SetMyCommands failed" in line:
                break
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(timeout=20) == 0
    finally:
        if bot.poll() is None:
            bot.kill()
