"""The configuration doctor (``wingman check``) and the container health probes (``wingman health``).

``wingman check`` reads the same settings as the daemons and prints one line per check::

    OK  <what>
    FAIL <what>: <problem> — <fix>

It checks the keys (the bot's private key against the executor's trusted public keys:
same key id, same public key), the socket directory, every executor the bot is configured
for (``WINGMAN_EXECUTORS``, or the one at ``WINGMAN_SOCKET``: it answers, under the name
the bot lists it by, at the bot's version), the database (reachable and
migrated), the policy, the approvers' one-time code secrets, the Docker engine and its API version, the allowlisted containers
that do not exist, Proxmox (only when configured, with a short timeout) and the Telegram
token (its form; ``getMe`` only with ``--online``). It exits 0 only when every line is OK.
A check that crashes is a FAIL line, never a traceback.

``wingman health executor`` asks the executor's ``GET /v1/health`` over its socket;
``wingman health bot`` checks that the bot could work right now: its token has the right
form, its signing key loads, and the executor answers on the socket. Both print one line and
exit 0 (healthy) or 1 (not); they are what the container HEALTHCHECKs run.

Why this file is longer than about 500 lines: it is a list of independent checks, each a
short function returning one ``CheckResult``, in the order ``wingman check`` prints them;
split, the list would no longer read as what the command does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization

from bot.settings import BotSettings
from executor.settings import ExecutorSettings
from process.settings import SettingsError, load_settings
from process.version import VERSION

DOCKER_TIMEOUT = 5.0
PROXMOX_TIMEOUT = 5.0
TELEGRAM_TIMEOUT = 10.0
HEALTH_TIMEOUT = 5.0
TELEGRAM_API = "https://api.telegram.org"
PROXMOX_PORT = 8006


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the doctor's report."""

    what: str
    ok: bool
    problem: str = ""
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK  {self.what}"
        text = f"FAIL {self.what}: {self.problem}"
        return f"{text} — {self.fix}" if self.fix else text


def _ok(what: str) -> CheckResult:
    return CheckResult(what, True)


def _fail(what: str, problem: str, fix: str = "") -> CheckResult:
    return CheckResult(what, False, " ".join(problem.split()), fix)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -- keys -----------------------------------------------------------------------------------


def _raw_public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _private_mode_problem(path: Path) -> str | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return f"{path} is readable by other users (mode {mode:04o})"
    return None


def check_bot_key(bot: BotSettings) -> CheckResult:
    from audit.signing import KeyFileError, load_signing_key
    from bot.app import bot_key_path

    path = bot_key_path(bot)
    try:
        key = load_signing_key(path)
    except KeyFileError as exc:
        return _fail("bot signing key", f"WINGMAN_BOT_KEY: {exc}", f"make one with: wingman keys generate --out {path.parent} --kid bot")
    problem = _private_mode_problem(path)
    if problem is not None:
        return _fail("bot signing key", problem, f"chmod 600 {path}")
    return _ok(f"bot signing key {path} (key id {key.kid})")


def check_trusted_keys(executor: ExecutorSettings) -> CheckResult:
    from audit.signing import KeyFileError, load_public_key

    if not executor.trusted_keys:
        return _fail(
            "trusted keys",
            "WINGMAN_TRUSTED_KEYS is empty, so the executor refuses every request",
            "set it to the bot's public key file, e.g. WINGMAN_TRUSTED_KEYS=/etc/wingman/keys/bot.pub",
        )
    for path in executor.trusted_keys:
        try:
            load_public_key(path)
        except KeyFileError as exc:
            return _fail("trusted keys", f"WINGMAN_TRUSTED_KEYS: {exc}", "copy the bot's .pub file there or remove it from the list")
    ids = ", ".join(path.stem for path in executor.trusted_keys)
    return _ok(f"trusted keys load ({ids})")


