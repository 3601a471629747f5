"""How the chat shows Compose stacks: /status grouped by project, a stack's restart service by service.

Pure functions over the executor's reply data, like ``bot.formatting`` (which calls them):
everything from a container or a user is escaped before it is placed in HTML.
"""

from __future__ import annotations

import html
from typing import Any

LOOSE = "Not in a stack"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def _container_line(c: dict[str, Any], *, label: object) -> str:
    health = f", {_esc(c['health'])}" if c.get("health") else ""
    return (
        f"<b>{_esc(label)}</b> {_esc(c.get('state'))}{health} · <code>{_esc(c.get('image'))}</code> "
        f"{_esc(c.get('image_id', ''))} · up {_esc(c.get('uptime') or '-')} · restarts {_esc(c.get('restart_count', 0))}"
    )


def status_text(result: dict[str, Any]) -> str:
    """/status: one block per Compose project (its services and their state), then the containers of none."""
    containers = result.get("containers") or []
    if not containers:
        return "No containers to show."
    stacks: dict[str, list[dict[str, Any]]] = {}
    loose: list[dict[str, Any]] = []
    for c in containers:
        if c.get("project"):
            stacks.setdefault(str(c["project"]), []).append(c)
        else:
            loose.append(c)
    if not stacks:  # nothing to group: the plain list
        return "\n".join(_container_line(c, label=c.get("name")) for c in loose)
    blocks = []
    for project in sorted(stacks):
        members = sorted(stacks[project], key=lambda c: (str(c.get("service") or ""), str(c.get("name"))))
        up = sum(1 for c in members if c.get("state") == "running")
        lines = [f"📦 <b>{_esc(project)}</b> · {up} of {len(members)} running"]
        for c in members:
            service = c.get("service") or c.get("name")
            # The container's own name only when it is more than the service says (scaled, renamed).
            label = service if len([m for m in members if m.get("service") == service]) == 1 else f"{service} ({c.get('name')})"
            lines.append("  " + _container_line(c, label=label))
        blocks.append("\n".join(lines))
    if loose and not result.get("project"):
        blocks.append("\n".join([f"<b>{LOOSE}</b>", *("  " + _container_line(c, label=c.get("name")) for c in loose)]))
    return "\n\n".join(blocks)


def stack_restart_text(result: dict[str, Any], reason: str) -> str:
    """/restart of a whole stack: the order it went in, then each service's state."""
    services = result.get("services") or []
    lines = [
        f"✅ <b>{_esc(result.get('project'))}</b> restarted, dependencies first "
        f"(order from {_esc(result.get('order_from'))}):"
    ]
    for s in services:
        mark = "✅" if s.get("ok") else "❌"
        lines.append(f"{mark} <b>{_esc(s.get('service'))}</b> {_esc(s.get('state'))}")
    return "\n".join(lines) if services else f"✅ {_esc(reason)}"


def stack_of(target: object) -> str:
    """The project a target may name: ``stack:immich`` and ``immich`` both name ``immich``."""
    return str(target).removeprefix("stack:")


def _short(digest: object) -> str:
    algorithm, _, hexdigits = str(digest).partition(":")
    return f"{algorithm}:{hexdigits[:4]}…{hexdigits[-4:]}" if len(hexdigits) > 8 else str(digest)


def plan_text(plan: list[Any]) -> str:
    """A stack update's plan, in the order it runs: ``1. db: app:1 (sha256:3f2a…c91b) → app:2 (sha256:9e1d…07aa)``."""
    lines = []
    for number, step in enumerate(plan, 1):
        if not isinstance(step, dict):
            continue
        current = f"{step.get('current')} ({_short(step.get('current_digest') or step.get('current_id'))})"
        new = f"{str(step.get('image', '')).partition('@')[0]} ({_short(step.get('new_digest'))})"
        lines.append(f"{number}. <b>{_esc(step.get('service'))}</b>: <code>{_esc(current)}</code> → <code>{_esc(new)}</code>")
    return "\n".join(lines)
