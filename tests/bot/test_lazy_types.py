"""aiogram imported through bot.lazy_types: types built on first use, and built the same.

Each check runs in a fresh interpreter, because an interpreter imports aiogram once: one
imports it as the bot does (``import bot``), one as it comes (every type built at import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Every aiogram type and method, built, as its JSON schema, and one Update validated and
# dumped again.
SCHEMAS = """
import json, sys
{first}
import aiogram.methods, aiogram.types, pydantic
from pydantic import BaseModel
out = {{}}
for module in (aiogram.types, aiogram.methods):
    for name in module.__all__:
        model = getattr(module, name)
        if isinstance(model, type) and issubclass(model, BaseModel) and not getattr(model, "__parameters__", ()):
            try:
                out[name] = model.model_json_schema()
            except pydantic.errors.PydanticInvalidForJsonSchema:  # a field of a type JSON cannot show
                out[name] = repr(model.model_fields)
update = aiogram.types.Update.model_validate({{
    "update_id": 7,
    "message": {{"message_id": 1, "date": 0, "chat": {{"id": -100, "type": "supergroup", "title": "ops"}},
                "from": {{"id": 4, "is_bot": False, "first_name": "Op"}}, "text": "/deploy web nginx:1.27",
                "entities": [{{"type": "bot_command", "offset": 0, "length": 7}}]}},
}})
out["update"] = update.model_dump(mode="json", exclude_unset=True)
json.dump(out, sys.stdout, sort_keys=True)
"""


def run(*codes: str) -> list[str]:
    """Each code in an interpreter of its own, side by side; their outputs."""
    children = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for code in codes
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


def test_importing_the_bot_leaves_aiogram_types_unbuilt_and_pydantic_as_it_was() -> None:
    (out,) = run(
        "import bot, aiogram.types, pydantic\n"
        "from pydantic import BaseModel\n"
        "print(aiogram.types.Message.__pydantic_complete__, aiogram.types.Update.__pydantic_complete__,"
        " BaseModel.model_rebuild.__func__ is pydantic.main.BaseModel.__dict__['model_rebuild'].__func__,"
        " BaseModel.model_rebuild.__func__.__module__)"
    )
    assert out.split() == ["False", "False", "True", "pydantic.main"]


def test_every_type_and_method_builds_as_aiogram_builds_it() -> None:
    lazy, eager = map(json.loads, run(SCHEMAS.format(first="import bot  # aiogram as the bot imports it"), SCHEMAS.format(first="")))
    assert len(lazy) > 300  # every type and method was reached
    assert lazy.keys() == eager.keys()
    different = [name for name in eager if lazy[name] != eager[name]]
    assert not different, f"built differently: {different[:10]}"
    assert lazy["update"]["message"]["text"] == "/deploy web nginx:1.27"
