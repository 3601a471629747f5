"""``wingman check`` and ``wingman health``: real keys, a real SQLite file, the real Docker engine."""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from audit import generate_key_pair
from tests.doubles.telegram import TelegramDouble
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.ops.conftest import Site
from process.version import VERSION
from wingman.doctor import CheckResult, check_main, health, run_checks


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    found: dict[str, CheckResult] = {}
    for result in results:
        found[result.what.split(" (")[0]] = result
    return found


def line_starting(results: list[CheckResult], prefix: str) -> CheckResult:
    matches = [result for result in results if result.what.startswith(prefix)]
    assert len(matches) == 1, [result.line() for result in results]
    return matches[0]


def assert_lines(results: list[CheckResult]) -> None:
    for result in results:
        text = result.line()
        assert "\n" not in text and "Traceback" not in text
        if result.ok:
            assert text.startswith("OK  ")
        else:
            assert text.startswith(f"FAIL {result.what}: ")


async def test_a_good_configuration_is_all_ok(
    site: Site, engine: Any, resources: Resources, images: BuiltImages, make_harness: Any
) -> None:
    name = resources.container(images.ref("v1"), "web", start=False)["Name"].lstrip("/")
    executor = site.executor(container_allowlist=[name, "app-*"])
    running = await make_harness(executor_name="nas", docker_host="unix:///nonexistent/docker.sock")
    bot = site.bot(executors={"nas": running.settings.socket_path})
    results = await run_checks(executor, bot, online=False)
    assert_lines(results)
    assert all(result.ok for result in results), "\n".join(result.line() for result in results)
    assert "key id bot, same public key" in line_starting(results, "bot key trusted").what
    assert "migrated; audit chain at seq" in line_starting(results, "database").what
    docker_line = line_starting(results, "Docker engine").what
    assert "API 1." in docker_line
    assert "1 exact names, all exist" in line_starting(results, "allowlisted containers").what
    assert line_starting(results, "Proxmox not configured").ok
    assert not [r for r in results if "getMe" in r.what]  # only with --online
    assert f"answers as nas, version {VERSION}" in line_starting(results, "executor nas at").what


async def test_one_time_code_secrets_are_counted_and_kept_private(site: Site) -> None:
    from executor import codes

    directory = site.data / codes.DIRECTORY
    off = await run_checks(site.executor(approvers=[2, 3]), None, online=False)
    assert line_starting(off, "one-time codes").ok  # no approval needs a code: dangerous ops are off
    dangerous = site.executor(approvers=[2, 3], allow_dangerous_ops=True)
    short = line_starting(await run_checks(dangerous, None, online=False), "one-time codes")
    assert short.line() == "FAIL one-time codes: 0 of 3 approvers enrolled; approvals that need a code need 2 — wingman approvers enroll <id> for: 1, 2, 3"
    codes.enroll(directory, 1)
    codes.enroll(directory, 2)
    enough = line_starting(await run_checks(dangerous, None, online=False), "one-time codes")
    assert enough.line() == "OK  one-time codes (2 of 3 approvers enrolled, not: 3)"
    (directory / "2").chmod(0o644)
    leaked = line_starting(await run_checks(dangerous, None, online=False), "one-time codes")
    assert not leaked.ok and "readable by others" in leaked.problem and leaked.fix == f"chmod 600 {directory}/*"


async def test_a_trusted_key_from_another_pair_is_found(site: Site) -> None:
    other = site.home / "other"
    generate_key_pair(other, "bot")  # same key id, different key
    results = await run_checks(site.executor(trusted_keys=[other / "bot.pub"]), site.bot(), online=False)
    pair = line_starting(results, "bot key trusted")
    assert not pair.ok and "different key" in pair.problem and "same id 'bot'" in pair.problem
    assert str(site.keys / "bot.key") in pair.fix


