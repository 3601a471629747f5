"""What of a client's request the audit log can record, and how it shows there.

The executor refuses at the edge a catalogue request whose arguments or chat the audit
(and an approval's binding) cannot hold exactly (``unrecordable``), and writes every
request's arguments and target in the bounded, canonical-JSON form these give. Pure
functions: no I/O, nothing of the executor's state.
"""

from __future__ import annotations

from typing import Any

from audit.canonical import CanonicalError, canonical_json, encode_text
from executor.protocol import Request


def safe_text(value: object) -> str:
    """Client-supplied text as the audit can hold it: bounded, no NUL, no lone surrogates."""
    text = str(value)[:200].replace("\x00", "\\0")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_target(args: dict[str, Any]) -> str | None:
    target = args.get("target")
    return None if target is None else safe_text(target)


def unrecordable(request: Request) -> str | None:
    """What in a catalogue request's arguments or chat the audit log (and an approval's
    binding) cannot record exactly, as one line naming it (see ``audit.canonical``)."""
    for part, values in (("args", request.args), ("chat", request.chat)):
        for name, value in values.items():
            shown = f"{part}.{safe_text(name)[:40]}"
            problem = unrecordable_value(name) or unrecordable_value(value)
            if problem is not None:
                return f"{shown} {problem}"
    return None


def unrecordable_value(value: object) -> str | None:
    if isinstance(value, float):
        return f"holds a floating-point number ({value!r}), which the audit log cannot record exactly: send a whole number or text"
    if isinstance(value, str):
        try:
            encode_text(value)
        except CanonicalError:
            return "holds a lone surrogate, which is not valid Unicode: send valid UTF-8 text"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unrecordable_value(key) or unrecordable_value(item)
            if problem is not None:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = unrecordable_value(item)
            if problem is not None:
                return problem
        return None
    try:
        canonical_json(value)
    except CanonicalError as exc:
        return f"cannot be recorded: {exc}"
    return None


def audit_params(args: dict[str, Any]) -> dict[str, Any]:
    """The request's arguments as the audit can hold them (no floats, bounded size, no one-time code)."""
    if "code" in args:
        args = {k: v for k, v in args.items() if k != "code"}
    try:
        text = canonical_json(args)
    except CanonicalError:
        return {"unencodable_args": repr(args)[:500]}
    if len(text) > 4000:
        return {"args_truncated": text[:4000]}
    return args