def check_key_pair(executor: ExecutorSettings, bot: BotSettings) -> CheckResult:
    """The bot's key id is trusted by the executor, with the very same public key."""
    from audit.signing import KeyFileError, load_public_key, load_signing_key
    from bot.app import bot_key_path

    what = "bot key trusted by the executor"
    try:
        key = load_signing_key(bot_key_path(bot))
    except KeyFileError as exc:
        return _fail(what, f"cannot compare: {exc}", "fix the bot signing key first")
    by_kid = {path.stem: path for path in executor.trusted_keys}
    path = by_kid.get(key.kid)
    if path is None:
        return _fail(
            what,
            f"key id {key.kid!r} is not in WINGMAN_TRUSTED_KEYS ({', '.join(by_kid) or 'empty'}), so every request is refused",
            f"add {bot_key_path(bot).with_suffix('.pub')} to WINGMAN_TRUSTED_KEYS and restart the executor",
        )
    try:
        trusted = load_public_key(path)
    except KeyFileError as exc:
        return _fail(what, str(exc), "copy the bot's .pub file there")
    if _raw_public(trusted) != _raw_public(key.public):
        return _fail(
            what,
            f"{path} is a different key than the bot's {bot_key_path(bot)} (same id {key.kid!r})",
            f"copy the .pub made together with {bot_key_path(bot)} to {path}",
        )
    others = sorted(set(by_kid) - {key.kid})
    note = f"; also trusted: {', '.join(others)} (retire them once unused)" if others else ""
    return _ok(f"{what} (key id {key.kid}, same public key{note})")


def check_audit_key(executor: ExecutorSettings) -> CheckResult:
    from audit.signing import KeyFileError, load_signing_key

    path = executor.audit_key_path
    if not path.exists():
        if path.suffix != ".key":
            return _fail("audit key", f"WINGMAN_AUDIT_KEY: {path} does not exist and a generated key file must end in .key", "name it <id>.key")
        if path.with_suffix(".pub").exists():
            return _fail(
                "audit key",
                f"{path} is missing but {path.with_suffix('.pub')} exists, so the executor cannot generate it",
                "restore the private audit key from your backup (or point WINGMAN_AUDIT_KEY at a new <id>.key)",
            )
        if not _creatable(path.parent):
            return _fail("audit key", f"{path} is missing and {path.parent} is not writable", f"create {path.parent} for the executor's user")
        return _ok(f"audit key {path} (absent: the executor generates it at start)")
    try:
        key = load_signing_key(path)
    except KeyFileError as exc:
        return _fail("audit key", f"WINGMAN_AUDIT_KEY: {exc}", "restore it from your backup")
    problem = _private_mode_problem(path)
    if problem is not None:
        return _fail("audit key", problem, f"chmod 600 {path}")
    return _ok(f"audit key {path} (key id {key.kid})")


def _wide(path: Path, allowed: int) -> tuple[Path, int] | None:
    """``path`` and its mode when it grants more than ``allowed``; None when not (or absent)."""
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except OSError:
        return None
    return (path, mode) if mode & ~allowed else None


def check_private_files(executor: ExecutorSettings) -> CheckResult:
    """The data directory 0700, the database, the audit key and the audit files 0600 (the
    executor makes them so; older installs and hand-made ones may be wider)."""
    from audit.database import normalize_url, sqlite_path

    what = "private files"
    data = executor.data_dir
    if not data.exists():
        return _ok(f"{what} (absent: the executor creates {data} mode {executor.data_dir_mode:04o})")
    directories = [(data, executor.data_dir_mode), (executor.export_path, 0o700), *((d, 0o700) for d in _subdirs(executor.export_path))]
    wide_dirs = [found for path, allowed in directories if (found := _wide(path, allowed))]
    files = [executor.audit_key_path]
    database = sqlite_path(normalize_url(executor.database_url))
    if database is not None:
        files += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    for directory in _subdirs(executor.export_path):
        files += [path for path in directory.iterdir() if path.is_file()]
    wide_files = [found for path in files if (found := _wide(path, 0o600))]
    if not wide_dirs and not wide_files:
        return _ok(f"{what} ({data} and the audit files are this user's alone)")
    fixes = []
    if wide_dirs:
        fixes.append("chmod 0700 " + " ".join(str(path) for path, _ in wide_dirs))
    if wide_files:
        fixes.append("chmod 0600 " + " ".join(str(path) for path, _ in wide_files))
    shown = [f"{path} ({mode:04o})" for path, mode in [*wide_dirs, *wide_files]]
    more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
    return _fail(what, f"other users can read {', '.join(shown[:3])}{more}", " && ".join(fixes))


def _subdirs(export_path: Path) -> list[Path]:
    return [path for path in (export_path / "checkpoints", export_path / "exports") if path.is_dir()]


