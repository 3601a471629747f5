"""ARCHITECTURE.md names real things: every file, folder, module and type it names exists.

The map names what to search for instead of linking it; this keeps those names from
rotting when code moves.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "ARCHITECTURE.md"
PACKAGES = ("process", "policy", "audit", "scheduler", "executor", "bot", "wingman")
SEARCHED = (*PACKAGES, "tests")


def _named() -> list[str]:
    return re.findall(r"`([^`\n]+)`", MAP.read_text(encoding="utf-8"))


def _sources() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for package in SEARCHED for path in (ROOT / package).rglob("*.py")
    )


def problems(names: list[str], sources: str) -> list[str]:
    found: list[str] = []
    for name in names:
        head = name.split(" ")[0].split("(")[0].rstrip(":,")
        if head.startswith(("../", "/")) or " " in name and not head.endswith((".py", "/")):
            continue  # a path outside the repository, a chat command, a command line, words
        if "/" in head or head.endswith(".py"):
            bare = head.rstrip("/")
            candidates = [ROOT / bare, *(p for top in SEARCHED for p in (ROOT / top).rglob(bare) if "/" not in bare)]
            if not any(path.exists() for path in candidates):
                found.append(f"no file or folder {head}")
        elif re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", head) and head.split(".")[0] in PACKAGES:
            module, _, attribute = head.rpartition(".")
            as_module = ROOT / Path(*head.split("."))
            if not (as_module.with_suffix(".py").exists() or (as_module / "__init__.py").exists()):
                parent = ROOT / Path(*module.split("."))
                if not (parent.with_suffix(".py").exists() or (parent / "__init__.py").exists()):
                    found.append(f"no module {head}")
                elif not re.search(rf"^\s*(?:async def|def|class) {attribute}\b|^{attribute}\b.*=", sources, re.M):
                    found.append(f"no {attribute} in {module}")
        elif re.fullmatch(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*", head):  # a type: AuditStore, Daemon
            if not re.search(rf"^\s*(?:async def|def|class) {head}\b|^{head}\b\s*[:=]", sources, re.M):
                found.append(f"nothing named {head}")
    return found


def test_the_map_names_only_what_exists() -> None:
    assert problems(_named(), _sources()) == []


def test_the_check_finds_a_name_that_does_not_exist() -> None:
    planted = ["executor/nowhere.py", "executor.nowhere", "NoSuchType", "executor.service.no_such_function"]
    assert len(problems(planted, _sources())) == len(planted)