async def test_a_bot_key_id_the_executor_does_not_trust_is_found(site: Site) -> None:
    generate_key_pair(site.keys, "bot-new")
    results = await run_checks(site.executor(), site.bot(bot_key=site.keys / "bot-new.key"), online=False)
    pair = line_starting(results, "bot key trusted")
    assert not pair.ok and "'bot-new' is not in WINGMAN_TRUSTED_KEYS" in pair.problem
    assert "add " in pair.fix and "bot-new.pub" in pair.fix


async def test_key_files_readable_by_others_and_missing_keys_fail(site: Site) -> None:
    os.chmod(site.keys / "bot.key", 0o644)
    results = await run_checks(site.executor(trusted_keys=[site.keys / "gone.pub"]), site.bot(), online=False)
    key = line_starting(results, "bot signing key")
    assert not key.ok and "mode 0644" in key.problem and key.fix == f"chmod 600 {site.keys / 'bot.key'}"
    trusted = line_starting(results, "trusted keys")
    assert not trusted.ok and "gone.pub" in trusted.problem


async def test_an_open_socket_directory_fails(site: Site) -> None:
    site.socket_dir.mkdir(parents=True)
    os.chmod(site.socket_dir, 0o777)
    results = await run_checks(site.executor(), None, online=False)
    line = line_starting(results, "socket directory")
    assert not line.ok and "0777" in line.problem and line.fix == f"chmod 0750 {site.socket_dir}"
    os.chmod(site.socket_dir, 0o750)
    assert line_starting(await run_checks(site.executor(), None, online=False), "socket directory").ok


async def test_a_database_not_migrated_or_unreachable_fails(site: Site, tmp_path: Path) -> None:
    from audit import AuditStore

    url = f"sqlite+aiosqlite:///{tmp_path / 'half.db'}"
    store = await AuditStore.open(url)  # the audit tables only, not the executor's
    await store.close()
    line = line_starting(await run_checks(site.executor(db_url=url), None, online=False), "database")
    assert not line.ok and "not migrated" in line.problem and "start the executor once" in line.fix

    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    junk = line_starting(await run_checks(site.executor(db_url=f"sqlite+aiosqlite:///{tmp_path / 'junk.db'}"), None, online=False), "database")
    assert not junk.ok

    bad = line_starting(await run_checks(site.executor(db_url="mysql://x@y/z"), None, online=False), "database")
    assert not bad.ok and "not supported" in bad.problem


async def test_a_missing_allowlisted_container_is_named(site: Site, engine: Any, resources: Resources) -> None:
    missing = resources.name("never-created")
    results = await run_checks(site.executor(container_allowlist=[missing, "glob-*"]), None, online=False)
    line = line_starting(results, "allowlisted containers")
    assert not line.ok and line.problem == f"1 of 1 do not exist: {missing}"


async def test_an_unreachable_docker_engine_is_one_line(site: Site, tmp_path: Path) -> None:
    results = await run_checks(site.executor(docker_host=f"unix://{tmp_path / 'no-docker.sock'}"), None, online=False)
    line = line_starting(results, "Docker engine")
    assert not line.ok and "dockerd" in line.fix
    assert_lines(results)


async def test_proxmox_is_checked_only_when_configured(site: Site) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = await run_checks(site.executor(proxmox_host=f"127.0.0.1:{port}", proxmox_token="a@pve!t=s"), None, online=False)
    line = line_starting(results, "Proxmox at https://127.0.0.1")
    assert not line.ok and "PROXMOX_HOST" in line.fix
    results = await run_checks(site.executor(proxmox_host="127.0.0.1:1"), None, online=False)
    assert "no credentials" in line_starting(results, "Proxmox at").problem