def _creatable(directory: Path) -> bool:
    """Whether ``directory`` exists writable, or could be made by this user."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


# -- the socket -----------------------------------------------------------------------------


async def executor_health(socket_path: Path, timeout: float = HEALTH_TIMEOUT) -> dict[str, Any]:
    """``GET /v1/health`` over the executor's socket; raises ``OSError``/``aiohttp`` errors."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get("http://executor/v1/health") as response:
            data = await response.json(content_type=None)
            if response.status != 200 or not isinstance(data, dict) or data.get("status") != "ok":
                raise ConnectionError(f"the executor answered HTTP {response.status}: {data!r}"[:200])
            return data


async def check_executor(name: str | None, path: Path, timeout: float = HEALTH_TIMEOUT) -> CheckResult:
    """One executor the bot is configured for (``name`` None: the only one, named by
    itself): it answers at ``path``, calls itself ``name``, and runs the bot's version."""
    what = f"executor {name or '(the only one)'} at {path}"
    try:
        data = await executor_health(path, timeout)
    except Exception as exc:  # refused, missing, timed out, not an executor: one line
        fix = f"start it, or its forward (systemctl status wingman-forward@{name})" if name else "start it (wingman executor)"
        return _fail(what, f"does not answer: {_one_line(exc)}", fix)
    own, version = str(data.get("name") or "?"), str(data.get("version") or "?")
    if "name" not in data:
        return _fail(what, "answers, but says no name: it is older than this bot", "upgrade the bot and the executor together")
    if name is not None and own != name:
        return _fail(
            what, f"answers as executor {own!r}, not {name!r}: the bot's requests for {name!r} would be refused",
            f"set WINGMAN_EXECUTOR_NAME={name} on that host, or list it as {own}={path} in WINGMAN_EXECUTORS",
        )  # fmt: skip
    if version != VERSION:
        return _fail(what, f"runs version {version}, the bot {VERSION}", "upgrade the bot and the executor together")
    return _ok(f"{what} (answers as {own}, version {version}, audit seq {data.get('audit_seq')})")


async def check_executors(bot: BotSettings) -> list[CheckResult]:
    """Every executor of ``WINGMAN_EXECUTORS`` (or the one at ``WINGMAN_SOCKET``), asked at once."""
    sockets = bot.executor_sockets()
    return list(await asyncio.gather(*(check_executor(name, path) for name, path in sockets.items())))


def check_socket(settings: ExecutorSettings | BotSettings) -> CheckResult:
    path = settings.socket_path
    directory = path.parent
    what = f"socket directory {directory}"
    if not directory.exists():
        if _creatable(directory):
            return _ok(f"{what} (absent: the executor creates it, mode 0750)")
        return _fail(what, "does not exist and cannot be created by this user", f"create it: install -d -m 0750 {directory}")
    if not directory.is_dir():
        return _fail(what, "is not a directory", "choose another WINGMAN_SOCKET")
    info = directory.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o007:
        return _fail(what, f"mode {mode:04o} lets every user on the host reach the socket", f"chmod 0750 {directory}")
    if mode & 0o020:
        return _fail(what, f"mode {mode:04o} lets the group replace the socket", f"chmod 0750 {directory}")
    if not os.access(directory, os.X_OK):
        return _fail(what, f"this user (uid {os.getuid()}) cannot enter it (owner uid {info.st_uid})", "run as the executor's or the bot's user, or add it to the directory's group")
    if path.exists() and not path.is_socket():
        return _fail(what, f"{path} exists and is not a socket", "move it away or choose another WINGMAN_SOCKET")
    state = "no socket: the executor is not running"
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(path))
            state = "the executor is listening"
        except OSError as exc:
            state = f"stale socket ({exc.strerror}): the executor is not running"
        finally:
            probe.close()
    return _ok(f"{what} (mode {mode:04o}; {state})")


# -- the database ---------------------------------------------------------------------------


async def _applied(url: Any) -> dict[str, set[str] | None]:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from audit.database import make_engine

    found: dict[str, set[str] | None] = {}
    engine = make_engine(url, writer=False)
    try:
        for table in ("audit_alembic_version", "executor_alembic_version"):
            try:
                async with engine.connect() as conn:
                    rows = await conn.execute(text(f"SELECT version_num FROM {table}"))
                    found[table] = {str(row[0]) for row in rows}
            except SQLAlchemyError:
                found[table] = None
    finally:
        await engine.dispose()
    return found


