"""Real image registries for tests: Debian's ``docker-registry`` (the CNCF distribution registry).

Each runs on ``127.0.0.1:<free port>`` with its storage in a temporary directory:

- ``registry`` (session): no auth and no TLS; the Docker engine trusts registries on
  127.0.0.0/8 without TLS.
- ``secure_registry`` (session): htpasswd auth (bcrypt) behind TLS, with a certificate from
  a throwaway CA made here with ``cryptography``. The CA is installed for the engine (and
  for Wingman's tag-list client, which reads the same place) as
  ``/etc/docker/certs.d/127.0.0.1:<port>/ca.crt`` and removed afterwards.
- :func:`start_registry` for a test that needs one of its own (to stop it midway).

Tests push the FROM-scratch test images into them (:meth:`Registry.push`) and move tags
there. Without the binary the tests skip, saying how to install it; with ``CI=true`` they
fail instead (``tests.conftest.service_missing``). The fixtures are registered for the
whole suite by tests/conftest.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from docker.api.client import APIClient

from tests.conftest import service_missing
from tests.docker.engine import Resources, free_port

BINARY = Path("/usr/bin/docker-registry")
CERTS_DIR = Path("/etc/docker/certs.d")
USER, PASSWORD = "wingman-test", "s3cret-Registry-Pa55"

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{extra}"""

_SECURE = """\
  tls:
    certificate: {home}/server.crt
    key: {home}/server.key
auth:
  htpasswd:
    realm: wingman-test
    path: {home}/htpasswd
"""


class PushFailed(Exception):
    pass


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    auth: dict[str, str] | None = None  # what the engine needs to push (secure registries)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    home: Path | None = field(default=None, repr=False)

    def repository(self) -> str:
        """A repository name of its own for one test."""
        return f"{self.host}/wmt-{uuid.uuid4().hex[:8]}/svc"

    def push(self, api: APIClient, resources: Resources, image: str, repository: str, tag: str) -> str:
        """Tag ``image`` as ``repository:tag``, push it; returns the registry's manifest digest."""
        ref = resources.tag(image, repository, tag)
        errors, digest = [], ""
        for event in api.push(repository, tag=tag, stream=True, decode=True, auth_config=self.auth):
            if event.get("error"):
                errors.append(str(event["error"]))
            digest = str((event.get("aux") or {}).get("Digest") or digest)
        if errors or not digest:
            raise PushFailed(f"pushing {ref} failed: {errors or 'no digest reported'}")
        return digest

    def forget_locally(self, api: APIClient, ref: str) -> None:
        """Remove the local tag (the image stays under its other names): now only the registry has it."""
        api.remove_image(ref)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _answers(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # up, and asking for credentials
    except (urllib.error.URLError, OSError):
        return False


def make_ca_and_certificate(home: Path, host: str = "127.0.0.1") -> Path:
    """A throwaway CA and a server certificate for ``host`` signed by it; returns the CA's PEM file."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wingman test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (home / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (home / "server.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (home / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return home / "ca.crt"


def start_registry(*, secure: bool = False) -> Registry:
    """A registry of its own (stop it with :meth:`Registry.stop`, clean up with :func:`remove_registry`)."""
    if not BINARY.is_file():
        service_missing(f"{BINARY} is missing: install Debian's docker-registry package (see .ci/run)")
    home = Path(tempfile.mkdtemp(prefix="wingman-registry-"))
    port = free_port()
    host = f"127.0.0.1:{port}"
    extra, context, auth = "", None, None
    if secure:
        ca = make_ca_and_certificate(home)
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (home / "htpasswd").write_text(f"{USER}:{hashed}\n")
        extra = _SECURE.format(home=home)
        installed = CERTS_DIR / host
        installed.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca, installed / "ca.crt")
        context = ssl.create_default_context(cafile=str(ca))
        auth = {"username": USER, "password": PASSWORD}
    (home / "config.yml").write_text(_CONFIG.format(root=home / "storage", port=port, extra=extra))
    log = (home / "registry.log").open("wb")
    process = subprocess.Popen([str(BINARY), "serve", str(home / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    made = Registry(host, auth, process, home)
    url = f"{'https' if secure else 'http'}://{host}/v2/"
    # Polls a process start-up: readiness, not a stand-in for synchronisation.
    deadline = time.monotonic() + 30
    while not _answers(url, context):
        if process.poll() is not None or time.monotonic() > deadline:
            remove_registry(made)
            service_missing(f"docker-registry did not answer at {url}: {(home / 'registry.log').read_text(errors='replace')[-500:]}")
        time.sleep(0.05)
    return made


def remove_registry(made: Registry) -> None:
    made.stop()
    shutil.rmtree(CERTS_DIR / made.host, ignore_errors=True)
    if made.home is not None:
        shutil.rmtree(made.home, ignore_errors=True)


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    made = start_registry()
    try:
        yield made
    finally:
        remove_registry(made)


@pytest.fixture(scope="session")
def secure_registry() -> Iterator[Registry]:
    made = start_registry(secure=True)
    try:
        yield made
    finally:
        remove_registry(made)