async def test_the_token_form_and_get_me(site: Site) -> None:
    results = await run_checks(None, site.bot(telegram_bot_token="not-a-token"), online=False)
    assert not line_starting(results, "Telegram token").ok
    async with TelegramDouble() as double:
        bot = site.bot(telegram_bot_token=double.token, telegram_api_base=double.base_url)
        results = await run_checks(None, bot, online=True)
        get_me = line_starting(results, "Telegram getMe")
        assert get_me.ok and "the token belongs to @" in get_me.what
    results = await run_checks(None, bot, online=True)  # the double is gone: unreachable
    assert not line_starting(results, "Telegram getMe").ok


async def test_quiet_hours_are_said_and_a_bad_window_is_one_line(site: Site) -> None:
    results = await run_checks(None, site.bot(), online=False)
    assert line_starting(results, "no quiet hours (WINGMAN_QUIET_HOURS unset)").ok
    results = await run_checks(None, site.bot(quiet_hours="23:00-07:00", timezone="Europe/Berlin"), online=False)
    assert line_starting(results, "quiet hours 23:00–07:00 (Europe/Berlin)").ok
    results = await run_checks(None, site.bot(quiet_hours="11pm-7am"), online=False)
    bad = line_starting(results, "quiet hours")
    assert not bad.ok and bad.problem == 'WINGMAN_QUIET_HOURS: "11pm-7am" is not a window HH:MM-HH:MM (e.g. 23:00-07:00)'


async def test_the_way_updates_arrive(site: Site) -> None:
    results = await run_checks(None, site.bot(), online=False)
    assert line_starting(results, "Telegram updates by long polling").ok
    hooked = site.bot(telegram_webhook_url="https://bot.example.test/tg", telegram_webhook_listen="127.0.0.1:8443")
    results = await run_checks(None, hooked, online=False)
    assert line_starting(results, "Telegram webhook at https://bot.example.test/tg, listening on 127.0.0.1:8443").ok
    results = await run_checks(None, site.bot(telegram_webhook_url="http://bot.example.test/tg"), online=False)
    assert_lines(results)
    assert "https://" in line_starting(results, "Telegram webhook").problem


