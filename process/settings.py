"""What every process's settings model is built from: one typed model per process, read
once at start-up, passed down.

Settings come from the environment and from ``.env`` in the working directory (the
environment wins). Each process reads only its own, from a model that lives with it and
derives from :class:`ProcessSettings` here: ``executor.settings.ExecutorSettings`` never sees
``TELEGRAM_*``, ``bot.settings.BotSettings`` never sees the executor's database or keys.
Here: the settings both read, the parsing of flags and lists, :func:`setting` (which also
documents a field for ``.env.example`` and the README, see ``wingman.settings_doc``) and
:func:`load_settings`, which turns a bad value into one :class:`SettingsError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

FLAG_WORDS = {
    "true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False, "": False,
}  # fmt: skip


class SettingsError(Exception):
    """A setting that is missing or wrong; ``str()`` is ``<SETTING>: <reason>``."""


def _flag(value: Any) -> Any:
    if value is None:
        return False
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in FLAG_WORDS:
            raise ValueError(f"{value!r} is not a boolean: use true/false, 1/0, yes/no or on/off")
        return FLAG_WORDS[word]
    return value


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _no_duplicates(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


Flag = Annotated[bool, BeforeValidator(_flag)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list), AfterValidator(_no_duplicates)]
UserIds = Annotated[list[int], NoDecode, BeforeValidator(_comma_list), AfterValidator(_no_duplicates)]
PathList = Annotated[list[Path], NoDecode, BeforeValidator(_comma_list)]


def setting(default: Any, name: str, doc: str, *, group: str, example: str | None = None, **limits: Any) -> Any:
    """A field read from ``name``; ``doc``, ``group`` and ``example`` make .env.example and the
    README's table (see wingman.settings_doc), so the three cannot disagree."""
    extra = {"group": group, **({"example": example} if example is not None else {})}
    if isinstance(default, list):
        return Field(default_factory=list, validation_alias=name, description=doc, json_schema_extra=extra, **limits)
    return Field(default, validation_alias=name, description=doc, json_schema_extra=extra, **limits)


BOTH = "Both processes"


class ProcessSettings(BaseSettings):
    """What every process reads: where the data lives and where the executor's socket is."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, frozen=True)

    data_dir: Path = setting(Path("./data"), "WINGMAN_DATA_DIR", "Where Wingman keeps its SQLite database, generated keys and audit files.", group=BOTH)
    socket: Path | None = setting(None, "WINGMAN_SOCKET", "The executor's Unix socket. Default: <WINGMAN_DATA_DIR>/run/executor.sock", group=BOTH, example="/run/wingman/executor.sock")
    timezone: str | None = setting(None, "WINGMAN_TIMEZONE", "Time zone (an IANA name) of the executor's job times and of the bot's WINGMAN_QUIET_HOURS. Default: the host's.", group=BOTH, example="Europe/Berlin")

    @property
    def socket_path(self) -> Path:
        """The executor's Unix socket (default: ``<data dir>/run/executor.sock``)."""
        return self.socket or self.data_dir / "run" / "executor.sock"


S = TypeVar("S", bound=ProcessSettings)


def load_settings(model: type[S], **overrides: Any) -> S:
    """Read ``model`` from the environment and ``.env``; a bad value raises ``SettingsError``."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else model.__name__
        field = model.model_fields.get(name)
        if field is not None and isinstance(field.validation_alias, str):
            name = field.validation_alias
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}") from None
