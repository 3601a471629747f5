"""``.env.example`` and the README's settings table, both generated from the settings models.

Run ``python -m wingman.settings_doc`` after changing a setting: it rewrites both files.
A test fails when either differs from what the models say.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from bot.settings import BotSettings
from executor.settings import ExecutorSettings
from process.settings import ProcessSettings

ROOT = Path(__file__).resolve().parent.parent
TABLE_START, TABLE_END = "<!-- settings:start -->", "<!-- settings:end -->"
HEADER = """\
# Wingman settings (generated from the settings models by `python -m wingman.settings_doc`).
# Copy to .env (read from the working directory) or set them in the environment, which
# wins over .env. Booleans take true/false, 1/0, yes/no or on/off; unset is false unless a default
# says otherwise. Lists are comma-separated. Each process reads only its own settings.
"""


def _fields() -> list[tuple[str, FieldInfo, str]]:
    """Every setting once, in declaration order, with the process that reads it."""
    seen: dict[str, tuple[FieldInfo, str]] = {}
    for model, process in ((ProcessSettings, "both"), (BotSettings, "bot"), (ExecutorSettings, "executor")):
        for info in model.model_fields.values():
            seen.setdefault(str(info.validation_alias), (info, process))
    return [(name, info, process) for name, (info, process) in seen.items()]


def _extra(info: FieldInfo) -> dict[str, Any]:
    return dict(info.json_schema_extra or {})  # type: ignore[arg-type]


def _default(info: FieldInfo) -> str | None:
    if info.default_factory is not None:
        return ""
    value = info.default
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path) and not value.is_absolute():
        return f"./{value}"
    return str(value)


def env_example() -> str:
    lines = [HEADER.rstrip()]
    group = None
    for name, info, _process in _fields():
        extra = _extra(info)
        if extra["group"] != group:
            group = extra["group"]
            lines += ["", f"# --- {group} " + "-" * max(3, 84 - len(group)), ""]
        lines.append(f"# {info.description}")
        default = _default(info)
        if default is None:
            lines.append(f"# {name}={extra.get('example', '')}")
        else:
            lines.append(f"{name}={default}")
    return "\n".join(lines).rstrip() + "\n"


def readme_table() -> str:
    rows = ["| setting | process | default | what it does |", "| --- | --- | --- | --- |"]
    for name, info, process in _fields():
        default = _default(info)
        shown = "—" if not default else f"`{default}`"
        rows.append(f"| `{name}` | {process} | {shown} | {info.description} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    before, _, rest = readme.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    return f"{before}{TABLE_START}\n{readme_table()}\n{TABLE_END}{after}"


def main() -> int:
    (ROOT / ".env.example").write_text(env_example())
    readme = ROOT / "README.md"
    text = readme.read_text()
    if TABLE_START not in text:
        print(f"README.md has no {TABLE_START} … {TABLE_END} block", file=sys.stderr)
        return 1
    readme.write_text(readme_with_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
