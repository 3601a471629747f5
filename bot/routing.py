"""Which host a command goes to, when the bot serves many.

A command names its host (``/deploy web@nas nginx:1.27``, ``/status nas``), or goes to
every host at once (``/status``, ``/help``, ``/verify``…), or names a target without a
host: then the hosts are asked where it lives (each executor's ``status``, ``vm status``
or ``pending``, as the person who asked, so each host shows only what its own policy
lets them see). Found on exactly one host, the command goes there; on several, the person
is asked which (one button per host); on none, they are told so. The bot decides nothing:
whatever goes to a host is still that host's to allow or refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.fleet import Answer, Fleet, Host
from bot.stacks import stack_of
from executor.client import Reply

# Asked of every host at once when no target narrows them down.
EVERYWHERE = frozenset({"help", "whoami", "pending", "audit", "verify", "status", "vm.status"})
# Verifying a long chain takes a while: these get the request timeout, not the fan-out's.
SLOW = frozenset({"verify", "audit"})


@dataclass(frozen=True, slots=True)
class Lookup:
    """How to learn where a target lives: ask ``action``, find it in ``result[listed]`` by ``key``."""

    action: str
    listed: str
    key: str
    what: str  # in the operator's words: "container", "VM", "request"


CONTAINERS = Lookup("status", "containers", "name", "container")
VMS = Lookup("vm.status", "vms", "vmid", "VM")
REQUESTS = Lookup("pending", "approvals", "id", "request")


def lookup_for(action: str) -> tuple[Lookup, str]:
    """What identifies the target of ``action`` (and in which argument it travels)."""
    if action.startswith("approval."):
        return REQUESTS, "id"
    if action.startswith("vm."):
        return VMS, "target"
    return CONTAINERS, "target"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a parsed command goes: ``hosts`` (one, or all for a fan-out), or nowhere, with
    ``refusal`` saying why; ``choices`` when the target is on several hosts."""

    action: str
    args: dict[str, Any]
    hosts: list[Host] = field(default_factory=list)
    everywhere: bool = False
    choices: list[Host] = field(default_factory=list)
    refusal: str | None = None
    target: str | None = None


class UnknownHost(Exception):
    """A command named a host the bot does not serve; ``str()`` says so in one line."""


def named_host(fleet: Fleet, name: str) -> Host:
    host = fleet.get(name)
    if host is None:
        known = ", ".join(fleet.names) or (fleet.hosts[0].label if fleet.hosts else "none")
        raise UnknownHost(f"There is no host {name} here (hosts: {known}); /hosts lists them.")
    return host


async def route(fleet: Fleet, user_id: int, action: str, args: dict[str, Any], host: str | None, chat: dict[str, Any]) -> Route:
    """Where ``action`` with ``args`` goes; raises ``UnknownHost`` for a host not served."""
    if host is not None:
        return Route(action, args, [named_host(fleet, host)])
    if not fleet.many:
        return Route(action, args, fleet.hosts)
    lookup, argument = lookup_for(action)
    target = args.get(argument)
    if action in ("status", "vm.status") and target is not None and str(target) in fleet.names:
        # `/status nas`: one host's status (a container called like a host: `/status nas@home`).
        rest = {k: v for k, v in args.items() if k != argument}
        return Route(action, rest, [named_host(fleet, str(target))])
    if target is None:
        if action in EVERYWHERE:
            return Route(action, args, fleet.hosts, everywhere=True)
        return Route(action, args, refusal="Name the host: /hosts lists them.")
    answers = await fleet.call_each(user_id, lookup.action, {}, chat)
    found = [a.host for a in answers if _lists(a, lookup, target)]
    if len(found) == 1:
        return Route(action, args, found, target=str(target))
    if len(found) > 1:
        return Route(action, args, choices=found, target=str(target))
    return Route(action, args, refusal=_nowhere(lookup, str(target), answers), target=str(target))


def _lists(answer: Answer[Reply], lookup: Lookup, target: Any) -> bool:
    reply = answer.value
    if reply is None or reply.status != "done":
        return False
    listed = reply.result.get(lookup.listed) or []
    if any(isinstance(item, dict) and str(item.get(lookup.key)) == str(target) for item in listed):
        return True
    # A Compose stack (`/restart immich`, `/status stack:immich`) lives where its containers are.
    return lookup is CONTAINERS and stack_of(target) in {item.get("project") for item in listed if isinstance(item, dict)}


def _nowhere(lookup: Lookup, target: str, answers: list[Answer[Reply]]) -> str:
    asked = [a.host.label for a in answers if a.down is None]
    silent = [f"{a.host.label} {a.down.line}" for a in answers if a.down is not None]
    line = f"No host shows you a {lookup.what} {target}"
    line += f" (asked {', '.join(asked)})" if asked else ""
    line += f"; {'; '.join(silent)}" if silent else ""
    return line + f". Name the host as {target}@host if you know it; /hosts lists them."


def on(route: Route, host: Host) -> Route:
    """``route`` sent to ``host`` (a choice made)."""
    return replace(route, hosts=[host], choices=[])
