"""What the chat shows: executor replies and notifications turned into Telegram HTML.

Pure functions. Everything that came from a user or a container is escaped with
:func:`esc` before it is placed in HTML, so a container named ``<b>x</b>`` or an argument
with ``&`` renders literally.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bot.people import Names
from bot.ratelimit import limit_line
from bot.stacks import plan_text, stack_restart_text, status_text

TEXT_LIMIT = 4096

STATE_LINES = {
    "pending": "⏳ waiting for approval",
    "approved": "✅ approved",
    "running": "⚙️ running",
    "done": "✅ done",
    "failed": "❌ failed",
    "refused": "⛔ not run: refused",
    "rejected": "🚫 rejected",
    "cancelled": "↩️ cancelled by the requester",
    "expired": "⌛ expired: nobody approved it in time",
}


def esc(value: object) -> str:
    return html.escape(str(value), quote=False)


def code(value: object) -> str:
    return f"<code>{esc(value)}</code>"


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M UTC")


def on_host(value: object, host: str | None) -> str:
    """``web@nas`` when the bot serves many hosts (``host`` given), ``web`` otherwise."""
    return f"{value}@{host}" if host else str(value)


def host_header(host: str | None) -> str:
    """The first line that names the host a notification comes from (none with one host)."""
    return f"🖥 <b>{esc(host)}</b>\n" if host else ""


def notice_text(payload: dict[str, Any], kind: str, host: str | None = None) -> str:
    """A notification's text, escaped; a checkpoint's witness line below it as code, so that
    a tap copies it whole for ``wingman audit verify --witness``."""
    text = host_header(host) + esc(payload.get("text", kind))
    witness = payload.get("witness")
    if isinstance(witness, str) and witness:
        text += f"\n{code(witness)}\nKeep it: <code>wingman audit verify --witness \"…\"</code> checks the chain against it."
    return text


def describe_request(action: str, args: dict[str, Any], host: str | None = None) -> str:
    """``deploy web → nginx:1.27`` in HTML: the action and its arguments, escaped
    (``deploy web@nas → nginx:1.27`` with a host)."""
    words = [f"<b>{esc(action.replace('.', ' '))}</b>"]
    if args.get("target") is not None:
        words.append(code(on_host(args["target"], host)))
    elif host:
        words.append(f"on {code(host)}")
    extra = {k: v for k, v in args.items() if k != "target"}
    plan = extra.pop("plan", None)
    if isinstance(plan, list):
        # A stack update: the plan the executor bound it to, one service a line, in order.
        return " ".join(words) + "\n" + plan_text(plan)
    pinned = extra.pop("pinned", None)
    if isinstance(pinned, dict):
        # The image the executor bound the request to: what the approver approves.
        words.append("→ " + pinned_image(pinned))
        extra.pop("image", None)
    elif "image" in extra:
        words.append("→ " + code(extra.pop("image")))
    words.extend(f"{esc(k)}={code(v)}" for k, v in sorted(extra.items()))
    return " ".join(words)


def short_digest(digest: object) -> str:
    """``sha256:3f2a…c91b``."""
    algorithm, _, hexdigits = str(digest).partition(":")
    return f"{algorithm}:{hexdigits[:4]}…{hexdigits[-4:]}" if len(hexdigits) > 8 else str(digest)


def pinned_image(pinned: dict[str, Any]) -> str:
    """``nginx:1.27 · sha256:3f2a…c91b (local)`` or ``(will be pulled)``, in HTML."""
    where = "local" if pinned.get("source") == "local" else "will be pulled"
    return f"{code(str(pinned.get('image')) + ' · ' + short_digest(pinned.get('id')))} ({where})"


def approval_text(
    approval: dict[str, Any], *, progress: dict[str, Any] | None = None, outcome: dict[str, Any] | None = None, host: str | None = None
) -> str:
    """The approval message, re-rendered whole from its state at every change (``host``:
    the executor it is on, when the bot serves many)."""
    needed = approval.get("approvals_needed", 1)
    approved_by = approval.get("approved_by") or []
    state = str(approval.get("state", "pending"))
    people = Names(approval.get("names"))
    lines = [
        f"🔐 <b>Request {esc(on_host(approval.get('id'), host))}</b> (tier {esc(approval.get('tier'))})",
        describe_request(str(approval.get("action")), dict(approval.get("args") or {}), host),
        f"Requested by {people.show(approval.get('requester'))}",
    ]
    if state == "pending":
        count = f"{len(approved_by)} of {needed}" if needed > 1 else "1 approver"
        factor = ", each with a one-time code" if approval.get("code_required") else ""
        lines.append(f"Needs {count}, not the requester{factor} · expires {_time(approval.get('expires_at'))}")
    elif approved_by:
        lines.append("Approved by " + ", ".join(people.show(a) for a in approved_by))
    if state in ("rejected",) and approval.get("decided_by"):
        lines.append(f"{STATE_LINES[state]} by {people.show(approval['decided_by'])}")
    else:
        lines.append(STATE_LINES.get(state, esc(state)))
    if progress is not None and state in ("approved", "running"):
        lines.append(progress_line(progress))
    if outcome is not None:
        lines.append(outcome_text(outcome))
    elif approval.get("result") and state in ("done", "failed", "refused"):
        lines.append(esc(approval["result"]))
    return "\n".join(lines)


def progress_line(progress: dict[str, Any]) -> str:
    stage = esc(progress.get("stage", "working"))
    elapsed = progress.get("elapsed")
    pull = pull_figures(progress) if progress.get("stage") in ("pulling", "pulled") else ""
    return f"… {stage}{pull}" + (f" ({int(elapsed)} s)" if isinstance(elapsed, (int, float)) else "")


def pull_figures(progress: dict[str, Any]) -> str:
    """``: 1 of 3 layers (1 already here), 4.2 of 12 MB``: how far an image pull has come."""
    numbers = [progress.get(k) for k in ("layers", "layers_done", "layers_present", "bytes_done", "bytes_total")]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return ""
    layers, done, present, got, total = (int(n) for n in numbers)  # type: ignore[arg-type]
    here = f" ({present} already here)" if present else ""
    size = f", {human_bytes(got)} of {human_bytes(total)}" if total and got < total else f", {human_bytes(got)}"
    return f": {done} of {layers} layers{here}{size}"


def human_bytes(count: int) -> str:
    """``0 B``, ``812 kB``, ``1.2 MB``, ``3.40 GB`` (decimal units, as Docker shows them)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            value = count / size
            return f"{value:.2f} {unit}" if unit == "GB" else f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} B"


