"""The executor's settings model: everything ``wingman executor`` (and the offline
``wingman audit`` commands) reads, and nothing of the bot's."""

from __future__ import annotations

import socket
from pathlib import Path

from typing import Annotated

from pydantic import AfterValidator, SecretStr, field_validator

from executor.protocol import executor_name_problem, name_from_host
from process.settings import CommaList, Flag, PathList, ProcessSettings, UserIds, setting

EXECUTOR, ACCESS = "Executor (wingman executor, and the offline wingman audit commands)", "Executor: who may do what"
JOBS, DOCKER, PROXMOX = "Executor: scheduled jobs and retention", "Executor: Docker", "Executor: Proxmox VE"


def _update_policy(value: str) -> str:
    # The names are executor.updates.versions.UpdatePolicy's (a test holds them together).
    word = value.strip().lower()
    if word not in UPDATE_POLICIES:
        raise ValueError(f"{value!r} is not one of {', '.join(UPDATE_POLICIES)}")
    return word


UPDATE_POLICIES = ("digest", "patch", "minor", "major", "off")
UpdatePolicyName = Annotated[str, AfterValidator(_update_policy)]


class ExecutorSettings(ProcessSettings):
    """Everything ``wingman executor`` (and the offline ``wingman audit`` commands) reads."""

    executor_name: str | None = setting(None, "WINGMAN_EXECUTOR_NAME", "This executor's name: the bot's requests must name it (a token meant for another executor is refused), and the bot's WINGMAN_EXECUTORS lists it under it. 1-20 lowercase letters, digits and '-'. Default: the host name, lower-cased, reduced to those.", group=EXECUTOR, example="nas")
    db_url: str | None = setting(None, "WINGMAN_DB_URL", "Database. Default: SQLite at <WINGMAN_DATA_DIR>/wingman.db; production: postgresql+asyncpg://user:password@host/db", group=EXECUTOR, example="postgresql+asyncpg://wingman:secret@db.example/wingman")
    allowed_uids: UserIds = setting([], "WINGMAN_ALLOWED_UIDS", "Unix uids besides the executor's own that may connect to the socket (e.g. the bot's).", group=EXECUTOR)
    trusted_keys: PathList = setting([], "WINGMAN_TRUSTED_KEYS", "Public keys whose signed requests are accepted, comma-separated; each key's id is its file stem.", group=EXECUTOR, example="./data/keys/bot.pub")
    audit_key: Path | None = setting(None, "WINGMAN_AUDIT_KEY", "The executor's own Ed25519 key for audit checkpoints and export manifests; generated when absent. Default: <WINGMAN_DATA_DIR>/audit.key", group=EXECUTOR, example="./data/audit.key")
    audit_export_path: Path | None = setting(None, "WINGMAN_AUDIT_EXPORT_PATH", "Where checkpoints and retention exports go (keep a copy off this host). Default: <WINGMAN_DATA_DIR>/audit", group=EXECUTOR, example="./data/audit")
    approval_ttl_seconds: int = setting(900, "WINGMAN_APPROVAL_TTL_SECONDS", "How long an approval request stays open.", group=EXECUTOR, gt=0, le=7 * 86400)
    policy: Path | None = setting(None, "WINGMAN_POLICY", "Optional YAML policy file (roles, allowlists, re-tiered actions); see deploy/policy.example.yaml.", group=ACCESS, example="./policy.yaml")
    admins: UserIds = setting([], "WINGMAN_ADMINS", "Telegram user ids of admins (admin > approver > operator > viewer; unknown users get nothing).", group=ACCESS)
    approvers: UserIds = setting([], "WINGMAN_APPROVERS", "Telegram user ids of approvers.", group=ACCESS)
    operators: UserIds = setting([], "WINGMAN_OPERATORS", "Telegram user ids of operators.", group=ACCESS)
    viewers: UserIds = setting([], "WINGMAN_VIEWERS", "Telegram user ids of viewers.", group=ACCESS)
    container_allowlist: CommaList = setting([], "WINGMAN_CONTAINER_ALLOWLIST", "Containers Wingman may touch: exact names, prefix-* globs, or stack:<project> (every container of that Compose project). Empty: none.", group=ACCESS)
    vm_allowlist: UserIds = setting([], "WINGMAN_VM_ALLOWLIST", "Proxmox VMIDs Wingman may touch. Empty: none.", group=ACCESS)
    node_allowlist: CommaList = setting([], "WINGMAN_NODE_ALLOWLIST", "Proxmox nodes Wingman may touch. Empty: none.", group=ACCESS)
    read_only: Flag = setting(False, "WINGMAN_READ_ONLY", "Refuse everything but reads.", group=ACCESS)
    allow_dangerous_ops: Flag = setting(False, "WINGMAN_ALLOW_DANGEROUS_OPS", "Allow tier 3 actions (VM rollback), each still needing two approvers.", group=ACCESS)
    deploy_timeout_seconds: int = setting(60, "WINGMAN_DEPLOY_TIMEOUT_SECONDS", "How long a deployed container may take to become healthy before it is rolled back.", group=DOCKER, gt=0, le=3600)
    image_allowlist: CommaList = setting([], "WINGMAN_IMAGE_ALLOWLIST", "Repositories a deploy may switch a container to when it differs from the current one (exact names or prefix* globs); a new tag of the same repository is always allowed.", group=DOCKER, example="ghcr.io/acme/*")
    update_policy: UpdatePolicyName = setting("digest", "WINGMAN_UPDATE_POLICY", "Update policy of containers without a wingman.update label: digest (a new image under the same tag), patch, minor, major (also newer version tags up to that part), or off.", group=DOCKER)
    registry_auth: Path | None = setting(None, "WINGMAN_REGISTRY_AUTH", "A Docker config.json with registry credentials (auths: auth or identitytoken) for update checks and pulls. Default: the executor user's ~/.docker/config.json", group=DOCKER, example="/etc/wingman/docker-config.json")
    alerts: Flag = setting(True, "WINGMAN_ALERTS", "Alerts: post an incident to the team chat when an allowlisted container dies, is OOM-killed, turns unhealthy or restarts in a loop (off: none; a container's label wingman.alerts=off silences that one).", group=DOCKER)
    docker_host: str | None = setting(None, "DOCKER_HOST", "The Docker engine (the Docker SDK's own setting). Default: the local socket.", group=DOCKER, example="unix:///var/run/docker.sock")
    proxmox_host: str | None = setting(None, "PROXMOX_HOST", "Proxmox VE API host[:port]; unset turns the /vm actions off.", group=PROXMOX, example="pve.example:8006")
    proxmox_token: SecretStr | None = setting(None, "PROXMOX_TOKEN", "An API token in Proxmox's own form user@realm!tokenid=secret (preferred) ...", group=PROXMOX, example="wingman@pve!executor=00000000-0000-0000-0000-000000000000")
    proxmox_user: str | None = setting(None, "PROXMOX_USER", "... or a user, with PROXMOX_PASSWORD.", group=PROXMOX, example="wingman@pve")
    proxmox_password: SecretStr | None = setting(None, "PROXMOX_PASSWORD", "The password of PROXMOX_USER.", group=PROXMOX, example="")
    # Issue 7 makes certificate checking the default; DESIGN's "unset means false" yields here.
    proxmox_verify_ssl: Flag = setting(True, "PROXMOX_VERIFY_SSL", "Check the Proxmox server's TLS certificate.", group=PROXMOX)
    proxmox_ca_bundle: Path | None = setting(None, "PROXMOX_CA_BUNDLE", "A PEM file of the CA that signed the Proxmox certificate (e.g. the cluster's own CA). Default: the system's CAs.", group=PROXMOX, example="/etc/wingman/pve-root-ca.pem")
    verify_at: str = setting("02:30", "WINGMAN_VERIFY_AT", "Nightly audit chain verification (HH:MM); an alert also fires when none succeeded for 26 hours.", group=JOBS)
    checkpoint_at: str = setting("00:05", "WINGMAN_CHECKPOINT_AT", "Daily signed checkpoint, posted to the team chat as a line to paste back into wingman audit verify --witness.", group=JOBS)
    checkpoint_every: int = setting(1000, "WINGMAN_CHECKPOINT_EVERY", "Also write a signed checkpoint every this many audit entries (and at least hourly while entries were added).", group=JOBS, ge=1)
    retention_at: str = setting("03:00", "WINGMAN_RETENTION_AT", "Retention: export old audit entries (signed), then prune old operational rows.", group=JOBS)
    report_at: str = setting("08:00", "WINGMAN_REPORT_AT", "Daily audit report.", group=JOBS)
    weekly_report_day: str = setting("mon", "WINGMAN_WEEKLY_REPORT_DAY", "Day of the weekly report (mon ... sun).", group=JOBS)
    update_check_at: str = setting("every 6h", "WINGMAN_UPDATE_CHECK_AT", "When registries are asked for updates of the allowlisted containers: every <n>m|h|d, times of day HH:MM[,HH:MM...], or off. New updates are posted to the team chat once.", group=JOBS)
    retention_audit_days: int = setting(90, "RETENTION_AUDIT_DAYS", "Audit entries older than this move to signed export files.", group=JOBS, ge=1)
    retention_executions_days: int = setting(7, "RETENTION_EXECUTIONS_DAYS", "Successful deploy records (each service's newest five are always kept, for /rollback).", group=JOBS, ge=1)
    retention_failed_days: int = setting(14, "RETENTION_FAILED_DAYS", "Failed or rolled-back deploy records.", group=JOBS, ge=1)
    retention_other_days: int = setting(30, "RETENTION_OTHER_DAYS", "Deploy records that ended otherwise (recovered after a crash).", group=JOBS, ge=1)
    retention_notifications_days: int = setting(30, "RETENTION_NOTIFICATIONS_DAYS", "Delivered notifications.", group=JOBS, ge=1)
    retention_approvals_days: int = setting(30, "RETENTION_APPROVALS_DAYS", "Approvals that ended, with their votes.", group=JOBS, ge=1)
    retention_dry_run: Flag = setting(False, "RETENTION_DRY_RUN", "Only report what retention would do.", group=JOBS)

    @field_validator("executor_name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if not value:  # unset or empty: the host name's
            return None
        problem = executor_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @property
    def name(self) -> str:
        """This executor's name (``WINGMAN_EXECUTOR_NAME``, else made from the host name)."""
        return self.executor_name or name_from_host(socket.gethostname())

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.data_dir / 'wingman.db'}"

    @property
    def data_dir_mode(self) -> int:
        """What the executor makes its data directory: 0700; 0710 when the socket lives inside
        it and other uids may connect (their group passes through to it and lists nothing)."""
        inside = self.socket_path.resolve().is_relative_to(self.data_dir.resolve())
        return 0o710 if inside and self.allowed_uids else 0o700

    @property
    def registry_auth_path(self) -> Path:
        """The Docker config.json the registry credentials come from."""
        return self.registry_auth or Path.home() / ".docker" / "config.json"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key or self.data_dir / "audit.key"

    @property
    def export_path(self) -> Path:
        return self.audit_export_path or self.data_dir / "audit"
