"""Ed25519 key files: generating, loading, signing and checking signatures.

A key pair is two PEM files sharing a stem, which is the key id (``kid``):
``<kid>.key`` (PKCS#8 private key, mode 0600) and ``<kid>.pub`` (SubjectPublicKeyInfo).
The audit key signs checkpoints and export manifests; the same file format serves the
request-signing keys of the bot and the executor.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.canonical import canonical_json
from audit.errors import AuditError, Tampered
from audit.files import make_private_dir

KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeyFileError(AuditError):
    """A key file that is missing, unreadable, not Ed25519 PEM, or would be overwritten."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, message: bytes) -> str:
        """The base64 signature of ``message``."""
        return base64.b64encode(self.private.sign(message)).decode("ascii")


def check_kid(kid: str) -> str:
    if not KID_PATTERN.fullmatch(kid):
        raise KeyFileError(
            f"key id {kid!r} is not usable: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return kid


def kid_of(path: Path) -> str:
    return path.stem


def generate_key_pair(out_dir: Path, kid: str) -> tuple[Path, Path]:
    """Write ``out_dir/<kid>.key`` (0600) and ``out_dir/<kid>.pub``; never overwrite."""
    check_kid(kid)
    key_path, pub_path = out_dir / f"{kid}.key", out_dir / f"{kid}.pub"
    for path in (key_path, pub_path):
        if path.exists():
            raise KeyFileError(f"{path}: already exists; choose another --kid or move the old key away")
    try:
        make_private_dir(out_dir)  # a new key directory is the owner's alone
    except OSError as exc:
        raise KeyFileError(f"{out_dir}: cannot create the key directory: {exc.strerror}") from None
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(key_path, private_pem, 0o600)
    _write_new(pub_path, public_pem, 0o644)
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we promise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None


def load_signing_key(path: Path) -> SigningKey:
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return SigningKey(kid_of(path), key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key in ``path``, which may hold a public or a private Ed25519 PEM key."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The key at ``path``, generated (with its ``.pub`` beside it) when absent."""
    if not path.exists():
        if path.suffix != ".key":
            raise KeyFileError(f"{path}: a generated key file must end in .key")
        generate_key_pair(path.parent, path.stem)
    return load_signing_key(path)


def signature_holds(public: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public.verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signed_message(purpose: bytes, document: Mapping[str, Any]) -> bytes:
    return purpose + canonical_json(dict(document)).encode("utf-8")


def check_signature(
    path: Path,
    document: Mapping[str, Any],
    purpose: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    seq: int,
    unknown_key: type[Exception],
) -> None:
    """Raise ``unknown_key`` for a key id we do not trust, ``Tampered`` for a bad signature."""
    kid = document.get("kid")
    if not isinstance(kid, str) or kid not in trusted:
        known = ", ".join(sorted(trusted)) or "none"
        raise unknown_key(
            f"{path}: signed by unknown key {kid!r} (trusted audit keys: {known}); "
            "pass its public key with --key FILE"
        )
    signature = document.get("signature")
    unsigned = {name: value for name, value in document.items() if name != "signature"}
    if not isinstance(signature, str) or not signature_holds(trusted[kid], signature, signed_message(purpose, unsigned)):
        raise Tampered(seq, f"{path.name}: the signature does not hold (the file was altered)")