def outcome_text(reply: dict[str, Any]) -> str:
    status = reply.get("status")
    mark = "✅" if status == "done" else "❌"
    return f"{mark} {esc(reply.get('reason', ''))}"


# -- command replies ----------------------------------------------------------------------


def reply_text(action: str, status: str, reason: str, result: dict[str, Any], host: str | None = None) -> str:
    """The answer to a command, from the executor's reply (``host``: the one that gave it,
    when the bot serves many)."""
    if action == "approval.approve" and status in ("done", "pending"):
        return f"✅ {esc(reason)}"  # "approval 1 of 2 counted", "approved; running now"
    if status == "pending":
        approval = result.get("approval") or {}
        return (
            f"⏳ {describe_request(action, dict(approval.get('args') or {}), host)} needs approval "
            f"(request {code(on_host(approval.get('id'), host))}); the approvers have been asked."
        )
    if status != "done":
        return f"❌ {esc(reason)}"
    if action == "restart" and result.get("project"):
        return stack_restart_text(result, reason)
    render = _RENDERERS.get(action)
    if action == "pending":
        return _pending(result, host)
    return render(result) if render is not None else f"✅ {esc(reason)}"


# -- one answer from every host -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostReply:
    """One host's part of a fan-out: its name and its reply, or the line saying it is down."""

    host: str
    status: str = ""
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    down: str | None = None  # "not answering (since 14:02 UTC)"


def grouped_text(action: str, replies: list[HostReply]) -> str:
    """Every host's answer in one message, a section per host in the fleet's order."""
    if action == "whoami":
        return _whoami_everywhere(replies)
    if action == "help":
        return _help_everywhere(replies)
    sections = []
    for r in replies:
        if r.down is not None:
            sections.append(f"<b>{esc(r.host)}</b>: {esc(r.down)}")
            continue
        body = _HOST_RENDERERS.get(action, reply_text)(action, r.status, r.reason, r.result, r.host)
        sections.append(f"<b>{esc(r.host)}</b>\n{body}")
    return "\n\n".join(sections)


def hosts_text(hosts: list[tuple[str, str | None, dict[str, Any] | None, str | None]]) -> str:
    """``/hosts``: (label, configured name, health answer or None, not-answering line) each."""
    lines = ["<b>Executors</b>"]
    for label, configured, health, down in hosts:
        if health is None:
            lines.append(f"<b>{esc(label)}</b>: {esc(down or 'not answering')}")
            continue
        parts = [f"<b>{esc(label)}</b>"]
        if health.get("version"):
            parts.append(f"version {esc(health['version'])}")
        parts.append("answering")
        own = health.get("name")
        if configured is not None and own and own != configured:
            parts.append(f"⚠️ but it calls itself {code(own)}: set its WINGMAN_EXECUTOR_NAME={esc(configured)}")
        lines.append(" · ".join(parts))
    return "\n".join(lines)


def _whoami_everywhere(replies: list[HostReply]) -> str:
    user = next((r.result.get("user_id") for r in replies if r.result.get("user_id") is not None), None)
    lines = [f"You are {code('tg:' + str(user))}:" if user is not None else "Who you are on each host:"]
    for r in replies:
        if r.down is not None:
            lines.append(f"<b>{esc(r.host)}</b>: {esc(r.down)}")
        elif r.status == "done":
            lines.append(f"<b>{esc(r.host)}</b>: {esc(r.result.get('role') or 'no role')}")
        else:
            lines.append(f"<b>{esc(r.host)}</b>: ❌ {esc(r.reason)}")
    return "\n".join(lines)


