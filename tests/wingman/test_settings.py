"""The settings layer: defaults, parsing, one-line errors, and agreement with .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import BotSettings
from executor.settings import ExecutorSettings
from process.settings import SettingsError, load_settings
from wingman.settings_doc import env_example, readme_with_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("WINGMAN_", "TELEGRAM_", "PROXMOX_", "RETENTION_", "DOCKER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout


def test_defaults_live_in_the_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINGMAN_DATA_DIR", "/srv/wingman")
    settings = load_settings(ExecutorSettings)
    assert settings.database_url == "sqlite+aiosqlite:////srv/wingman/wingman.db"
    assert settings.audit_key_path == Path("/srv/wingman/audit.key")
    assert settings.export_path == Path("/srv/wingman/audit")
    assert settings.socket_path == Path("/srv/wingman/run/executor.sock")
    assert (settings.read_only, settings.allow_dangerous_ops, settings.proxmox_verify_ssl) == (False, False, True)
    assert settings.admins == [] and settings.container_allowlist == []


@pytest.mark.parametrize(("word", "value"), [("true", True), ("YES", True), ("1", True), ("no", False), ("0", False), ("False", False), ("", False)])
def test_booleans_accept_the_documented_words(monkeypatch: pytest.MonkeyPatch, word: str, value: bool) -> None:
    monkeypatch.setenv("WINGMAN_READ_ONLY", word)
    assert load_settings(ExecutorSettings).read_only is value


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINGMAN_ADMINS", "1, 2,,3,2")
    monkeypatch.setenv("WINGMAN_CONTAINER_ALLOWLIST", "web, app-*")
    monkeypatch.setenv("WINGMAN_TRUSTED_KEYS", "/k/bot.pub,/k/bot-old.pub")
    settings = load_settings(ExecutorSettings)
    assert settings.admins == [1, 2, 3]
    assert settings.container_allowlist == ["web", "app-*"]
    assert settings.trusted_keys == [Path("/k/bot.pub"), Path("/k/bot-old.pub")]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WINGMAN_READ_ONLY", "perhaps", "WINGMAN_READ_ONLY: 'perhaps' is not a boolean: use true/false, 1/0, yes/no or on/off"),
        ("WINGMAN_APPROVERS", "12,bob", "WINGMAN_APPROVERS:"),
        ("WINGMAN_DEPLOY_TIMEOUT_SECONDS", "0", "WINGMAN_DEPLOY_TIMEOUT_SECONDS:"),
        ("RETENTION_AUDIT_DAYS", "soon", "RETENTION_AUDIT_DAYS:"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(ExecutorSettings)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_dotenv_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WINGMAN_ADMINS=5\nWINGMAN_VIEWERS=6\nTELEGRAM_BOT_TOKEN=123:abc\n")
    monkeypatch.setenv("WINGMAN_VIEWERS", "7")
    settings = load_settings(ExecutorSettings)
    assert (settings.admins, settings.viewers) == ([5], [7])
    assert not hasattr(settings, "telegram_bot_token")
    bot = load_settings(BotSettings)
    assert bot.telegram_bot_token is not None and bot.telegram_bot_token.get_secret_value() == "123:abc"
    assert not hasattr(bot, "db_url")


def settings_names(model: type) -> set[str]:
    return {field.validation_alias for field in model.model_fields.values()}


def test_env_example_and_the_readme_table_are_generated_from_the_settings() -> None:
    """README, .env.example and the settings model agree: run `python -m wingman.settings_doc`."""
    assert (ROOT / ".env.example").read_text() == env_example()
    assert readme_with_table((ROOT / "README.md").read_text()) == (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert listed == settings_names(ExecutorSettings) | settings_names(BotSettings)
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), flags=re.MULTILINE))
    assert table == listed
