"""People as the chat shows them: ``@alice``, or a first name, and the id only when needed.

The bot sends, inside each signed request, how its sender appears in Telegram (the
``display_name`` claim, see ``executor.protocol``): :func:`display_name` makes that name. The
executor keeps it beside the id and hands it back with what it shows (``names``:
``{"tg:1001": "@alice"}``); :class:`Names` turns an actor into HTML for a message. The id
stays the identity: a name is shown escaped like any text a user chose, and with the id
beside it wherever it could be mistaken for somebody else's.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from executor.protocol import NAME_MAX, valid_name


def _esc(value: str) -> str:  # bot.formatting's esc; formatting imports this module
    return html.escape(value, quote=False)


def display_name(user: Any) -> str | None:
    """How a Telegram user appears: ``@username``, else the first name made safe to show
    (control and format characters dropped, no leading ``@``, at most 64 characters).
    None when nothing is left: the executor then shows the id."""
    username = getattr(user, "username", None)
    if username and valid_name(f"@{username}"):
        return f"@{username}"
    first = " ".join(
        "".join(c for c in str(getattr(user, "first_name", "") or "") if not unicodedata.category(c).startswith("C")).split()
    ).lstrip("@ ")
    if len(first) > NAME_MAX:
        first = first[: NAME_MAX - 1].rstrip() + "…"
    return first if valid_name(first) else None


class Names:
    """Renders actors (``tg:1001``) by name for one message.

    Two people shown alike in the same message (the same name, whatever the case), or a
    name that reads like an id, get the id beside the name; someone without a known name is
    shown by id. Everything from a user is escaped.
    """

    def __init__(self, names: Mapping[str, Any] | None = None) -> None:
        self._names = {str(actor): str(name) for actor, name in (names or {}).items() if name}
        seen: dict[str, set[str]] = {}
        for actor, name in self._names.items():
            seen.setdefault(name.casefold(), set()).add(actor)
        self._alike = {name for name, actors in seen.items() if len(actors) > 1}

    @classmethod
    def merged(cls, mappings: Iterable[Mapping[str, Any] | None]) -> Names:
        joined: dict[str, Any] = {}
        for mapping in mappings:
            joined.update(mapping or {})
        return cls(joined)

    def show(self, actor: object) -> str:
        """``@alice``, ``Bob (<code>tg:1002</code>)`` or ``<code>tg:1003</code>``, in HTML."""
        actor = str(actor)
        name = self._names.get(actor)
        if name is None:
            return f"<code>{_esc(actor)}</code>"
        if name.casefold() in self._alike or name.casefold().startswith("tg:"):
            return f"{_esc(name)} (<code>{_esc(actor)}</code>)"
        return _esc(name)

    def plain(self, actor: object) -> str:
        """The same, as plain text (for a ``<pre>`` block, escaped by the caller)."""
        actor = str(actor)
        name = self._names.get(actor)
        if name is None:
            return actor
        if name.casefold() in self._alike or name.casefold().startswith("tg:"):
            return f"{name} ({actor})"
        return name
