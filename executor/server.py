"""The daemon: the Unix socket, who may connect to it, the HTTP layer, start-up and shutdown.

Start-up reads settings, keys and policy (any error stops it with one line and exit 2),
migrates the database, then binds the socket: its directory mode 0750, the socket 0660
from the moment it exists (umask), a stale socket from a crash replaced, a live one
refused. Each connection's peer uid (``SO_PEERCRED``) is checked before a byte is read, and
no uid may hold more than its share of connections or hold one idle (``executor.connections``).
SIGTERM stops accepting, lets running actions finish (bounded), writes a checkpoint and
closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import stat
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from sqlalchemy.exc import SQLAlchemyError

from audit import AuditError, AuditStore, load_public_key, write_checkpoint
from audit.files import make_private_dir
from audit.signing import KeyFileError, load_or_create_signing_key
from audit.database import make_engine, normalize_url, upgrade_schema
from executor import codes
from executor.alerts import Alerts, IncidentStore
from executor.connections import RefusalRecord, SocketGate, reserve_open_files
from executor.deploy import Deployer
from executor.deployments import DeploymentStore
from executor.docker_driver import DockerDriver
from executor.errors import StartupError
from executor.lease import Lease, LeaseError
from executor.metrics import render as render_metrics
from executor.migrations import MIGRATIONS
from executor.proxmox import ProxmoxDriver
from executor.recovery import recover
from executor.protocol import BODY_TIMEOUT, CONTENT_TYPE, HEALTH_PATH, IDLE_TIMEOUT, MAX_BODY, PATH, STATUS_HTTP
from executor.scheduling import build_scheduler
from executor.updates import RegistryCredentials, UpdateCheck, UpdatePolicy
from executor.service import Executor, Reply
from executor.settings import ExecutorSettings
from policy import Policy, PolicyError, container_visible, load_policy_file, vm_visible
from process.lifecycle import run_until_signalled
from process.version import VERSION
from scheduler import ENV_NAMES, ScheduleConfig, ScheduleConfigError, Scheduler

log = logging.getLogger("wingman.executor")
SHUTDOWN_GRACE = 30.0
BACKLOG = 512  # connections waiting to be accepted; a refused storm must not fill it for the bot


# -- the socket ---------------------------------------------------------------------------


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, private from its first moment."""
    directory = path.parent
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise StartupError(f"WINGMAN_SOCKET: cannot look at {directory}: {exc.strerror}") from None
    if mode is not None and mode & (stat.S_ISVTX | stat.S_IWOTH):
        # Narrowing a shared directory such as /tmp to 0750 would break everyone else.
        raise StartupError(
            f"WINGMAN_SOCKET: {directory} is shared with other users; put the socket in a directory of its own "
            "(e.g. /run/wingman/executor.sock)"
        )
    try:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.chmod(directory, 0o750)
    except OSError as exc:
        raise StartupError(f"WINGMAN_SOCKET: cannot prepare {directory}: {exc.strerror}") from None
    if path.exists() and not path.is_socket():
        raise StartupError(f"WINGMAN_SOCKET: {path} exists and is not a socket; move it away or choose another path")
    if path.is_socket():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise StartupError(f"WINGMAN_SOCKET: {path} exists and cannot be probed: {exc.strerror}") from None
            path.unlink(missing_ok=True)  # a stale socket left by a crash
        else:
            raise StartupError(f"WINGMAN_SOCKET: another executor is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket file is born 0660
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"WINGMAN_SOCKET: cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


# -- HTTP ---------------------------------------------------------------------------------


def reply_response(reply: Reply) -> web.Response:
    return web.json_response(reply.as_json(), status=STATUS_HTTP.get(reply.status, 500))


def build_app(executor: Executor) -> web.Application:
    async def audit_bad_request(reason: str) -> Reply:
        await executor.audit.append(actor="unverified", action="request", decision="bad_request", outcome=reason)
        return Reply("bad_request", reason)

    @web.middleware
    async def json_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Every answer is the protocol's JSON, never aiohttp's bare error pages."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            try:
                reply = await audit_bad_request(f"{exc.status} {exc.reason}")
            except (AuditError, SQLAlchemyError) as db_exc:
                return unavailable(db_exc)
            return web.json_response(reply.as_json(), status=exc.status)
        except ConnectionError:
            raise  # the client went away: nobody is left to answer (aiohttp logs it)
        except (AuditError, SQLAlchemyError) as exc:
            return unavailable(exc)
        except Exception as exc:
            # A bug outside Executor.handle (which answers its own): logged, audited if the
            # database lets us, answered with an id to quote.
            request_id = secrets.token_hex(8)
            log.error("request %s (%s %s) hit an internal error", request_id, request.method, request.path, exc_info=exc)
            reason = f"the executor hit an internal error ({type(exc).__name__}); quote request {request_id} to its operator"
            try:
                await executor.audit.append(
                    actor="unverified", action="request", decision="internal_error", outcome=reason, request_id=request_id
                )
            except Exception as audit_exc:
                log.error("request %s: the internal error could not be audited: %s", request_id, audit_exc)
            return reply_response(Reply("internal_error", reason, request_id))

    def unavailable(exc: Exception) -> web.Response:
        log.error("a request failed on the database: %s", exc)
        return reply_response(Reply("unavailable", "the executor's database is unavailable; try again shortly"))

    async def handle_request(request: web.Request) -> web.Response:
        # Read the header ourselves: aiohttp's parser raises on some malformed parameters.
        content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != CONTENT_TYPE:
            reply = await audit_bad_request(f"the content type must be {CONTENT_TYPE}")
            return web.json_response(reply.as_json(), status=415)
        try:
            async with asyncio.timeout(BODY_TIMEOUT):  # the header's own timeout ends where this starts
                body = await request.read()  # aiohttp refuses more than MAX_BODY with 413
        except (RequestPayloadError, HttpProcessingError):
            return reply_response(await audit_bad_request("the body cannot be read (bad encoding or transfer)"))
        except TimeoutError:
            reply = await audit_bad_request(f"the body did not arrive within {BODY_TIMEOUT:g} s of the header")
            response = web.json_response(reply.as_json(), status=408)
            response.force_close()
            return response
        except ConnectionError:
            # Nobody is left to answer: one line in the log and the audit, no traceback.
            log.warning("a client closed its connection before sending the whole request body")
            return reply_response(await audit_bad_request("the client closed the connection in the middle of the body"))
        try:
            token = body.decode("ascii").strip()
        except UnicodeDecodeError:
            return reply_response(await audit_bad_request("the body must be a compact JWS (ASCII)"))
        if not token:
            return reply_response(await audit_bad_request("the body is empty: send the signed token"))
        return reply_response(await executor.handle(token))

    async def health(request: web.Request) -> web.Response:
        head = await executor.audit.head()
        return web.json_response({"status": "ok", "name": executor.name, "version": VERSION, "audit_seq": head.seq})

    async def metrics(request: web.Request) -> web.Response:
        text = await render_metrics(executor.requests, executor.audit, executor.approvals.engine, executor.last_verified)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app.router.add_post(PATH, handle_request)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get("/v1/metrics", metrics)
    return app


# -- start-up and shutdown ----------------------------------------------------------------


def load_policy(settings: ExecutorSettings) -> Policy:
    try:
        file = load_policy_file(settings.policy) if settings.policy is not None else None
        return Policy.from_settings(
            admins=settings.admins,
            approvers=settings.approvers,
            operators=settings.operators,
            viewers=settings.viewers,
            containers=settings.container_allowlist,
            vms=settings.vm_allowlist,
            nodes=settings.node_allowlist,
            read_only=settings.read_only,
            allow_dangerous_ops=settings.allow_dangerous_ops,
            file=file,
        )
    except PolicyError as exc:
        raise StartupError(str(exc)) from None


def load_trusted_keys(settings: ExecutorSettings) -> dict[str, Any]:
    trusted: dict[str, Any] = {}
    seen: dict[str, Path] = {}
    for path in settings.trusted_keys:
        # The key id is the file stem: two files with one id would leave one key silently unused.
        if path.stem in seen and seen[path.stem] != path:
            raise StartupError(
                f"WINGMAN_TRUSTED_KEYS: {seen[path.stem]} and {path} have the same key id {path.stem!r}; "
                "rename one (the file stem is the key id) or list only one"
            )
        seen[path.stem] = path
        try:
            trusted[path.stem] = load_public_key(path)
        except KeyFileError as exc:
            raise StartupError(f"WINGMAN_TRUSTED_KEYS: {exc}") from None
    return trusted


def prepare_data_dir(settings: ExecutorSettings) -> None:
    """The data directory, created private whatever the umask, before any key or database."""
    try:
        make_private_dir(settings.data_dir, settings.data_dir_mode)
    except OSError as exc:
        raise StartupError(f"WINGMAN_DATA_DIR: cannot create {settings.data_dir}: {exc.strerror}") from None


class Daemon:
    """One running executor: its store, its socket, its background jobs."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.executor: Executor | None = None
        self._runner: web.AppRunner | None = None
        self._listening: socket.socket | None = None  # until the gate takes it over
        self.gate: SocketGate | None = None
        self._refusals: RefusalRecord | None = None
        self._audit: AuditStore | None = None
        self._engine: Any = None
        self.scheduler: Scheduler | None = None
        self._docker: DockerDriver | None = None
        self._proxmox: ProxmoxDriver | None = None
        self._self_check: asyncio.Task[None] | None = None
        self._bound = False  # whether the socket file is ours to remove
        self._started = False
        self._lease: Lease | None = None
        self.alerts: Alerts | None = None

    async def start(self) -> None:
        prepare_data_dir(self.settings)  # first: the lease's lock file lives in it
        await self._take_lease()
        settings = self.settings
        policy = load_policy(settings)
        try:
            schedule = ScheduleConfig(**{name: getattr(settings, name) for name in ENV_NAMES})
        except ScheduleConfigError as exc:
            raise StartupError(str(exc)) from None
        trusted = load_trusted_keys(settings)
        try:
            audit_key = load_or_create_signing_key(settings.audit_key_path)
        except KeyFileError as exc:
            raise StartupError(f"WINGMAN_AUDIT_KEY: {exc}") from None
        try:
            self._audit = await AuditStore.open(settings.database_url)
            self._engine = make_engine(normalize_url(settings.database_url), writer=True)
            await upgrade_schema(self._engine, MIGRATIONS)
        except AuditError as exc:
            raise StartupError(f"WINGMAN_DB_URL: {exc}") from None
        proxmox = ProxmoxDriver.from_settings(settings)
        self._proxmox = proxmox
        self._docker = DockerDriver(base_url=settings.docker_host, registry_auth=settings.registry_auth_path)
        deployments = DeploymentStore(self._engine)
        deployer = Deployer(
            self._docker,
            deployments,
            image_allowlist=settings.image_allowlist,
            health_timeout=settings.deploy_timeout_seconds,
        )
        self.executor = Executor(
            policy=policy,
            audit=self._audit,
            engine=self._engine,
            trusted=trusted,
            name=settings.name,
            audit_key=audit_key,
            export_path=settings.export_path,
            approval_ttl=settings.approval_ttl_seconds,
            docker=self._docker,
            deployer=deployer,
            proxmox=proxmox,
            codes_dir=settings.data_dir / codes.DIRECTORY,
            update_check=UpdateCheck(
                self._docker,
                lambda: RegistryCredentials.load(settings.registry_auth_path),
                default_policy=UpdatePolicy(settings.update_policy),
                deployments=deployments,
            ),
        )
        await self.executor.replay.load(time.time())
        allowed = frozenset({os.getuid(), *settings.allowed_uids})
        reserve_open_files(allowed)
        sock = bind_socket(settings.socket_path)
        self._listening = sock
        self._bound = True
        await self._recover(deployer)
        await self._resume_approvals()
        # aiohttp's keep-alive timer runs from a connection's start and from each reply until
        # a complete header arrives: it is the header and idle timeout.
        self._runner = web.AppRunner(
            build_app(self.executor),
            handle_signals=False,
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT,
            lingering_time=BODY_TIMEOUT,
        )
        await self._runner.setup()
        http = self._runner.server
        assert http is not None
        self._refusals = RefusalRecord(self._audit)
        self.gate = SocketGate(sock, http, allowed, self._refusals)
        self.gate.start()
        self._listening = None
        self.scheduler = build_scheduler(self.executor, self._engine, schedule)
        self.scheduler.start()
        if settings.alerts:
            executor = self.executor
            self.alerts = Alerts(
                driver=self._docker, store=IncidentStore(self._engine), outbox=executor.outbox, audit=self._audit,
                visible=lambda name, labels: container_visible(executor.policy, name, labels), deployments=deployer.store,
            )  # fmt: skip
            await self.alerts.start()
        if proxmox is not None:
            self._self_check = asyncio.create_task(self._proxmox_self_check(proxmox), name="proxmox-self-check")
        await self._audit.append(actor="system", action="executor.start", decision="done", params={"socket": str(settings.socket_path)})
        self._started = True
        log.info("executor listening on %s", settings.socket_path)
        if not trusted:
            log.warning("WINGMAN_TRUSTED_KEYS is empty: every request will be refused")

    async def _take_lease(self) -> None:
        """One executor per database: before anything reads or writes it (see executor.lease)."""
        try:
            self._lease = await Lease.take(normalize_url(self.settings.database_url))
        except (AuditError, LeaseError) as exc:
            raise StartupError(f"WINGMAN_DB_URL: {exc}") from None

    async def _recover(self, deployer: Deployer) -> None:
        """Bring back services whose deploy a crash interrupted, before serving anyone."""
        assert self.executor is not None
        policy = self.executor.policy  # the allowlist as it is now, not as it was at the crash
        report = await recover(deployer, lambda name, labels: container_visible(policy, name, labels))
        await self._report_at_start(report.done, "recovery", "deploy.recover", "done", "Recovered after a restart:")
        await self._report_at_start(
            report.alerts, "alert", "deploy.recover", "refused", "🚨 Recovery left these alone; look at them by hand:"
        )

    async def _resume_approvals(self) -> None:
        """Approvals the last run left approved or running: start or end each (after recovery)."""
        assert self.executor is not None
        lines = await self.executor.resume_approvals()
        await self._report_at_start(lines, "approvals.resume", "approval.resume", "done", "Requests left by the last run:")

    async def _proxmox_self_check(self, proxmox: ProxmoxDriver) -> None:
        """Say once, at start, what the Proxmox token cannot do for the allowlisted VMs."""
        assert self.executor is not None
        policy = self.executor.policy
        lines = await proxmox.self_check(self.settings.vm_allowlist, lambda vmid, node: vm_visible(policy, vmid, node))
        await self._report_at_start(lines, "proxmox.self_check", "proxmox.self_check", "problem", "Proxmox self-check at start:")

    async def _report_at_start(self, lines: list[str], kind: str, action: str, decision: str, heading: str) -> None:
        """Each line to the log and the audit, and all of them as one message to the team chat."""
        assert self._audit is not None and self.executor is not None
        for line in lines:
            log.warning("%s: %s", kind, line)
            await self._audit.append(actor="system", action=action, decision=decision, outcome=line)
        if lines:
            text = heading + "\n" + "\n".join(f"• {line}" for line in lines)
            await self.executor.outbox.add(kind, {"text": text}, now=self.executor.clock())

    async def stop(self) -> None:
        """Stop accepting, finish running actions (bounded), checkpoint, close."""
        if self.gate is not None:
            await self.gate.close()
        if self._listening is not None:
            self._listening.close()
        if self.scheduler is not None:
            await self.scheduler.shutdown(timeout=SHUTDOWN_GRACE)
        if self.alerts is not None:
            await self.alerts.stop()
        if self.executor is not None:
            self.executor.outbox.wake()
            await self.executor.drain(SHUTDOWN_GRACE)
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
        if self.executor is not None:
            await self.executor.close()
        if self._refusals is not None:
            await self._refusals.close()  # counts still pending belong in the chain too
        if self._audit is not None and self._started:
            try:
                await self._audit.append(actor="system", action="executor.stop", decision="done")
                if self.executor is not None:
                    head = await self._audit.head()
                    write_checkpoint(head, self.settings.export_path, self.executor.audit_key, datetime.now(timezone.utc))
            except (AuditError, OSError) as exc:
                log.error("could not write the shutdown checkpoint: %s", exc)
        if self._audit is not None:
            await self._audit.close()
        if self._self_check is not None:
            self._self_check.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._self_check
        if self._proxmox is not None:
            await self._proxmox.close()
        if self._docker is not None:
            await self._docker.close()
        if self._engine is not None:
            await self._engine.dispose()
        if self._bound:
            with contextlib.suppress(OSError):
                self.settings.socket_path.unlink()
        if self._lease is not None:  # last: until here this daemon still used the database
            await self._lease.release()
            self._lease = None


async def serve(settings: ExecutorSettings, *, ready: Callable[[], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    await run_until_signalled(Daemon(settings), ready=ready)
