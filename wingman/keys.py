"""Rotating the bot's request-signing key (``wingman keys rotate``) with no refused request.

The executor reads ``WINGMAN_TRUSTED_KEYS`` at start and trusts every key listed there,
each under its file stem as key id, so a rotation is four plain steps:

1. make a new pair ``bot-<date>.key/.pub`` (this module);
2. add the new ``.pub`` to ``WINGMAN_TRUSTED_KEYS`` beside the old one, restart the executor;
3. point ``WINGMAN_BOT_KEY`` at the new ``.key``, restart the bot;
4. after a grace period (every token signed with the old key has expired: they live at
   most ``executor.protocol.MAX_LIFETIME`` seconds), drop the old ``.pub`` from
   ``WINGMAN_TRUSTED_KEYS``, restart the executor, and delete the old private key.

Between steps 2 and 4 both keys are accepted, so whatever the bot signs is accepted
whichever key it is using at that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from audit.signing import check_kid, generate_key_pair
from executor.protocol import MAX_LIFETIME


@dataclass(frozen=True, slots=True)
class RotatedKey:
    kid: str
    key_path: Path
    pub_path: Path


def next_kid(directory: Path, today: date, prefix: str = "bot") -> str:
    """``<prefix>-YYYYMMDD``, or ``-2``, ``-3``… when that day already has a key."""
    base = f"{prefix}-{today:%Y%m%d}"
    kid, n = base, 1
    while (directory / f"{kid}.key").exists() or (directory / f"{kid}.pub").exists():
        n += 1
        kid = f"{base}-{n}"
    return check_kid(kid)


def rotate(directory: Path, today: date, kid: str | None = None) -> RotatedKey:
    """Write the new key pair into ``directory``; never overwrites (KeyFileError)."""
    chosen = check_kid(kid) if kid else next_kid(directory, today)
    key_path, pub_path = generate_key_pair(directory, chosen)
    return RotatedKey(chosen, key_path, pub_path)


def rotation_steps(new: RotatedKey, current_key: Path | None, trusted: list[Path]) -> list[str]:
    """The exact steps, with this host's paths, as lines to print."""
    old_pub = current_key.with_suffix(".pub") if current_key is not None else None
    both = [str(path) for path in trusted] or ([str(old_pub)] if old_pub is not None else [])
    if str(new.pub_path) not in both:
        both.append(str(new.pub_path))
    remaining = [path for path in both if old_pub is None or Path(path) != old_pub]
    old = f" ({current_key.stem})" if current_key is not None else ""
    return [
        f"1. executor: trust both keys, then restart the executor:\n     WINGMAN_TRUSTED_KEYS={','.join(both)}",
        f"2. bot: sign with the new key, then restart the bot:\n     WINGMAN_BOT_KEY={new.key_path}",
        f"3. check: `wingman check` says the bot's key id {new.kid} is trusted with the same public key",
        f"4. after the grace period (at least {MAX_LIFETIME} s after the bot restarted; longer if other clients "
        f"still use the old key{old}): retire it, then restart the executor:\n     WINGMAN_TRUSTED_KEYS={','.join(remaining)}"
        + (f"\n   and delete the old private key: rm {current_key}" if current_key is not None else ""),
    ]


def rotate_main(out: Path | None, kid: str | None, today: date, echo: Callable[[str], None] = print) -> int:
    """``wingman keys rotate [--out DIR] [--kid ID]``: make the new pair, print the steps."""
    from bot.app import bot_key_path
    from bot.settings import BotSettings
    from executor.settings import ExecutorSettings
    from process.settings import SettingsError, load_settings

    current: Path | None = None
    trusted: list[Path] = []
    try:
        current = bot_key_path(load_settings(BotSettings))
    except SettingsError:
        pass  # on the executor's host the bot's settings may be absent: the steps still hold
    try:
        trusted = list(load_settings(ExecutorSettings).trusted_keys)
    except SettingsError:
        pass
    directory = out or (current.parent if current is not None else Path("."))
    new = rotate(directory, today, kid)
    echo(f"key id: {new.kid}")
    echo(f"private key: {new.key_path}")
    echo(f"public key: {new.pub_path}")
    echo("Rotate with no refused request:")
    for step in rotation_steps(new, current if current is not None and current.exists() else None, trusted):
        echo(step)
    return 0
