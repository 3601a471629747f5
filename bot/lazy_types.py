"""Import aiogram with its Telegram types built when first used, not all at import.

``aiogram.types`` ends by calling ``model_rebuild`` on each of its ~300 pydantic models, and
each builds a validator that embeds the whole tree of types below it (aiogram/aiogram#1513):
about 100 MB of the bot's memory, for the handful of types it ever validates (Update,
Message, CallbackQuery, User, BotCommand...). The models are declared ``defer_build=True``;
that loop is what builds them.

``import_aiogram()`` imports aiogram while ``BaseModel.model_rebuild`` only records the
namespace aiogram passes it to resolve its types' forward references, then adds those names
to the globals of aiogram's modules (which import them only for type checkers). pydantic
builds a deferred model the first time it is used, resolving its names in its module's
globals, so a type validates exactly as if aiogram had built it, whether it is reached on
its own, inside a method or inside a generic ``Response[...]``. The original
``model_rebuild`` is back before the import returns.

``tests/bot/test_lazy_types.py`` builds and exercises every aiogram type and method this
way, so a change in aiogram or pydantic that breaks it fails there, not in a chat.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel


def import_aiogram() -> None:
    """Import aiogram (once); its types build on first use. A no-op if it is imported already."""
    if "aiogram.types" in sys.modules:
        return
    eager = BaseModel.__dict__["model_rebuild"]
    recorded: dict[str, Any] = {}

    def record_namespace(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        types_namespace = kwargs.get("_types_namespace")
        if types_namespace is None or not cls.__module__.startswith("aiogram."):
            kwargs["_parent_namespace_depth"] = kwargs.get("_parent_namespace_depth", 2) + 1
            return eager.__func__(cls, **kwargs)  # type: ignore[no-any-return]
        recorded.update(types_namespace)
        return None

    BaseModel.model_rebuild = classmethod(record_namespace)  # type: ignore[assignment,method-assign]
    try:
        import aiogram  # noqa: F401  (its methods, the Bot, the types)
    finally:
        BaseModel.model_rebuild = eager  # type: ignore[method-assign]
    # pydantic resolves a model's forward references in its module's globals first, however
    # the model is reached (inside a method, a generic Response[...]); aiogram's modules
    # import those names only for type checkers. Give them what aiogram's namespace holds.
    for name, module in list(sys.modules.items()):
        if name.startswith("aiogram.") and module is not None:
            namespace = vars(module)
            for key, value in recorded.items():
                namespace.setdefault(key, value)