async def check_database(executor: ExecutorSettings) -> CheckResult:
    from audit import AuditError, AuditStore
    from audit.database import describe, normalize_url, sqlite_path
    from audit.migrations import MIGRATIONS as AUDIT_MIGRATIONS
    from executor.migrations import MIGRATIONS as EXECUTOR_MIGRATIONS

    try:
        url = normalize_url(executor.database_url)
    except AuditError as exc:
        return _fail("database", f"WINGMAN_DB_URL: {exc}")
    shown = describe(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if _creatable(path.parent):
            return _ok(f"database {shown} (absent: the executor creates and migrates it at start)")
        return _fail(f"database {shown}", f"does not exist and {path.parent} is not writable", f"create {path.parent} for the executor's user")
    try:
        store = await asyncio.wait_for(AuditStore.open(url, migrate=False), 15)
    except asyncio.TimeoutError:
        return _fail(f"database {shown}", "no answer within 15 s", "check that the server is up and reachable from this host")
    except AuditError as exc:
        return _fail(f"database {shown}", _one_line(exc), "check WINGMAN_DB_URL; a new database is migrated by starting the executor once")
    try:
        head = await store.head()
    finally:
        await store.close()
    applied = await _applied(url)
    for migrations in (AUDIT_MIGRATIONS, EXECUTOR_MIGRATIONS):
        table = migrations.version_table
        have, want = applied.get(table), migrations.heads
        if have != want:
            return _fail(
                f"database {shown}",
                f"not migrated ({table} at {', '.join(sorted(have)) if have else 'nothing'}, the code needs {', '.join(sorted(want))})",
                "start the executor once: it migrates the database at start-up",
            )
    return _ok(f"database {shown} (migrated; audit chain at seq {head.seq})")


# -- policy, Docker, Proxmox ----------------------------------------------------------------


def check_policy(executor: ExecutorSettings) -> CheckResult:
    from executor.errors import StartupError
    from executor.server import load_policy

    try:
        policy = load_policy(executor)
    except StartupError as exc:
        return _fail("policy", str(exc), "fix that line; the executor refuses to start until it parses")
    if not policy.roles:
        return _fail("policy", "no users have a role, so every command is refused", "set WINGMAN_ADMINS (or roles: in the policy file)")
    source = f"file {executor.policy}" if executor.policy is not None else "settings only"
    counts = f"{len(policy.roles)} users, {len(policy.containers)} container patterns, {len(policy.vms)} VMs"
    mode = "; read-only" if policy.read_only else ""
    return _ok(f"policy ({source}: {counts}{mode})")


def check_registry_auth(executor: ExecutorSettings) -> CheckResult:
    """The Docker config.json the update checks and pulls take registry credentials from."""
    from executor.updates.credentials import RegistryCredentials

    path = executor.registry_auth_path
    if not path.exists():
        if executor.registry_auth is not None:
            return _fail("registry credentials", f"{path} does not exist", "write it with docker login (DOCKER_CONFIG), or unset WINGMAN_REGISTRY_AUTH")
        return _ok(f"registry credentials (none: no {path}; only registries that need none are checked)")
    loaded = RegistryCredentials.load(path)
    if loaded.problem is not None:
        return _fail("registry credentials", loaded.problem.removeprefix("WINGMAN_REGISTRY_AUTH: "), "fix the file (docker login writes it)")
    problem = _private_mode_problem(path)
    if problem is not None:
        return _fail("registry credentials", problem, f"chmod 600 {path}")
    names = loaded.registries()
    return _ok(f"registry credentials ({path}: {len(names)} registries{': ' + ', '.join(names[:5]) if names else ''})")


def check_codes(executor: ExecutorSettings) -> list[CheckResult]:
    """Approvers' one-time code secrets: private, and enough of them for the approvals that need one."""
    from executor import codes
    from executor.errors import StartupError
    from executor.server import load_policy
    from policy import Role, Tier

    try:
        policy = load_policy(executor)
    except StartupError:
        return []  # the policy line says what is wrong
    directory = executor.data_dir / codes.DIRECTORY
    approvers = sorted(user for user, role in policy.roles.items() if role >= Role.APPROVER)
    enrolled = [user for user in approvers if codes.secret_path(directory, user).is_file()]
    open_files = [
        p.name for p in (sorted(directory.iterdir()) if directory.is_dir() else [])
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]  # fmt: skip
    if open_files:
        return [_fail("one-time codes", f"secrets readable by others in {directory}: {', '.join(open_files)}", f"chmod 600 {directory}/*")]
    # Tier-3 approvals (two votes, each with a code) exist only with dangerous operations on.
    needed = 2 if policy.allow_dangerous_ops else 0
    if policy.one_time_codes_from_tier <= Tier.ONE_APPROVAL:
        needed = max(needed, 1)
    missing = [str(user) for user in approvers if user not in enrolled]
    counts = f"{len(enrolled)} of {len(approvers)} approvers enrolled"
    if len(enrolled) < needed:
        return [_fail("one-time codes", f"{counts}; approvals that need a code need {needed}", f"wingman approvers enroll <id> for: {', '.join(missing)}")]
    note = f", not: {', '.join(missing)}" if missing and needed else ""
    return [_ok(f"one-time codes ({counts}{note})")]


def _exact_containers(executor: ExecutorSettings) -> list[str]:
    from executor.errors import StartupError
    from executor.server import load_policy

    try:
        policy = load_policy(executor)
    except StartupError:
        return [name for name in executor.container_allowlist if "*" not in name]
    names: set[str] = {str(name) for name in policy.containers}
    for override in policy.overrides.values():
        names.update(str(target) for target in override.targets or () if isinstance(target, str))
    return sorted(name for name in names if "*" not in name)


def _docker_facts(base_url: str) -> tuple[str, str, set[str]]:
    import docker

    client = docker.DockerClient(base_url=base_url, version="auto", timeout=DOCKER_TIMEOUT)
    try:
        version = client.version()
        names: set[str] = set()
        for item in client.api.containers(all=True):
            names.update(str(name).lstrip("/") for name in item.get("Names") or ())
    finally:
        client.close()
    return str(version.get("Version", "?")), str(version.get("ApiVersion", "?")), names


async def check_docker(executor: ExecutorSettings) -> list[CheckResult]:
    from executor.docker_driver import DEFAULT_SOCKET

    base_url = executor.docker_host or DEFAULT_SOCKET
    what = f"Docker engine at {base_url}"
    try:
        engine, api, names = await asyncio.wait_for(asyncio.to_thread(_docker_facts, base_url), DOCKER_TIMEOUT * 3)
    except asyncio.TimeoutError:
        return [_fail(what, "no answer in time", "check that dockerd runs and DOCKER_HOST is right")]
    except Exception as exc:  # the SDK raises many kinds; each is one line here
        text = _one_line(exc)
        fix = "check that dockerd runs and DOCKER_HOST is right"
        if "Permission denied" in text or "PermissionError" in text:
            fix = "add the executor's user to the docker group (systemd: SupplementaryGroups=docker; compose: group_add)"
        return [_fail(what, text, fix)]
    results = [_ok(f"{what} (Docker {engine}, API {api})")]
    wanted = _exact_containers(executor)
    missing = [name for name in wanted if name not in names]
    if missing:
        results.append(
            _fail(
                "allowlisted containers",
                f"{len(missing)} of {len(wanted)} do not exist: {', '.join(missing)}",
                "create them, or remove them from WINGMAN_CONTAINER_ALLOWLIST / the policy file",
            )
        )
    else:
        results.append(_ok(f"allowlisted containers ({len(wanted)} exact names, all exist)"))
    return results


def proxmox_base(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" in host:
        return host
    return f"https://{host}" if ":" in host.rsplit("]", 1)[-1] else f"https://{host}:{PROXMOX_PORT}"


async def check_proxmox(executor: ExecutorSettings) -> CheckResult:
    if not executor.proxmox_host:
        return _ok("Proxmox not configured (PROXMOX_HOST unset: /vm answers so)")
    base = proxmox_base(executor.proxmox_host)
    what = f"Proxmox at {base}"
    ssl: bool = executor.proxmox_verify_ssl
    timeout = aiohttp.ClientTimeout(total=PROXMOX_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if executor.proxmox_token is not None:
                headers = {"Authorization": f"PVEAPIToken={executor.proxmox_token.get_secret_value()}"}
                async with session.get(f"{base}/api2/json/version", headers=headers, ssl=ssl) as response:
                    status, data = response.status, await response.json(content_type=None)
            elif executor.proxmox_user and executor.proxmox_password is not None:
                form = {"username": executor.proxmox_user, "password": executor.proxmox_password.get_secret_value()}
                async with session.post(f"{base}/api2/json/access/ticket", data=form, ssl=ssl) as response:
                    status, data = response.status, await response.json(content_type=None)
            else:
                return _fail(what, "PROXMOX_HOST is set but no credentials are", "set PROXMOX_TOKEN (user@realm!tokenid=secret), or PROXMOX_USER and PROXMOX_PASSWORD")
    except asyncio.TimeoutError:
        return _fail(what, f"no answer within {PROXMOX_TIMEOUT:.0f} s", "check PROXMOX_HOST and that this host may reach port 8006")
    except aiohttp.ClientSSLError as exc:
        return _fail(what, f"TLS: {_one_line(exc)}", "install the Proxmox CA on this host, or set PROXMOX_VERIFY_SSL=false on a trusted network")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _fail(what, _one_line(exc), "check PROXMOX_HOST and that this host may reach it")
    if status in (401, 403):
        return _fail(what, f"credentials refused (HTTP {status})", "check PROXMOX_TOKEN or PROXMOX_USER/PROXMOX_PASSWORD and the token's privileges")
    if status != 200 or not isinstance(data, dict):
        return _fail(what, f"unexpected answer HTTP {status}", "check that PROXMOX_HOST is a Proxmox VE API")
    release = (data.get("data") or {}).get("version") if isinstance(data.get("data"), dict) else None
    return _ok(f"{what} (credentials accepted{f', Proxmox VE {release}' if release else ''})")


# -- Telegram -------------------------------------------------------------------------------


def check_token_form(bot: BotSettings) -> CheckResult:
    from bot.app import check_token

    try:
        check_token(bot)
    except SettingsError as exc:
        return _fail("Telegram token", str(exc))
    return _ok("Telegram token has the form <bot id>:<secret>")


def check_updates_mode(bot: BotSettings) -> CheckResult:
    from bot.app import check_webhook

    try:
        webhook = check_webhook(bot)
    except SettingsError as exc:
        return _fail("Telegram webhook", str(exc))
    if webhook is None:
        return _ok("Telegram updates by long polling")
    return _ok(f"Telegram webhook at {webhook.url}, listening on {webhook.host}:{webhook.port}")


def check_quiet(bot: BotSettings) -> CheckResult:
    from bot.app import check_quiet_hours

    try:
        hours = check_quiet_hours(bot)
    except SettingsError as exc:
        return _fail("quiet hours", str(exc))
    if hours is None:
        return _ok("no quiet hours (WINGMAN_QUIET_HOURS unset): every message is sent at once")
    zone = getattr(hours.tz, "key", None) or str(hours.tz)
    return _ok(f"quiet hours {hours.label()} ({zone}): reports wait, alerts and approvals do not")


async def check_get_me(bot: BotSettings) -> CheckResult:
    from bot.app import check_token

    try:
        token = check_token(bot)
    except SettingsError:
        return _fail("Telegram getMe", "skipped: the token is malformed", "fix TELEGRAM_BOT_TOKEN first")
    base = (bot.telegram_api_base or TELEGRAM_API).rstrip("/")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TELEGRAM_TIMEOUT)) as session:
            async with session.get(f"{base}/bot{token}/getMe") as response:
                status, data = response.status, await response.json(content_type=None)
    except asyncio.TimeoutError:
        return _fail("Telegram getMe", f"no answer from {base} within {TELEGRAM_TIMEOUT:.0f} s", "check this host's internet access or TELEGRAM_API_BASE")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _fail("Telegram getMe", f"{base}: {_one_line(exc)}", "check this host's internet access or TELEGRAM_API_BASE")
    if status == 401:
        return _fail("Telegram getMe", "Telegram does not know this token (401 Unauthorized)", "copy the token again from @BotFather (/mybots → API Token)")
    if not (isinstance(data, dict) and data.get("ok") and isinstance(data.get("result"), dict)):
        return _fail("Telegram getMe", f"unexpected answer HTTP {status}", "check TELEGRAM_API_BASE")
    username = data["result"].get("username", "?")
    return _ok(f"Telegram getMe: the token belongs to @{username}")


# -- running them ---------------------------------------------------------------------------


async def _guarded(what: str, check: Callable[[], Awaitable[CheckResult | list[CheckResult]] | CheckResult | list[CheckResult]]) -> list[CheckResult]:
    try:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
    except Exception as exc:  # a doctor that crashes helps nobody: one FAIL line instead
        return [_fail(what, f"the check itself failed: {type(exc).__name__}: {_one_line(exc)}")]
    return list(result) if isinstance(result, list) else [result]  # type: ignore[list-item]


async def run_checks(
    executor_settings: ExecutorSettings | None, bot_settings: BotSettings | None, *, online: bool
) -> list[CheckResult]:
    """Every check that the given settings allow; ``None`` skips that process's checks."""
    results: list[CheckResult] = []
    ex, bot = executor_settings, bot_settings
    if bot is not None:
        results += await _guarded("bot signing key", lambda: check_bot_key(bot))
    if ex is not None:
        results += await _guarded("trusted keys", lambda: check_trusted_keys(ex))
    if ex is not None and bot is not None:
        results += await _guarded("bot key trusted by the executor", lambda: check_key_pair(ex, bot))
    if ex is not None:
        results += await _guarded("audit key", lambda: check_audit_key(ex))
        results += await _guarded("private files", lambda: check_private_files(ex))
    settings = ex if ex is not None else bot
    if settings is not None:
        results += await _guarded("socket directory", lambda: check_socket(settings))
    if ex is not None:
        results += await _guarded("database", lambda: check_database(ex))
        results += await _guarded("policy", lambda: check_policy(ex))
        results += await _guarded("one-time codes", lambda: check_codes(ex))
        results += await _guarded("Docker engine", lambda: check_docker(ex))
        results += await _guarded("registry credentials", lambda: check_registry_auth(ex))
        results += await _guarded("Proxmox", lambda: check_proxmox(ex))
    if bot is not None:
        results += await _guarded("executors", lambda: check_executors(bot))
        results += await _guarded("Telegram token", lambda: check_token_form(bot))
        results += await _guarded("Telegram webhook", lambda: check_updates_mode(bot))
        results += await _guarded("quiet hours", lambda: check_quiet(bot))
        if online:
            results += await _guarded("Telegram getMe", lambda: check_get_me(bot))
    return results


def check_main(*, online: bool = False, only: str | None = None, echo: Callable[[str], None] = print) -> int:
    """``wingman check``: print one line per check; 0 when all are OK, 1 otherwise.

    ``only`` is ``"executor"`` or ``"bot"`` to check one process (its host or container
    holds only its own settings and files); the key-pair comparison needs both.
    """
    failed: list[CheckResult] = []
    loaded: dict[str, Any] = {}
    for name, model in (("executor", ExecutorSettings), ("bot", BotSettings)):
        if only not in (None, name):
            loaded[name] = None
            continue
        try:
            loaded[name] = load_settings(model)
        except SettingsError as exc:
            loaded[name] = None
            failed.append(_fail(f"{name} settings", str(exc), "fix it in the environment or .env (see .env.example)"))
    try:
        results = failed + asyncio.run(run_checks(loaded["executor"], loaded["bot"], online=online))
    except Exception as exc:  # never a traceback
        results = failed + [_fail("checks", f"{type(exc).__name__}: {_one_line(exc)}")]
    for result in results:
        echo(result.line())
    return 0 if results and all(result.ok for result in results) else 1


# -- container health probes ----------------------------------------------------------------


async def health(target: str, settings: ExecutorSettings | BotSettings, timeout: float = HEALTH_TIMEOUT) -> CheckResult:
    """Healthy or not, for ``target`` ``"executor"`` or ``"bot"``; one line either way."""
    if isinstance(settings, BotSettings):
        for check in (check_token_form, check_bot_key):
            result = check(settings)
            if not result.ok:
                return result
    path = settings.socket_path
    try:
        data = await executor_health(path, timeout)
    except Exception as exc:  # refused, missing, timed out, bad answer: all "unhealthy"
        return _fail(f"{target} health", f"the executor at {path} does not answer: {_one_line(exc)}", "see the executor's log")
    return _ok(f"{target} healthy (executor answers at {path}, audit seq {data.get('audit_seq')})")


def health_main(target: str, *, timeout: float = HEALTH_TIMEOUT, echo: Callable[[str], None] = print) -> int:
    """``wingman health executor|bot``: 0 healthy, 1 not; never a traceback."""
    model: type[ExecutorSettings] | type[BotSettings] = ExecutorSettings if target == "executor" else BotSettings
    try:
        settings = load_settings(model)
        result = asyncio.run(health(target, settings, timeout))
    except SettingsError as exc:
        result = _fail(f"{target} health", str(exc))
    except Exception as exc:
        result = _fail(f"{target} health", f"{type(exc).__name__}: {_one_line(exc)}")
    echo(result.line())
    return 0 if result.ok else 1
