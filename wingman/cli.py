"""The ``wingman`` command: parses arguments, reads settings, turns errors into one line.

Exit codes: 0 success; 1 a verification found the chain broken; 2 usage, settings or
anything else that stopped the command from doing its work. No traceback reaches the
terminal, whatever the input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import audit  # its parts load on first use: `wingman bot` never needs the database stack
from audit.errors import AuditError
from audit.signing import SigningKey, generate_key_pair, load_or_create_signing_key, load_public_key
from executor.errors import StartupError
from process.lifecycle import run_until_signalled
from process.settings import SettingsError, load_settings

if TYPE_CHECKING:  # each command imports its process's settings model: `wingman executor` never loads aiogram
    from bot.settings import BotSettings
    from executor.settings import ExecutorSettings

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A reason to stop with exit status 2; ``str()`` is shown as it is."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _executor_settings(args: argparse.Namespace) -> ExecutorSettings:
    from executor.settings import ExecutorSettings

    overrides: dict[str, Any] = {}
    if getattr(args, "db", None):
        overrides["db_url"] = args.db
    if getattr(args, "exports", None):
        overrides["audit_export_path"] = args.exports
    return load_settings(ExecutorSettings, **overrides)


def _trusted_audit_keys(settings: ExecutorSettings, extra: Sequence[Path]) -> dict[str, Any]:
    """Public audit keys by id: the configured audit key (or its .pub) and any ``--key``."""
    trusted: dict[str, Any] = {}
    configured = settings.audit_key_path
    for candidate in (configured, configured.with_suffix(".pub")):
        if candidate.is_file():
            trusted[candidate.stem] = load_public_key(candidate)
            break
    for path in extra:
        trusted[path.stem] = load_public_key(path)
    return trusted


def _audit_key(settings: ExecutorSettings) -> SigningKey:
    return load_or_create_signing_key(settings.audit_key_path)


def _witness_lines(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, line) of every --witness and of every checkpoint line in every --witness-file.

    A file may hold whole chat messages pasted in: only lines starting with the witness tag
    count (each must then be whole), and a file without one is an error.
    """
    from audit.checkpoints import WITNESS_TAG

    lines = [(f"--witness {index}", line) for index, line in enumerate(args.witness, start=1)]
    for path in args.witness_file:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--witness-file {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        found = [(f"{path} line {n}", line) for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith(WITNESS_TAG)]
        if not found:
            raise CommandError(f"--witness-file {path}: no line starting with {WITNESS_TAG!r}; copy the lines from the team chat's checkpoint messages")
        lines += found
    return lines


async def _audit_verify(args: argparse.Namespace) -> int:
    from audit.checkpoints import parse_witness

    settings = _executor_settings(args)
    trusted = _trusted_audit_keys(settings, args.key)
    witnesses = [parse_witness(line, label, trusted) for label, line in _witness_lines(args)]
    store = await audit.AuditStore.open(settings.database_url, migrate=False)
    try:
        report = await audit.verify_chain(store, settings.export_path, trusted, witnesses=witnesses)
    finally:
        await store.close()
    print(report.summary())
    for warning in report.warnings:
        print(f"warning: {warning}")
    for note in report.notes:
        print(f"note: {note}")
    return EXIT_OK if report.ok else EXIT_BROKEN


async def _audit_checkpoint(args: argparse.Namespace) -> int:
    settings = _executor_settings(args)
    key = _audit_key(settings)
    store = await audit.AuditStore.open(settings.database_url)
    try:
        checkpoint = audit.write_checkpoint(await store.head(), settings.export_path, key, _now())
    finally:
        await store.close()
    print(f"checkpoint at seq {checkpoint.seq} ({checkpoint.entry_hash[:16]}…) written to {checkpoint.path}")
    print(f"witness line (keep a copy off this host): {checkpoint.witness_line()}")
    return EXIT_OK


async def _audit_export(args: argparse.Namespace) -> int:
    settings = _executor_settings(args)
    days = args.days if args.days is not None else settings.retention_audit_days
    key = _audit_key(settings)
    trusted = _trusted_audit_keys(settings, [])
    now = _now()
    store = await audit.AuditStore.open(settings.database_url)
    try:
        result = await audit.export_older_than(
            store, settings.export_path, key, now - timedelta(days=days), now, trusted, dry_run=args.dry_run
        )
        if result.exported and not result.dry_run:
            await store.append(
                actor="system",
                action="audit.export",
                decision="done",
                params={"first_seq": result.first_seq, "last_seq": result.last_seq, "days": days},
                outcome=f"exported {result.exported}, removed {result.removed}",
            )
    finally:
        await store.close()
    if not result.exported:
        print(f"nothing older than {days} days to export")
    elif result.dry_run:
        print(f"dry run: would export {result.exported} entries (seq {result.first_seq}..{result.last_seq})")
    else:
        print(
            f"exported {result.exported} entries (seq {result.first_seq}..{result.last_seq}) "
            f"with manifest {result.manifest}; removed {result.removed} from the database"
        )
    return EXIT_OK


async def _audit_tail(args: argparse.Namespace) -> int:
    settings = _executor_settings(args)
    store = await audit.AuditStore.open(settings.database_url, migrate=False)
    try:
        entries = await store.tail(args.n)
    finally:
        await store.close()
    for entry in entries:
        target = f" {entry.target}" if entry.target else ""
        outcome = f" -> {entry.outcome}" if entry.outcome else ""
        print(f"{entry.seq:>8} {entry.ts} {entry.actor} {entry.action}{target} [{entry.decision}]{outcome}")
    if not entries:
        print("the audit log holds no entries")
    return EXIT_OK


def _keys_generate(args: argparse.Namespace) -> int:
    key_path, pub_path = generate_key_pair(args.out, args.kid)
    print(f"key id: {args.kid}")
    print(f"private key: {key_path}")
    print(f"public key: {pub_path}")
    return EXIT_OK


def _approvers_enroll(args: argparse.Namespace) -> int:
    """A one-time code secret for an approver: stored with the executor, shown once as a QR code."""
    from executor import codes  # pyotp and qrcode are needed by this command only
    from executor.settings import ExecutorSettings
    from policy import Role, names

    user_id = names.parse_user_id(args.telegram_id)
    if user_id is None:
        raise CommandError(f"{names.show(args.telegram_id)} is not a Telegram user id (a positive whole number; /whoami in the bot shows it)")
    settings = load_settings(ExecutorSettings)
    directory = settings.data_dir / codes.DIRECTORY
    try:
        secret, path = codes.enroll(directory, user_id, replace=args.replace)
    except codes.AlreadyEnrolled:
        raise CommandError(
            f"tg:{user_id} already has a one-time code secret ({codes.secret_path(directory, user_id)}); "
            "add --replace to make a new one (the codes of the old one stop counting)"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot write the secret in {directory}: {exc.strerror or exc}") from None
    uri = codes.provisioning_uri(secret, user_id)
    print(f"Scan this with an authenticator app on tg:{user_id}'s phone (or enter the secret by hand):")
    _print_qr(uri)
    print(uri)
    print(f"secret: {secret}")
    print(f"stored in {path} (mode 0600); the bot never sees it. Show this screen to no one else.")
    from executor.server import load_policy  # only for the note below

    try:
        role = load_policy(settings).role_of(user_id)
    except StartupError:
        role = None
    if role is None or role < Role.APPROVER:
        print(f"note: tg:{user_id} is not an approver under the current settings and policy; their code counts once they are")
    return EXIT_OK


def _print_qr(text: str) -> None:
    """The QR code of ``text`` on the terminal; where it cannot be drawn, a line saying so."""
    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(text)
    try:
        if sys.stdout.isatty():
            qr.print_tty()  # explicit black on white: scannable on dark and light terminals
        else:
            qr.print_ascii(invert=True)
    except (UnicodeEncodeError, OSError):
        print("(this terminal cannot draw the QR code: enter the URI or the secret below by hand)")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)  # one line per update is noise


def _executor(args: argparse.Namespace) -> int:
    from executor.server import serve  # the daemons' imports are not needed by other commands
    from executor.settings import ExecutorSettings

    settings = load_settings(ExecutorSettings)
    _logging()
    asyncio.run(serve(settings))
    return EXIT_OK


def _bot(args: argparse.Namespace) -> int:
    from bot.app import check, serve
    from bot.settings import BotSettings

    settings = load_settings(BotSettings)
    check(settings)  # a missing token or key is one line, before anything starts
    _logging()
    asyncio.run(serve(settings))
    return EXIT_OK


def _up(args: argparse.Namespace) -> int:
    """Executor and bot in one process for a single host; keys made on first run."""
    from bot.app import BotApp, bot_key_path, check, check_token
    from bot.settings import BotSettings
    from executor.server import Daemon
    from executor.settings import ExecutorSettings

    bot_settings = load_settings(BotSettings)
    check_token(bot_settings)
    key_path = bot_key_path(bot_settings)
    if not key_path.exists():
        generate_key_pair(key_path.parent, key_path.stem)
        print(f"generated the bot's signing key pair in {key_path.parent}")
    check(bot_settings)
    executor_settings = load_settings(ExecutorSettings)
    if not executor_settings.trusted_keys:
        executor_settings = executor_settings.model_copy(update={"trusted_keys": [key_path.with_suffix(".pub")]})
    _logging()

    async def run() -> None:
        await run_until_signalled(Daemon(executor_settings), BotApp(bot_settings))

    asyncio.run(run())
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from wingman.doctor import check_main

    return check_main(online=args.online, only=args.only)


def _health(args: argparse.Namespace) -> int:
    from wingman.doctor import health_main

    return health_main(args.target, timeout=args.timeout)


def _backup(args: argparse.Namespace) -> int:
    from wingman.backup import backup_main

    return backup_main(args.out, include_private_keys=args.include_private_keys)


def _keys_rotate(args: argparse.Namespace) -> int:
    from wingman.keys import rotate_main

    return rotate_main(args.out, args.kid, _now().date())


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wingman", description="Chat-ops gateway for Docker and Proxmox.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = commands.add_parser("audit", help="verify, export, checkpoint and read the audit chain")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    def audit_parser(name: str, help_text: str, handler: Callable[..., Coroutine[Any, Any, int]]) -> argparse.ArgumentParser:
        sub = audit_commands.add_parser(name, help=help_text)
        sub.add_argument("--db", metavar="URL", help="database URL (default: WINGMAN_DB_URL)")
        sub.add_argument("--exports", metavar="DIR", type=Path, help="export directory (default: WINGMAN_AUDIT_EXPORT_PATH)")
        sub.set_defaults(handler=handler)
        return sub

    verify = audit_parser("verify", "exit 0 if the chain is intact, 1 if broken, 2 if it cannot be checked", _audit_verify)
    verify.add_argument(
        "--key", metavar="FILE", type=Path, action="append", default=[],
        help="also trust this audit public key (repeatable); the configured audit key is always trusted",
    )  # fmt: skip
    verify.add_argument(
        "--witness", metavar="LINE", action="append", default=[],
        help="a checkpoint line as the team chat shows it ('wingman-checkpoint v1 ...'; repeatable)",
    )  # fmt: skip
    verify.add_argument(
        "--witness-file", metavar="FILE", type=Path, action="append", default=[],
        help="a file of checkpoint lines, one a line (repeatable)",
    )  # fmt: skip
    export = audit_parser("export", "move entries past retention into signed export files", _audit_export)
    export.add_argument("--days", type=_positive, help="export entries older than this (default: RETENTION_AUDIT_DAYS)")
    export.add_argument("--dry-run", action="store_true", help="only say what would be exported")
    audit_parser("checkpoint", "write a signed checkpoint of the chain head now", _audit_checkpoint)
    tail = audit_parser("tail", "print the newest entries", _audit_tail)
    tail.add_argument("-n", type=_positive, default=20, help="how many entries (default 20)")

    executor = commands.add_parser("executor", help="run the executor daemon on WINGMAN_SOCKET")
    executor.set_defaults(handler=_executor)
    bot = commands.add_parser("bot", help="run the Telegram bot")
    bot.set_defaults(handler=_bot)
    up = commands.add_parser("up", help="run executor and bot together on this host (keys made on first run)")
    up.set_defaults(handler=_up)

    keys = commands.add_parser("keys", help="manage Ed25519 signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = key_commands.add_parser("generate", help="write <kid>.key (0600) and <kid>.pub")
    generate.add_argument("--out", type=Path, default=Path("."), help="directory (default: current)")
    generate.add_argument("--kid", default="wingman", help="key id, also the file stem (default: wingman)")
    generate.set_defaults(handler=_keys_generate)
    rotate = key_commands.add_parser("rotate", help="new bot key pair bot-<date>, and the steps to switch without a refused request")
    rotate.add_argument("--out", type=Path, help="directory (default: that of WINGMAN_BOT_KEY)")
    rotate.add_argument("--kid", help="key id (default: bot-YYYYMMDD)")
    rotate.set_defaults(handler=_keys_rotate)

    approvers = commands.add_parser("approvers", help="approvers' one-time codes (needed for tier-3 votes)")
    approver_commands = approvers.add_subparsers(dest="approvers_command", required=True, metavar="ACTION")
    enroll = approver_commands.add_parser(
        "enroll", help="make an approver's one-time code secret (kept by the executor, 0600) and show its QR code"
    )
    enroll.add_argument("telegram_id", help="the approver's Telegram user id (/whoami in the bot)")
    enroll.add_argument("--replace", action="store_true", help="replace an existing secret (a lost phone)")
    enroll.set_defaults(handler=_approvers_enroll)

    check = commands.add_parser("check", help="check the configuration: one line per check; exit 0 when all is well")
    check.add_argument("--online", action="store_true", help="also ask Telegram (getMe) whether the token is valid")
    check.add_argument("--only", choices=("executor", "bot"), help="check one process (on its own host or container)")
    check.set_defaults(handler=_check)
    health = commands.add_parser("health", help="container health probe: exit 0 healthy, 1 not")
    health.add_argument("target", choices=("executor", "bot"))
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_health)
    backup = commands.add_parser("backup", help="a consistent, verified copy of database, checkpoints, exports and public keys")
    backup.add_argument("--out", type=Path, default=Path("backups"))
    backup.add_argument("--include-private-keys", action="store_true", help="also the audit and bot PRIVATE keys (keep it encrypted)")
    backup.set_defaults(handler=_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except (SettingsError, AuditError, CommandError, StartupError) as exc:
        print(f"wingman: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("wingman: interrupted", file=sys.stderr)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        print(f"wingman: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_ERROR
