"""The settings layer: one typed model per process, read once at start-up, passed down.

Settings come from the environment and from ``.env`` in the working directory (the
environment wins). Each process reads only its own: :class:`ExecutorSettings` never sees
``TELEGRAM_*``, :class:`BotSettings` never sees the executor's database or keys. Every
setting is listed, commented, in ``.env.example``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

FLAG_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


class SettingsError(Exception):
    """A setting that is missing or wrong; ``str()`` is ``<SETTING>: <reason>``."""


def _flag(value: Any) -> Any:
    if value is None:
        return False
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in FLAG_WORDS:
            raise ValueError(f"{value!r} is not a boolean: use true/false, 1/0 or yes/no")
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


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, frozen=True)

    data_dir: Path = Field(Path("./data"), validation_alias="WINGMAN_DATA_DIR")
    socket: Path | None = Field(None, validation_alias="WINGMAN_SOCKET")

    @property
    def socket_path(self) -> Path:
        """The executor's Unix socket (default: ``<data dir>/run/executor.sock``)."""
        return self.socket or self.data_dir / "run" / "executor.sock"


class ExecutorSettings(_Settings):
    """Everything ``wingman executor`` (and the offline ``wingman audit`` commands) reads."""

    db_url: str | None = Field(None, validation_alias="WINGMAN_DB_URL")
    allowed_uids: UserIds = Field(default_factory=list, validation_alias="WINGMAN_ALLOWED_UIDS")
    trusted_keys: PathList = Field(default_factory=list, validation_alias="WINGMAN_TRUSTED_KEYS")
    audit_key: Path | None = Field(None, validation_alias="WINGMAN_AUDIT_KEY")
    audit_export_path: Path | None = Field(None, validation_alias="WINGMAN_AUDIT_EXPORT_PATH")
    deploy_timeout_seconds: int = Field(60, gt=0, le=3600, validation_alias="WINGMAN_DEPLOY_TIMEOUT_SECONDS")
    approval_ttl_seconds: int = Field(900, gt=0, le=7 * 86400, validation_alias="WINGMAN_APPROVAL_TTL_SECONDS")
    policy: Path | None = Field(None, validation_alias="WINGMAN_POLICY")
    admins: UserIds = Field(default_factory=list, validation_alias="WINGMAN_ADMINS")
    approvers: UserIds = Field(default_factory=list, validation_alias="WINGMAN_APPROVERS")
    operators: UserIds = Field(default_factory=list, validation_alias="WINGMAN_OPERATORS")
    viewers: UserIds = Field(default_factory=list, validation_alias="WINGMAN_VIEWERS")
    image_allowlist: CommaList = Field(default_factory=list, validation_alias="WINGMAN_IMAGE_ALLOWLIST")
    container_allowlist: CommaList = Field(default_factory=list, validation_alias="WINGMAN_CONTAINER_ALLOWLIST")
    vm_allowlist: UserIds = Field(default_factory=list, validation_alias="WINGMAN_VM_ALLOWLIST")
    node_allowlist: CommaList = Field(default_factory=list, validation_alias="WINGMAN_NODE_ALLOWLIST")
    read_only: Flag = Field(False, validation_alias="WINGMAN_READ_ONLY")
    allow_dangerous_ops: Flag = Field(False, validation_alias="WINGMAN_ALLOW_DANGEROUS_OPS")
    retention_audit_days: int = Field(90, ge=1, validation_alias="RETENTION_AUDIT_DAYS")
    # The scheduled jobs (scheduler.ScheduleConfig checks the times and the zone).
    verify_at: str = Field("02:30", validation_alias="WINGMAN_VERIFY_AT")
    checkpoint_at: str = Field("00:05", validation_alias="WINGMAN_CHECKPOINT_AT")
    retention_at: str = Field("03:00", validation_alias="WINGMAN_RETENTION_AT")
    report_at: str = Field("08:00", validation_alias="WINGMAN_REPORT_AT")
    weekly_report_day: str = Field("mon", validation_alias="WINGMAN_WEEKLY_REPORT_DAY")
    timezone: str | None = Field(None, validation_alias="WINGMAN_TIMEZONE")
    retention_executions_days: int = Field(7, ge=1, validation_alias="RETENTION_EXECUTIONS_DAYS")
    retention_failed_days: int = Field(14, ge=1, validation_alias="RETENTION_FAILED_DAYS")
    retention_other_days: int = Field(30, ge=1, validation_alias="RETENTION_OTHER_DAYS")
    retention_notifications_days: int = Field(30, ge=1, validation_alias="RETENTION_NOTIFICATIONS_DAYS")
    retention_approvals_days: int = Field(30, ge=1, validation_alias="RETENTION_APPROVALS_DAYS")
    retention_dry_run: Flag = Field(False, validation_alias="RETENTION_DRY_RUN")
    docker_host: str | None = Field(None, validation_alias="DOCKER_HOST")
    proxmox_host: str | None = Field(None, validation_alias="PROXMOX_HOST")
    proxmox_token: SecretStr | None = Field(None, validation_alias="PROXMOX_TOKEN")
    proxmox_user: str | None = Field(None, validation_alias="PROXMOX_USER")
    proxmox_password: SecretStr | None = Field(None, validation_alias="PROXMOX_PASSWORD")
    # Issue 7 makes certificate checking the default; DESIGN's "unset means false" yields here.
    proxmox_verify_ssl: Flag = Field(True, validation_alias="PROXMOX_VERIFY_SSL")

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.data_dir / 'wingman.db'}"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key or self.data_dir / "audit.key"

    @property
    def export_path(self) -> Path:
        return self.audit_export_path or self.data_dir / "audit"


class BotSettings(_Settings):
    """Everything ``wingman bot`` reads: the token, the chat, its signing key, the socket."""

    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base: str | None = Field(None, validation_alias="TELEGRAM_API_BASE")
    chat_id: int | None = Field(None, validation_alias="WINGMAN_CHAT_ID")
    bot_key: Path | None = Field(None, validation_alias="WINGMAN_BOT_KEY")


S = TypeVar("S", bound=_Settings)


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
