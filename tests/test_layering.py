"""The direction of imports between our packages, read from the source with ``ast``.

Layers, bottom to top (a package imports only from layers below its own)::

    process      the settings base and the lifecycle helper; imports nothing of ours
    policy       pure: data in, decision out
    audit        the tamper-evident chain; knows nothing of Telegram or Docker
    scheduler    the scheduled jobs; what they need of the executor is handed in
    executor | bot    siblings: the bot enters the executor only by its doors, the client
                 and the wire protocol, and through them reaches neither Docker, proxmoxer
                 nor SQLAlchemy
    wingman      the command on top of everything
    benchmarks

No circle between modules either: two modules that need each other are one in disguise.

Every import counts, wherever it is written: at the top, inside a function (a lazy import
is still a dependency) or under ``TYPE_CHECKING``. The bot's reach is followed through every
module of ours it imports, transitively. The checks run on a small planted tree too, so a
check that cannot fail would show here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("process",),
    ("policy",),
    ("audit",),
    ("scheduler",),
    ("executor", "bot"),
    ("wingman",),
    ("benchmarks",),
)
# The only modules of a sibling a package may import (and all that they import in turn).
DOORS: dict[str, tuple[str, ...]] = {"bot": ("executor.client", "executor.protocol")}
# What the bot must never load, however indirectly.
BOT_NEVER = ("docker", "proxmoxer", "sqlalchemy")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, e.g. "scheduler.jobs"
    target: str  # what it imports, e.g. "executor.service"
    where: str  # "scheduler/jobs.py:38"


def module_files(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports_in(module: str, path: Path, root: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):  # every node: imports in functions and under TYPE_CHECKING too
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield Import(module, source, where)
            for alias in node.names:  # `from executor import codes` imports a module
                if f"{source}.{alias.name}" in known:
                    yield Import(module, f"{source}.{alias.name}", where)


def imports(root: Path, packages: Sequence[str]) -> list[Import]:
    known = module_files(root, packages)
    return [found for module, path in known.items() for found in _imports_in(module, path, root, known)]


def _loaded(target: str, known: dict[str, Path]) -> list[str]:
    """The modules of ours that importing ``target`` runs: it and the packages above it."""
    parts = target.split(".")
    return [name for name in (".".join(parts[:n]) for n in range(1, len(parts) + 1)) if name in known]


def layering_violations(root: Path, layers: Sequence[Sequence[str]] = LAYERS, doors: dict[str, tuple[str, ...]] = DOORS) -> list[str]:
    """One line per import that runs sideways or up: ``<file>:<line>: a imports b (...)``."""
    level = {package: n for n, siblings in enumerate(layers) for package in siblings}
    problems = []
    for found in imports(root, list(level)):
        here, there = found.module.split(".")[0], found.target.split(".")[0]
        if there not in level or there == here:
            continue
        if level[there] > level[here]:
            problems.append(f"{found.where}: {here} imports {found.target}, from a higher layer ({there})")
        elif level[there] == level[here] and not any(
            found.target == door or found.target == door.rpartition(".")[0] for door in doors.get(here, ())
        ):
            allowed = ", ".join(doors.get(here, ())) or "nothing"
            problems.append(f"{found.where}: {here} imports {found.target} from its sibling {there} (allowed: {allowed})")
    return problems


def reach(root: Path, package: str, packages: Sequence[str]) -> dict[str, str]:
    """Every module (ours or not) that importing ``package`` can load, each with the chain of
    imports that gets there (``bot.app -> executor.client -> ...``)."""
    known = module_files(root, packages)
    edges: dict[str, list[str]] = {}
    for found in imports(root, packages):
        edges.setdefault(found.module, []).append(found.target)
    paths = {module: module for module in known if module.split(".")[0] == package}
    todo = list(paths)
    while todo:
        module = todo.pop()
        for target in edges.get(module, []):
            for step in _loaded(target, known) or [target.split(".")[0]]:  # not ours: by its top name
                if step not in paths:
                    paths[step] = f"{paths[module]} -> {step}"
                    if step in known:
                        todo.append(step)
    return paths


def bot_violations(root: Path, packages: Sequence[str] = tuple(p for layer in LAYERS for p in layer)) -> list[str]:
    """What the bot reaches that it must not: Docker, proxmoxer, SQLAlchemy, or any executor
    module but its doors (and the ``executor`` package itself, which the doors load)."""
    allowed = {"executor", *DOORS["bot"]}
    problems = []
    for module, path in sorted(reach(root, "bot", packages).items()):
        top = module.split(".")[0]
        if top in BOT_NEVER:
            problems.append(f"the bot reaches {top}: {path}")
        elif top == "executor" and module not in allowed:
            problems.append(f"the bot reaches {module}: {path}")
    return problems


def module_cycles(root: Path, packages: Sequence[str]) -> list[list[str]]:
    """Each circle of modules importing each other (Tarjan's strongly connected components).

    An import of a module's own package (``from policy import names`` in ``policy.decide``)
    is not an edge to the package's ``__init__``: it reaches the sibling it names.
    """
    known = module_files(root, packages)
    edges: dict[str, set[str]] = {}
    for found in imports(root, packages):
        loaded = _loaded(found.target, known)
        target = loaded[-1] if loaded else None
        if target is None or target == found.module or found.module.startswith(f"{target}."):
            continue
        edges.setdefault(found.module, set()).add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(known):
        if module not in index:
            visit(module)
    return sorted(cycles)


# -- the real tree ----------------------------------------------------------------------------


def test_no_package_imports_a_higher_layer_or_a_sibling() -> None:
    assert layering_violations(ROOT) == []


def test_the_bot_reaches_neither_docker_proxmoxer_sqlalchemy_nor_executor_internals() -> None:
    assert bot_violations(ROOT) == []
    reached = reach(ROOT, "bot", [p for layer in LAYERS for p in layer])
    assert "executor.client" in reached and "aiogram" in reached  # the walk does get somewhere


def test_no_circle_between_modules() -> None:
    assert module_cycles(ROOT, [p for layer in LAYERS for p in layer]) == []


def test_every_layered_package_exists() -> None:
    for package in (p for layer in LAYERS for p in layer):
        assert (ROOT / package).is_dir(), f"LAYERS names {package}, which is not a directory of the repository"


# -- a planted tree: the checks do fail -------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for layer in LAYERS:
        for package in layer:
            (root / package).mkdir(exist_ok=True)
            (root / package / "__init__.py").touch()
    return root


def test_a_planted_upward_import_is_found_even_lazy_or_for_type_checking(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "scheduler/jobs.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from executor.service import Executor\n",
            "policy/decide.py": "def decide():\n    import audit.store\n",
            "process/settings.py": "from wingman import cli\n",
            "wingman/cli.py": "",
            "audit/store.py": "from . import canonical\nimport sqlalchemy\n",
            "audit/canonical.py": "",
            "executor/service.py": "from process.settings import load\nfrom audit import store\n",
        },
    )
    assert sorted(layering_violations(root)) == [
        "policy/decide.py:2: policy imports audit.store, from a higher layer (audit)",
        "process/settings.py:1: process imports wingman, from a higher layer (wingman)",
        "process/settings.py:1: process imports wingman.cli, from a higher layer (wingman)",
        "scheduler/jobs.py:3: scheduler imports executor.service, from a higher layer (executor)",
    ]


def test_a_planted_sideways_import_is_found(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "bot/app.py": "from executor.client import Client\nfrom executor import protocol\n",
            "bot/handlers.py": "def run():\n    from executor.service import Executor\n",
            "executor/client.py": "",
            "executor/protocol.py": "",
            "executor/service.py": "",
            "executor/metrics.py": "import bot.formatting\n",
        },
    )
    assert sorted(layering_violations(root)) == [
        "bot/handlers.py:2: bot imports executor.service from its sibling executor (allowed: executor.client, executor.protocol)",
        "executor/metrics.py:1: executor imports bot.formatting from its sibling bot (allowed: nothing)",
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # through a door that a later change made lead inside
            {
                "bot/app.py": "from executor.client import Client\n",
                "executor/client.py": "from executor.errors import Refused\n",
                "executor/errors.py": "from executor.docker_driver import DockerError\n",
                "executor/docker_driver.py": "import docker.errors\n",
            },
            [
                "the bot reaches docker: bot.app -> executor.client -> executor.errors -> executor.docker_driver -> docker",
                "the bot reaches executor.docker_driver: bot.app -> executor.client -> executor.errors -> executor.docker_driver",
                "the bot reaches executor.errors: bot.app -> executor.client -> executor.errors",
            ],
        ),
        (  # through a package's __init__, and a lazy import in a lower layer
            {
                "bot/app.py": "import audit.signing\n",
                "audit/__init__.py": "def __getattr__(name):\n    from audit.store import AuditStore\n",
                "audit/signing.py": "",
                "audit/store.py": "from sqlalchemy.ext.asyncio import AsyncEngine\nimport proxmoxer\n",
            },
            [
                "the bot reaches proxmoxer: bot.app -> audit -> audit.store -> proxmoxer",
                "the bot reaches sqlalchemy: bot.app -> audit -> audit.store -> sqlalchemy",
            ],
        ),
    ],
)
def test_what_the_bot_must_not_reach_is_found_transitively(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    root = plant(tmp_path, files)
    assert bot_violations(root) == expected


def test_a_planted_circle_is_found_even_through_a_lazy_import(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "executor/actions.py": "from executor.service import Executor\n",
            "executor/service.py": "def handlers():\n    from executor import actions\n",
            "executor/codes.py": "from executor import protocol\n",  # a sibling, no circle
            "executor/protocol.py": "",
            "policy/__init__.py": "from policy.decide import decide\n",
            "policy/decide.py": "from policy import names\n",  # re-exported by its package: no circle
            "policy/names.py": "",
        },
    )
    assert module_cycles(root, [p for layer in LAYERS for p in layer]) == [["executor.actions", "executor.service"]]