def _help_everywhere(replies: list[HostReply]) -> str:
    lines = ["<b>What you may do, host by host</b>", "Name a container on one host as <code>name@host</code>; a name on one host only needs no suffix. /hosts lists the hosts."]
    for r in replies:
        if r.down is not None:
            lines.append(f"\n<b>{esc(r.host)}</b>: {esc(r.down)}")
        elif r.status != "done":
            lines.append(f"\n<b>{esc(r.host)}</b>: ❌ {esc(r.reason)}")
        else:
            lines.append(f"\n<b>{esc(r.host)}</b>")
            lines.extend(_command_lines(r.result))
    lines.append("\n" + esc(limit_line()))
    return "\n".join(lines)


def _status_on(action: str, status: str, reason: str, result: dict[str, Any], host: str | None) -> str:
    return status_text(result) if status == "done" else f"❌ {esc(reason)}"


_HOST_RENDERERS: dict[str, Any] = {"status": _status_on}


def _whoami(result: dict[str, Any]) -> str:
    role = result.get("role") or "no role"
    return f"You are {code('tg:' + str(result.get('user_id')))}, {esc(role)}."


def _help(result: dict[str, Any]) -> str:
    lines = ["<b>What you may do here</b>", *_command_lines(result)]
    lines.append(esc(limit_line()))  # the bot's own rule, not the executor's: it is said here
    return "\n".join(lines)


def _command_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for command in result.get("commands", []):
        tier = int(command.get("tier", 0))
        note = " (needs approval)" if tier >= 2 else ""
        lines.append(f"{code(command.get('usage'))} — {esc(command.get('description'))}{note}")
    return lines


def _pending(result: dict[str, Any], host: str | None = None) -> str:
    approvals = result.get("approvals") or []
    if not approvals:
        return "Nothing is waiting for approval."
    lines = ["<b>Waiting for approval</b>"]
    people = Names.merged(a.get("names") for a in approvals)
    for a in approvals:
        lines.append(
            f"{code(on_host(a.get('id'), host))} {describe_request(str(a.get('action')), dict(a.get('args') or {}), host)} "
            f"by {people.show(a.get('requester'))}, expires {_time(a.get('expires_at'))}"
        )
    return "\n".join(lines)


def _audit(result: dict[str, Any]) -> str:
    entries = result.get("entries") or []
    if not entries:
        if result.get("older") or result.get("newer"):
            return "No entries on this side any more; go the other way."
        return "The audit log is empty."
    people = Names(result.get("names"))
    # A page is one message whatever its entries say (its buttons edit it in place): each
    # line gets its share of Telegram's limit, longer ones are cut with "…".
    width = max(60, (TEXT_LIMIT - 200) // len(entries))
    lines = []
    for e in entries:
        target = f" {e.get('target')}" if e.get("target") else ""
        outcome = f" → {e.get('outcome')}" if e.get("outcome") else ""
        line = f"{e.get('seq')} {str(e.get('ts'))[:19]} {people.plain(e.get('actor'))} {e.get('action')}{target} [{e.get('decision')}]{outcome}"
        line = " ".join(line.split())  # an outcome's own line breaks would break the page's lines
        lines.append(esc(line if len(line) <= width else line[: width - 1] + "…"))
    return "<pre>" + "\n".join(lines) + "</pre>"


def _verify(result: dict[str, Any]) -> str:
    mark = "✅" if result.get("ok") else "🚨"
    warnings = [f"\n⚠️ {esc(w)}" for w in result.get("warnings") or []]
    return f"{mark} {esc(result.get('summary'))}" + "".join(warnings)


def _logs(result: dict[str, Any]) -> str:
    lines = result.get("lines") or []
    header = f"<b>{esc(result.get('name'))}</b>, last {len(lines)} lines"
    if not lines:
        return header + ": nothing logged."
    return header + "\n<pre>" + esc("\n".join(lines)) + "</pre>"


def _vm_status(result: dict[str, Any]) -> str:
    vms = result.get("vms") or []
    if not vms:
        return "No VMs to show."
    return "\n".join(esc(vm.get("summary", vm.get("vmid"))) for vm in vms)


_RENDERERS = {
    "vm.status": _vm_status,
    "whoami": _whoami,
    "help": _help,
    "pending": _pending,
    "audit": _audit,
    "verify": _verify,
    "status": status_text,
    "logs": _logs,
}


def fits(text: str) -> bool:
    """Whether Telegram takes ``text`` as one message (it counts the visible characters)."""
    return len(text) <= TEXT_LIMIT or len(html.unescape(_strip_tags(text))) <= TEXT_LIMIT


def _strip_tags(text: str) -> str:
    out, inside = [], False
    for char in text:
        if char == "<":
            inside = True
        elif char == ">" and inside:
            inside = False
        elif not inside:
            out.append(char)
    return "".join(out)


def as_plain(text: str) -> str:
    """The visible text of an HTML message (for sending it as a document)."""
    return html.unescape(_strip_tags(text))