def test_check_main_prints_one_line_per_check_and_exits_1_on_failure(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(site.home)  # no .env from the checkout
    monkeypatch.setenv("WINGMAN_DATA_DIR", str(site.data))
    monkeypatch.setenv("WINGMAN_SOCKET", str(site.socket_dir / "executor.sock"))
    monkeypatch.setenv("WINGMAN_TRUSTED_KEYS", str(site.keys / "bot.pub"))
    monkeypatch.setenv("WINGMAN_BOT_KEY", str(site.keys / "bot.key"))
    monkeypatch.setenv("WINGMAN_ADMINS", "1")
    monkeypatch.setenv("WINGMAN_VM_ALLOWLIST", "not-a-number")  # a settings error: a FAIL line
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert check_main(online=False) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL executor settings: WINGMAN_VM_ALLOWLIST:")
    assert any(line.startswith("FAIL Telegram token: TELEGRAM_BOT_TOKEN: not set") for line in lines)
    assert all(line.startswith(("OK  ", "FAIL ")) for line in lines)

    monkeypatch.setenv("WINGMAN_VM_ALLOWLIST", "100")
    assert check_main(online=False, only="bot") == 1  # still no token
    assert not [line for line in capsys.readouterr().out.splitlines() if "database" in line]


async def test_health_probes(make_harness: Any, site: Site) -> None:
    harness = await make_harness()
    executor = harness.settings
    bot = site.bot(socket=executor.socket_path, bot_key=harness.home / "keys" / "bot.key")
    ok = await health("executor", executor)
    assert ok.ok and "audit seq" in ok.what
    assert (await health("bot", bot)).ok
    assert not (await health("bot", bot.model_copy(update={"telegram_bot_token": None}))).ok
    await harness.stop()
    down = await health("executor", executor)
    assert not down.ok and "does not answer" in down.problem
    assert not (await health("bot", bot)).ok


async def test_every_executor_of_the_bot_is_checked_answering_by_its_name(
    site: Site, make_harness: Any, tmp_path: Path, socket_dir: Path
) -> None:
    nas = await make_harness(executor_name="nas", docker_host="unix:///nonexistent/docker.sock")
    home = await make_harness(
        executor_name="home", data_dir=tmp_path / "home", socket=socket_dir / "home.sock",
        docker_host="unix:///nonexistent/docker.sock",
    )  # fmt: skip
    gone = socket_dir / "gone.sock"
    bot = site.bot(executors={"nas": nas.settings.socket_path, "pve": home.settings.socket_path, "gone": gone})
    results = await run_checks(None, bot, online=False)
    assert_lines(results)
    assert line_starting(results, "executor nas at").ok
    misnamed = line_starting(results, "executor pve at")
    assert misnamed.line() == (
        f"FAIL executor pve at {home.settings.socket_path}: answers as executor 'home', not 'pve': the bot's requests "
        f"for 'pve' would be refused — set WINGMAN_EXECUTOR_NAME=pve on that host, or list it as "
        f"home={home.settings.socket_path} in WINGMAN_EXECUTORS"
    )
    down = line_starting(results, "executor gone at")
    assert not down.ok and "does not answer" in down.problem and down.fix == "start it, or its forward (systemctl status wingman-forward@gone)"
    # The one executor of a single-host bot answers by whatever name it has.
    alone = await run_checks(None, site.bot(socket=home.settings.socket_path), online=False)
    assert f"answers as home, version {VERSION}" in line_starting(alone, "executor (the only one)").what


async def test_registry_credentials_are_named_kept_private_and_a_bad_file_is_one_line(site: Site, tmp_path: Path) -> None:
    config = tmp_path / "docker-config.json"
    secret = "Registry-Pa55-in-doctor"
    auth = base64.b64encode(f"deployer:{secret}".encode()).decode()
    config.write_text(json.dumps({"auths": {"registry.example:5000": {"auth": auth}}}))
    os.chmod(config, 0o600)
    line = line_starting(await run_checks(site.executor(registry_auth=config), None, online=False), "registry credentials")
    assert line.ok and line.what == f"registry credentials ({config}: 1 registries: registry.example:5000)"
    os.chmod(config, 0o644)
    line = line_starting(await run_checks(site.executor(registry_auth=config), None, online=False), "registry credentials")
    assert not line.ok and "mode 0644" in line.problem and line.fix == f"chmod 600 {config}"
    config.write_text("{not json")
    results = await run_checks(site.executor(registry_auth=config), None, online=False)
    assert_lines(results)
    line = line_starting(results, "registry credentials")
    assert not line.ok and "is not JSON" in line.problem
    gone = line_starting(await run_checks(site.executor(registry_auth=tmp_path / "gone.json"), None, online=False), "registry credentials")
    assert not gone.ok and "does not exist" in gone.problem
    assert all(secret not in r.line() for r in results)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"status": "ok", "audit_seq": 7}, "answers, but says no name: it is older than this bot"),
        ({"status": "ok", "name": "nas", "version": "0.0.9", "audit_seq": 7}, f"runs version 0.0.9, the bot {VERSION}"),
    ],
    ids=["older executor", "other version"],
)
async def test_an_executor_of_another_version_is_one_line_saying_upgrade_both(
    site: Site, socket_dir: Path, answer: dict[str, Any], problem: str
) -> None:
    """Another release's executor, stood in for by what it answers on ``GET /v1/health``."""
    from aiohttp import web

    async def health_answer(request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/v1/health", health_answer)
    runner = web.AppRunner(app)
    await runner.setup()
    socket_dir.mkdir(parents=True, exist_ok=True)
    path = socket_dir / "old.sock"
    await web.UnixSite(runner, str(path)).start()
    try:
        results = await run_checks(None, site.bot(executors={"nas": path}), online=False)
    finally:
        await runner.cleanup()
    line = line_starting(results, "executor nas at")
    assert not line.ok and line.problem == problem and line.fix == "upgrade the bot and the executor together"
