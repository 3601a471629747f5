"""Fuzzing the executor's socket: thousands of random and mutated requests, none accepted.

One daemon takes the whole storm, in batches, over its real Unix socket: random bodies and
content types, valid tokens with bytes flipped, cut or duplicated, tokens with hostile
claims re-signed with an untrusted key (or HS256 with the public key, ``alg: none``, a
transplanted signature), tokens the trusted key signed for nobody with a role but full of
hostile values, random JSON, oversized bodies, and malformed HTTP written straight to the
socket. Every answer must be a 4xx, the daemon must answer a signed ``whoami`` between
batches, nothing but those control requests may have run, and the audit chain must verify.

The generator is seeded (``WINGMAN_FUZZ_SEED``; the default is fixed) so a run's choices
repeat; keys, token ids and times differ per run, so a failure prints the input itself.

Two inputs the storm found answered 500 (since fixed) keep a test of their own below: a body
that does not decode in its ``Content-Encoding``, and a ``Content-Type`` parameter that
aiohttp's header parser raises on. A third, ``CONNECT`` with no target, kills aiohttp's
connection task (an aiohttp bug): it is left out of the storm and kept as an xfail below.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import gzip
import hashlib
import hmac
import json
import logging
import os
import random
import re
import string
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit import SigningKey, verify_chain
from executor.client import ExecutorClient, ExecutorUnreachable
from executor.protocol import CONTENT_TYPE, ISSUER, MAX_BODY, PATH, make_token
from policy import CATALOGUE
from tests.harness import ADMIN, APPROVER, APPROVER2, AUDIENCE, OPERATOR, STRANGER, VIEWER, Harness

# The fuzz needs no Docker: keep the daemon's start-up recovery away from the host's engine
# (and from the containers of whatever else runs on it).
NO_DOCKER = "unix:///nonexistent/docker.sock"


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> Harness:
    made: Harness = await make_harness(docker_host=NO_DOCKER)
    return made


SEED = int(os.environ.get("WINGMAN_FUZZ_SEED", "20260522"))
BATCHES = 10
CONCURRENCY = 32
CONTROL_TIMEOUT = 10.0
RAW_FIRST_ANSWER_WAIT = 1.0
ROLE_IDS = (ADMIN, APPROVER, APPROVER2, OPERATOR, VIEWER)
# Cases of each kind per batch (plus three at the size limit); BATCHES times that is about
# the number of requests sent (pipelined raw cases send several).
PER_BATCH = {
    "random_bytes": 150,
    "content_type": 100,
    "token_mutation": 300,
    "untrusted_claims": 200,
    "random_json": 100,
    "hostile_trusted": 100,
    "oversized": 20,
    "raw_http": 250,
}
# What each kind may answer besides "some 4xx" (None: any 4xx).
EXPECTED: dict[str, set[int] | None] = {
    "random_bytes": {400, 401},
    "content_type": None,
    "token_mutation": {400, 401},
    "untrusted_claims": {401},
    "random_json": None,
    "hostile_trusted": None,
    "oversized": {413, 415},
    "boundary": None,  # each boundary case carries its own expected code
    "raw_http": None,
}


# -- building tokens by hand ----------------------------------------------------------------


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signing_input(header: bytes, payload: bytes) -> bytes:
    return b64url(header) + b"." + b64url(payload)


def ed25519_token(private: Ed25519PrivateKey, header: bytes, payload: bytes) -> bytes:
    message = signing_input(header, payload)
    return message + b"." + b64url(private.sign(message))


def token_identity(body: bytes) -> tuple[bytes, bytes] | None:
    """What a verifier sees of a body: (signing input, signature bytes), decoded leniently.

    Lenient on purpose (padding bits, trailing '=', '+' and '/'): it is a superset of what
    PyJWT accepts, so a mutation it calls "the same token" is never sent as a fuzzed one.
    """
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    message, dot, crypto = text.rpartition(".")
    if not dot or not message:
        return None
    crypto = crypto.rstrip("=").translate(str.maketrans("-_", "+/"))
    try:
        signature = base64.b64decode(crypto + "=" * (-len(crypto) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return message.encode("ascii"), signature


def claims_for(user: int | None, action: str, args: dict[str, Any] | None = None, now: int | None = None) -> dict[str, Any]:
    issued = int(time.time()) if now is None else now
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + 30,
        "jti": os.urandom(16).hex(),
        "sub": "bot" if user is None else f"tg:{user}",
        "req": {"action": action, "args": dict(args or {}), "chat": {}},
    }


# -- random material ----------------------------------------------------------------------------

B64_ALPHABET = string.ascii_letters + string.digits + "-_"
ACTIONS = sorted(CATALOGUE) + ["approval.approve", "approval.reject", "approval.cancel", "outbox.poll", "outbox.ack"]
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "é",
    "𝔘",
    "../../etc/passwd",
    "'; DROP TABLE audit_log; --",
    "${jndi:ldap://x}",
    "%s%n",
    "A" * 300,
    "\r\n",
    "tg:1",
    "bot",
]
RAW_JSON_FRAGMENTS = [
    '"\\ud800"',  # a lone surrogate
    '"\\udfff\\ud800"',
    '"\\u0000"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-0.0",
    "1.5",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "18446744073709551616",
    "true",
    "null",
    "[]",
    "{}",
]


def random_text(rng: random.Random, limit: int = 40) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(NASTY_STRINGS)
    if pick < 0.6:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, limit)))
    return "".join(chr(rng.choice((rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)))) for _ in range(rng.randint(0, limit)))


def json_text(rng: random.Random, depth: int = 0) -> str:
    """Random JSON text, including what Python parses but canonical JSON refuses."""
    pick = rng.random()
    if depth >= 4 or pick < 0.45:
        kind = rng.random()
        if kind < 0.3:
            return rng.choice(RAW_JSON_FRAGMENTS)
        if kind < 0.45:
            return str(rng.randint(-(10**30), 10**30))
        if kind < 0.5:
            return "9" * rng.randint(20, 5000)  # Python refuses more than 4300 digits
        if kind < 0.55:
            return repr(rng.uniform(-1e9, 1e9))
        return json.dumps(random_text(rng), ensure_ascii=rng.random() < 0.5)
    if pick < 0.5:
        deep = rng.choice((50, 200, 900, 1500, 5000))
        return "[" * deep + "]" * deep
    if pick < 0.75:
        return "[" + ",".join(json_text(rng, depth + 1) for _ in range(rng.randint(0, 5))) + "]"
    return object_text(rng, depth + 1)


def object_text(rng: random.Random, depth: int = 0) -> str:
    keys = [random_text(rng, 10) for _ in range(rng.randint(0, 5))]
    if keys and rng.random() < 0.2:
        keys.append(keys[0])  # a duplicate key
    pairs = (json.dumps(k, ensure_ascii=rng.random() < 0.5) + ":" + json_text(rng, depth) for k in keys)
    return "{" + ",".join(pairs) + "}"


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three random edits: flips, overwrites, cuts, duplications, insertions, swaps."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            out += random_bytes(rng, rng.randint(1, 8))
            continue
        i = rng.randrange(len(out))
        j = rng.randrange(i, len(out)) + 1
        op = rng.randrange(12)
        if op == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i] = rng.randrange(256)
        elif op == 2:
            out[i] = ord(rng.choice(B64_ALPHABET + ".="))
        elif op == 3:
            del out[i:]  # truncate
        elif op == 4:
            del out[i:j]  # cut a slice
        elif op == 5:
            out[j:j] = out[i:j]  # duplicate a slice
        elif op == 6:
            out[i:i] = random_bytes(rng, rng.randint(1, 16))
        elif op == 7:
            parts = bytes(out).split(b".")
            rng.shuffle(parts)
            out = bytearray(b".".join(parts))
        elif op == 8:
            parts = bytes(out).split(b".")
            k = rng.randrange(len(parts))
            parts.insert(k, parts[k])  # duplicate a segment
            out = bytearray(b".".join(parts))
        elif op == 9:
            out = bytearray(bytes(out) + rng.choice((b".", b"..", b".x", b"." + bytes(out))))
        elif op == 10:
            out[i] = ord(chr(out[i]).swapcase()) if chr(out[i]).isalpha() else out[i] ^ 0x20
        else:
            out = bytearray(bytes(out).replace(b".", b"", 1))
    return bytes(out)


# -- outcomes ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    sent: bytes
    codes: list[int] = field(default_factory=list)  # final status codes answered (raw: possibly several)
    content_type: str | None = None
    expected: set[int] | None = None
    request_id: str | None = None
    json_answer: bool = False
    note: str = ""

    def describe(self) -> str:
        shown = self.sent if len(self.sent) <= 300 else self.sent[:200] + b"...(%d bytes)..." % len(self.sent) + self.sent[-60:]
        return f"[{self.kind}] content-type={self.content_type!r} codes={self.codes} {self.note} sent={shown!r}"


class Storm:
    """Generates the cases, sends them, and keeps what came back."""

    def __init__(self, harness: Harness, client: ExecutorClient, rng: random.Random) -> None:
        self.harness = harness
        self.client = client
        self.rng = rng
        self.socket = str(harness.settings.socket_path)
        self.bot_key: SigningKey = harness.bot_key
        self.attacker = Ed25519PrivateKey.generate()
        public = self.bot_key.public
        self.public_raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        self.outcomes: list[Outcome] = []
        self.skipped_equivalent = 0
        self.gzip_bomb = gzip.compress(b"A" * 10_000_000)  # 10 MB from about 10 KB
        self.raw_timeouts = 0
        self.limit = asyncio.Semaphore(CONCURRENCY)

    # -- the kinds of case; each returns a coroutine that sends it -----------------------------

    def random_bytes_case(self) -> Outcome:
        rng = self.rng
        shape = rng.random()
        if shape < 0.4:
            body = random_bytes(rng, rng.choice((0, 1, rng.randint(2, 200), rng.randint(200, 5000))))
        elif shape < 0.7:
            body = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 400))).encode()
        elif shape < 0.9:
            segments = ["".join(rng.choice(B64_ALPHABET) for _ in range(rng.randint(0, 120))) for _ in range(rng.choice((2, 3, 3, 3, 4, 5)))]
            body = ".".join(segments).encode()
        else:
            body = rng.choice((b"", b" ", b"\r\n\t ", b"\x0b\x0c\x1c", b"..", b"...", b"a.b.c", random_bytes(rng, rng.randint(60_000, MAX_BODY))))
        return Outcome("random_bytes", body, content_type=CONTENT_TYPE)

    def content_type_case(self) -> Outcome:
        rng = self.rng
        ctype = rng.choice(
            (
                "",
                "application/json",
                "text/plain",
                "application/jose",
                "application/jwt-x",
                "application/jwt; charset=utf-8",
                "APPLICATION/JWT",
                " application/jwt ",
                "application/jwt;;;",
                'application/jwt; q="\\"',
                "multipart/form-data; boundary=xyz",
                "application/x-www-form-urlencoded",
                "*/*",
                "application/*",
                "application",
                "/",
                ";",
                "\t",
            )
        )
        if rng.random() < 0.5:
            ctype = "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " \t") for _ in range(rng.randint(0, 80)))
        pick = rng.random()
        if pick < 0.4:
            # A real token for someone with no role: even if the type slipped through, 403.
            body = make_token(self.bot_key, audience=AUDIENCE, user_id=STRANGER, action="whoami").encode()
        elif pick < 0.6:
            body = b"--xyz\r\nContent-Disposition: form-data; name=token\r\n\r\nabc\r\n--xyz--\r\n"
        else:
            body = random_bytes(rng, rng.randint(0, 300))
        return Outcome("content_type", body, content_type=ctype)

    def token_mutation_case(self) -> Outcome | None:
        rng = self.rng
        action = rng.choice(("whoami", "help", "status", "restart", "deploy", "approval.approve", "outbox.poll"))
        user = None if action.startswith("outbox") else rng.choice(ROLE_IDS)
        args = {"target": "web"} if action in ("restart", "deploy") else {"id": "abc"} if action.startswith("approval") else {}
        original = make_token(self.bot_key, audience=AUDIENCE, user_id=user, action=action, args=args).encode()
        identity = token_identity(original)
        for _ in range(10):
            body = mutate(rng, original)
            if token_identity(body) != identity:
                return Outcome("token_mutation", body, content_type=CONTENT_TYPE, note=f"(from a valid {action} token)")
            self.skipped_equivalent += 1  # the same token spelt differently: not a fuzzed request
        return None

    def untrusted_claims_case(self) -> Outcome:
        rng = self.rng
        now = int(time.time())
        header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT", "kid": self.bot_key.kid}
        for _ in range(rng.choice((0, 0, 1, 2))):
            key, value = rng.choice(
                (
                    ("alg", rng.choice(("none", "None", "HS256", "RS256", "ES256", "eddsa", "Ed25519", "", None, 1, ["EdDSA"]))),
                    ("kid", rng.choice(("bot ", "BOT", "../bot", "bot\x00", "", None, 1, ["bot"], random_text(rng, 20)))),
                    ("crit", ["exp"]),
                    ("b64", False),
                    ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()}),
                    ("jku", "http://attacker.invalid/keys"),
                    ("x5u", "http://attacker.invalid/cert"),
                    ("typ", rng.choice(("JWS", "", None, "at+jwt"))),
                    ("zip", "DEF"),
                )
            )
            header[key] = value
        user = rng.choice((ADMIN, ADMIN, APPROVER, OPERATOR, None))
        action = rng.choice(ACTIONS)
        claims = claims_for(user, action, {"target": rng.choice(("web", "100", "db"))}, now)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            name = rng.choice(list(claims) + ["extra"])
            op = rng.random()
            if op < 0.2:
                claims.pop(name, None)
            elif op < 0.5:
                claims[name] = json.loads(rng.choice(('"x"', "0", "-1", "null", "true", "[]", "{}", "1e10", '"tg:1"', "9999999999")))
            else:
                claims[name] = rng.choice(
                    (
                        now + 10**6,
                        now - 10**6,
                        [AUDIENCE],
                        AUDIENCE + " ",
                        ISSUER.upper(),
                        "tg:1",
                        "tg:01",
                        "tg:-1",
                        "bot",
                        "0" * 32,
                        "A" * 32,
                        {"action": "deploy", "args": {"target": "web", "image": "evil:latest"}, "chat": {}},
                        {"action": "approval.approve", "args": {"id": "x"}},
                    )
                )
        header_json = json.dumps(header).encode()
        payload_json = json.dumps(claims).encode()
        signing = rng.random()
        if signing < 0.55:
            body = ed25519_token(self.attacker, header_json, payload_json)
            how = "attacker's Ed25519 key"
        elif signing < 0.67:
            header["alg"] = "HS256"
            header_json = json.dumps(header).encode()
            secret = rng.choice((self.public_raw, self.public_pem))
            message = signing_input(header_json, payload_json)
            body = message + b"." + b64url(hmac.new(secret, message, hashlib.sha256).digest())
            how = "HS256 keyed with the trusted public key"
        elif signing < 0.77:
            header["alg"] = rng.choice(("none", "None", "NONE"))
            body = signing_input(json.dumps(header).encode(), payload_json) + rng.choice((b".", b""))
            how = "alg none"
        elif signing < 0.9:
            donor = make_token(self.bot_key, audience=AUDIENCE, user_id=STRANGER, action="whoami").encode()
            body = signing_input(header_json, payload_json) + b"." + donor.rsplit(b".", 1)[1]
            how = "a signature transplanted from a real token"
        else:
            body = signing_input(header_json, payload_json) + b"." + b64url(random_bytes(rng, 64))
            how = "random signature bytes"
        return Outcome("untrusted_claims", body, content_type=CONTENT_TYPE, note=f"({how}; claims {claims!r:.200})")

    def random_json_case(self) -> Outcome:
        rng = self.rng
        text = object_text(rng) if rng.random() < 0.5 else json_text(rng)
        body = text.encode("utf-8", "surrogatepass")
        ctype = rng.choice((CONTENT_TYPE, CONTENT_TYPE, "application/json", "text/plain"))
        return Outcome("random_json", body, content_type=ctype)

    def hostile_trusted_case(self) -> Outcome:
        """The trusted key signs hostile values, for subjects no request from can succeed."""
        rng = self.rng
        subject = rng.choice(
            (f"tg:{STRANGER}", "tg:0", "tg:7", f"tg:{rng.randint(6, 10**12)}", "tg:99999999999999999999", "bot")
        )
        actions = [a for a in ACTIONS if not a.startswith("outbox.")] if subject == "bot" else ACTIONS
        action_text = json.dumps(rng.choice(actions + ["x", "zzz.unknown", "a" * 32]))
        if rng.random() < 0.1:
            action_text = json_text(rng)
        args = object_text(rng) if rng.random() < 0.85 else json_text(rng)
        chat = object_text(rng) if rng.random() < 0.85 else json_text(rng)
        now = int(time.time())
        payload = (
            '{"iss":"%s","aud":"%s","iat":%d,"nbf":%d,"exp":%d,"jti":"%s","sub":"%s",'
            '"req":{"action":%s,"args":%s,"chat":%s}}'
        ) % (ISSUER, AUDIENCE, now, now, now + 30, os.urandom(16).hex(), subject, action_text, args, chat)
        header = json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": self.bot_key.kid}).encode()
        body = ed25519_token(self.bot_key.private, header, payload.encode("utf-8", "surrogatepass"))
        return Outcome("hostile_trusted", body, content_type=CONTENT_TYPE, note=f"(payload {payload[:300]!r})")

    def oversized_case(self) -> Outcome:
        rng = self.rng
        size = rng.choice((MAX_BODY + 1, MAX_BODY + rng.randint(2, 5000), rng.randint(MAX_BODY, 300_000), 1_100_000))
        filler = rng.choice((b"A", b".", b" ", b"\x00"))
        pick = rng.random()
        if pick < 0.3:
            # A valid admin token padded with white space the executor would strip: still 413.
            token = make_token(self.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami").encode()
            body = token + b" " * (size - len(token))
        elif pick < 0.6:
            body = filler * size
        else:
            body = random_bytes(rng, size)
        ctype = CONTENT_TYPE if rng.random() < 0.85 else "text/plain"
        return Outcome("oversized", body, content_type=ctype, expected={413} if ctype == CONTENT_TYPE else {415})

    def boundary_cases(self) -> list[Outcome]:
        """Exactly at the limit is read; one byte more is not."""
        stranger = make_token(self.bot_key, audience=AUDIENCE, user_id=STRANGER, action="whoami").encode()
        admin = make_token(self.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami").encode()
        return [
            Outcome("boundary", b"A" * MAX_BODY, content_type=CONTENT_TYPE, expected={401}),
            Outcome("boundary", stranger + b" " * (MAX_BODY - len(stranger)), content_type=CONTENT_TYPE, expected={403}),
            Outcome("boundary", admin + b" " * (MAX_BODY + 1 - len(admin)), content_type=CONTENT_TYPE, expected={413}),
        ]

    # -- raw HTTP ------------------------------------------------------------------------------

    def raw_request(self, *, method: bytes = b"POST", path: bytes = PATH.encode(), version: bytes = b"HTTP/1.1",
                    headers: list[bytes] | None = None, body: bytes | None = None, length: bool = True) -> bytes:  # fmt: skip
        if body is None:
            body = self.rng.choice((b"garbage", b"", ed25519_token(self.attacker, b'{"alg":"EdDSA","kid":"bot"}', b"{}")))
        lines = [method + b" " + path + b" " + version, b"Host: executor", b"Content-Type: " + CONTENT_TYPE.encode()]
        lines += headers or []
        if length:
            lines.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def raw_http_case(self) -> tuple[Outcome, list[bytes], str, int, float]:
        """An outcome and how to send it: the writes, the ending, the answers to wait for, a pause."""
        rng = self.rng
        ending, expected_answers, pause = "keep", 1, 0.0
        shape = rng.randrange(16)
        if shape == 0:  # a garbage request line
            line = random_bytes(rng, rng.randint(0, 200)).replace(b"\r", b"").replace(b"\n", b"")
            data = line + rng.choice((b"\r\n\r\n", b"\n\n", b"\r\n", b"\r\r\r\r", b"\r\nHost: x\r\n\r\n"))
        elif shape == 1:  # a well-formed request with one to three bytes changed anywhere
            data = mutate(rng, self.raw_request())
        elif shape == 2:  # a bad header
            bad = rng.choice(
                (
                    b"NoColonHere",
                    b" Leading: space",
                    b"Bad Name: x",
                    b"X-Nul: a\x00b",
                    b"X-High: \xff\xfe\x80",
                    b"X-Fold: a\r\n continued",
                    b": empty name",
                    b"X-Bare: a\nY: b",
                    b"X-CR: a\rb",
                    b"Content-Length: 5\r\nContent-Length: 6",
                    b"Content-Length: -1",
                    b"Content-Length: +3",
                    b"Content-Length: 99999999999999999999999",
                    b"Content-Length: 0x10",
                    b"Content-Length: 3 3",
                    b"Transfer-Encoding: chunked",
                    b"Transfer-Encoding: xchunked",
                    b"Transfer-Encoding: chunked, identity",
                    b"Transfer-Encoding: identity",
                    b"Host: second",
                    b"Content-Type: text/plain",
                    b"Expect: 100-continue",
                    b"Expect: something-else",
                    b"Connection: upgrade\r\nUpgrade: websocket",
                    b"Connection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
                    b"Connection: keep-alive, close, \x01",
                    b"X-" + random_bytes(rng, 8).replace(b"\r", b"").replace(b"\n", b"") + b": " + random_bytes(rng, 20).replace(b"\r", b"").replace(b"\n", b""),
                )
            )
            data = self.raw_request(headers=[bad])
        elif shape == 3:  # huge headers: one long line, too many, a long request line
            which = rng.randrange(3)
            if which == 0:
                data = self.raw_request(headers=[b"X-Big: " + b"a" * rng.choice((8_000, 8_190, 8_200, 70_000, 200_000))])
            elif which == 1:
                data = self.raw_request(headers=[b"X-%d: v" % i for i in range(rng.choice((120, 129, 500, 5_000)))])
            else:
                data = self.raw_request(path=b"/" + b"a" * rng.choice((8_100, 8_200, 100_000)))
        elif shape == 4:  # methods, paths and versions (never a GET of the health check)
            method = rng.choice((b"GET", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT", b"PRI", b"FOO", b"post", b"P\x00ST", b""))
            path = rng.choice(
                (PATH.encode(), b"/", b"*", b"http://executor/v1/request", b"/v1/request?x=1", b"/v1/request#x", b"/v1//request",
                 b"/v1/%72equest", b"/v1/request/", b"/v1/../v1/request", b"/\xff", b"/v1/health", b"", b"//", b"/%00")
            )  # fmt: skip
            if method in (b"GET", b"HEAD") and b"health" in path:
                path = b"/v1/nowhere"
            if method == b"CONNECT" and not path:
                path = b"executor:80"  # see test_a_connect_with_no_target_is_answered (an aiohttp bug)
            version = rng.choice((b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1.1 x", b"http/1.1", b"", b"HTTP/11"))
            data = self.raw_request(method=method, path=path, version=version)
        elif shape == 5:  # chunked bodies, good and bad
            chunks = rng.choice(
                (
                    b"7\r\ngarbage\r\n0\r\n\r\n",
                    b"3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
                    b"zz\r\nabc\r\n0\r\n\r\n",
                    b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
                    b"-3\r\nabc\r\n0\r\n\r\n",
                    b"3\r\nabcdef\r\n0\r\n\r\n",
                    b"3\nabc\n0\n\n",
                    b"0\r\nBad Trailer\r\n\r\n",
                    b"".join(b"2000\r\n" + b"a" * 0x2000 + b"\r\n" for _ in range(9)) + b"0\r\n\r\n",  # over 64 KiB
                )
            )
            data = self.raw_request(headers=[b"Transfer-Encoding: chunked"], body=chunks, length=False)
        elif shape == 6:  # several requests pipelined in one write
            expected_answers = rng.randint(2, 4)
            data = b"".join(self.raw_request() for _ in range(expected_answers))
        elif shape == 7:  # half-closed after a complete or partial request
            data = self.raw_request()
            data = data[: rng.randint(0, len(data))] if rng.random() < 0.5 else data
            ending = "eof"
        elif shape == 8:  # cut anywhere and dropped
            data = self.raw_request(body=random_bytes(rng, rng.randint(0, 2000)))
            data = data[: rng.randint(0, len(data))]
            ending = "close"
        elif shape == 9:  # connect and hang up, or send nothing but white space
            data = rng.choice((b"", b"\r\n", b"\r\n\r\n", b" " * 100))
            ending = rng.choice(("close", "eof"))
        elif shape == 10:  # a complete request in small pieces
            data = self.raw_request()
            pause = 0.002
        elif shape == 11:  # the body longer or shorter than Content-Length says
            body = b"garbage-body"
            declared = rng.choice((0, 1, len(body) - 1, len(body) + 1, len(body) + 1000))
            data = self.raw_request(headers=[b"Content-Length: %d" % declared], body=body, length=False)
            ending = "eof" if declared > len(body) else "keep"
        elif shape == 12:  # Content-Length and Transfer-Encoding together (request smuggling)
            data = self.raw_request(headers=[b"Transfer-Encoding: chunked", b"Content-Length: 4"], body=b"0\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", length=False)
        elif shape == 13:  # random bytes after a valid head
            data = self.raw_request(body=b"", length=False) + random_bytes(rng, rng.randint(1, 3000))
            ending = "eof"
        elif shape == 14:  # entirely random bytes
            data = random_bytes(rng, rng.randint(1, 4000))
            ending = rng.choice(("keep", "eof"))
        else:  # compressed bodies: good, bad, lying, and a bomb
            encoding, body = rng.choice(
                (
                    (b"gzip", gzip.compress(b"garbage")),
                    (b"deflate", zlib.compress(b"garbage")),
                    (b"gzip", b"garbage, not gzip"),
                    (b"deflate", b"garbage, not deflate"),
                    (b"br", b"garbage"),
                    (b"zstd", b"garbage"),
                    (b"gzip, deflate", gzip.compress(b"garbage")),
                    (b"x-unknown", b"garbage"),
                    (b"gzip", gzip.compress(b"garbage")[:-4]),  # truncated
                    (b"gzip", self.gzip_bomb),
                )
            )
            data = self.raw_request(headers=[b"Content-Encoding: " + encoding], body=body)
        pieces = [data] if pause == 0 else [data[i : i + 7] for i in range(0, len(data), 7)][:40] + [data[280:]]
        return Outcome("raw_http", data, note=f"(ending={ending})"), pieces, ending, expected_answers, pause

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, outcome: Outcome) -> None:
        async with self.limit:
            try:
                reply = await self.client.send_raw(outcome.sent, outcome.content_type or "")
            except ExecutorUnreachable as exc:
                outcome.note += f" no answer: {exc}"
            else:
                outcome.codes.append(reply.http_status)
                outcome.request_id = reply.request_id
                outcome.json_answer = reply.status != "bad_response"
        self.outcomes.append(outcome)

    async def send_raw(self, outcome: Outcome, pieces: list[bytes], ending: str, answers: int, pause: float) -> None:
        async with self.limit:
            reader, writer = await asyncio.open_unix_connection(self.socket)
            try:
                try:
                    for piece in pieces:
                        writer.write(piece)
                        if pause:
                            await writer.drain()
                            await asyncio.sleep(pause)
                    await writer.drain()
                    if ending == "eof":
                        writer.write_eof()
                except (ConnectionError, OSError):
                    pass  # the executor hung up first; what it said is still in the buffer
                if ending != "close":
                    outcome.codes, timed_out, garbage = await read_answers(reader, answers)
                    self.raw_timeouts += timed_out
                    if garbage:
                        outcome.codes.append(-1)  # not HTTP: counted as a failure below
                        outcome.note += f" the executor wrote something that is not HTTP: {garbage[:80]!r}"
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (ConnectionError, OSError):
                    pass
        self.outcomes.append(outcome)

    def batch(self) -> list[Any]:
        makers: dict[str, Callable[[], Any]] = {
            "random_bytes": self.random_bytes_case,
            "content_type": self.content_type_case,
            "token_mutation": self.token_mutation_case,
            "untrusted_claims": self.untrusted_claims_case,
            "random_json": self.random_json_case,
            "hostile_trusted": self.hostile_trusted_case,
            "oversized": self.oversized_case,
        }
        sends: list[Any] = []
        for kind, count in PER_BATCH.items():
            for _ in range(count):
                if kind == "raw_http":
                    sends.append(self.send_raw(*self.raw_http_case()))
                    continue
                made = makers[kind]()
                if made is not None:
                    sends.append(self.send(made))
        sends += [self.send(outcome) for outcome in self.boundary_cases()]
        self.rng.shuffle(sends)
        return sends


STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})[^\r\n]*\r?\n")  # aiohttp answers in the version asked in


def parse_answer(buf: bytes, eof: bool) -> tuple[int, int] | None:
    """(status, bytes used) of the first complete HTTP answer in ``buf``; None: incomplete."""
    match = STATUS_LINE.match(buf)
    if match is None:
        if len(buf) >= 12 or (eof and buf):
            raise ValueError(buf)
        return None
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status = int(match.group(1))
    head = buf[:end].decode("latin-1").lower().split("\r\n")[1:]
    fields = dict(line.split(":", 1) for line in head if ":" in line)
    start = end + 4
    if 100 <= status < 200 or status in (204, 304):
        return status, start
    if "content-length" in fields:
        total = start + int(fields["content-length"].strip())
        return (status, total) if len(buf) >= total else None
    if "chunked" in fields.get("transfer-encoding", ""):
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(buf[pos:line_end].split(b";")[0], 16)
            pos = line_end + 2 + size + 2
            if size == 0:
                return (status, pos) if len(buf) >= pos else None
            if len(buf) < pos:
                return None
    return (status, len(buf)) if eof else None


async def read_answers(reader: asyncio.StreamReader, wanted: int) -> tuple[list[int], int, bytes]:
    """The final status codes answered (up to ``wanted``), whether it timed out, any non-HTTP bytes."""
    buf, codes, eof = b"", [], False
    while len(codes) < wanted:
        try:
            parsed = parse_answer(buf, eof)
        except ValueError:
            return codes, 0, buf
        if parsed is not None:
            status, used = parsed
            buf = buf[used:]
            if status >= 200:
                codes.append(status)
            continue
        if eof:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(65536), RAW_FIRST_ANSWER_WAIT)
        except asyncio.TimeoutError:
            return codes, 1, b""
        except (ConnectionError, OSError):
            chunk = b""
        eof = not chunk
        buf += chunk
    return codes, 0, b""


# -- the storm --------------------------------------------------------------------------------------


def tolerated_error_log(record: logging.LogRecord) -> bool:
    """aiohttp's own ERROR records about a request that was answered 4xx or cannot be answered.

    - "Error handling request": a request its HTTP parser refused (it answers 400 itself);
    - ``ConnectionResetError``: the client went away while the handler read its body;
    - "Unhandled exception" with ``RequestPayloadError``: after the executor answered 400 to a
      body it cannot decode, aiohttp drains the rest of that body and logs the same error again.
    Anything else at ERROR fails the storm.
    """
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    if record.name != "aiohttp.server" or not record.exc_info or record.exc_info[1] is None:
        return False
    exc = record.exc_info[1]
    if isinstance(exc, ConnectionResetError):
        return True
    if isinstance(exc, RequestPayloadError):
        return record.getMessage() == "Unhandled exception"
    text = "".join(traceback.format_exception(exc))
    return isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500 and "executor/server.py" not in text


@pytest.mark.slow
async def test_fuzzed_requests_are_all_refused_and_the_daemon_survives(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    caplog.set_level(logging.WARNING)
    control = harness.client()
    fuzz_client = harness.client()
    storm = Storm(harness, fuzz_client, random.Random(SEED))
    control_ids: set[str] = set()

    async def still_answers(moment: str) -> None:
        reply = await asyncio.wait_for(control.call(ADMIN, "whoami"), CONTROL_TIMEOUT)
        assert (reply.http_status, reply.status) == (200, "done"), f"{moment}: the control whoami got {reply}"
        assert reply.request_id is not None
        control_ids.add(reply.request_id)

    started = time.monotonic()
    try:
        await still_answers("before the storm")
        for number in range(BATCHES):
            await asyncio.gather(*storm.batch())
            await still_answers(f"after batch {number + 1}")
    finally:
        loop.set_exception_handler(previous_handler)
    elapsed = time.monotonic() - started

    outcomes = storm.outcomes
    requests = sum(max(1, len(o.codes)) for o in outcomes)
    assert requests >= 10_000, f"only {requests} requests were sent"

    failures = []
    for outcome in outcomes:
        for code in outcome.codes:
            expected = outcome.expected if outcome.expected is not None else EXPECTED[outcome.kind]
            if not 400 <= code < 500 or (expected is not None and code not in expected):
                failures.append(outcome.describe())
                break
    assert not failures, f"{len(failures)} fuzzed requests got an answer they must not:\n" + "\n".join(failures[:20])

    by_kind = Counter(o.kind for o in outcomes)
    answered = Counter(o.kind for o in outcomes if o.codes)
    for kind in ("random_bytes", "token_mutation", "untrusted_claims", "random_json", "hostile_trusted", "boundary"):
        assert answered[kind] >= 0.98 * by_kind[kind], f"{kind}: only {answered[kind]} of {by_kind[kind]} answered"
    assert answered["oversized"] >= 0.5 * by_kind["oversized"]  # a 413 may come while the body is still being sent

    # Nothing ran but the control requests, nothing even passed policy, everything answered is on record.
    store = harness.executor.audit
    entries = await store.tail(await store.count())
    executed = {e.request_id for e in entries if e.decision == "executed"}
    assert executed == control_ids, f"actions ran that were not the controls: {executed - control_ids}"
    passed_policy = [
        e for e in entries if e.actor != "system" and e.decision in ("allowed", "needs_approval", "approved", "done")
    ]
    assert passed_policy == []
    audited_ids = {e.request_id for e in entries}
    unaudited = [o.describe() for o in outcomes if o.request_id and o.request_id not in audited_ids]
    assert not unaudited, "answered but not audited:\n" + "\n".join(unaudited[:10])
    json_answers = sum(1 for o in outcomes if o.json_answer)
    fuzz_entries = sum(1 for e in entries if e.request_id not in control_ids and e.actor != "system")
    assert fuzz_entries >= json_answers
    report = await verify_chain(store, None, {})
    assert report.ok, report.summary()

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and not tolerated_error_log(r)]
    assert not errors, "unexpected errors logged:\n" + "\n".join(
        "".join(traceback.format_exception(*r.exc_info)) if r.exc_info else r.getMessage() for r in errors[:5]
    )
    assert not loop_errors, "unhandled errors in the event loop:\n" + "\n".join(
        f"{context.get('message')}: " + "".join(traceback.format_exception(context["exception"]))
        if context.get("exception") is not None else repr(context)
        for context in loop_errors[:5]
    )

    codes = Counter(code for o in outcomes for code in o.codes)
    print(
        f"\nfuzz: {requests} requests in {elapsed:.1f} s (seed {SEED}); answers {dict(sorted(codes.items()))};"
        f" unanswered {dict(by_kind - answered)}; raw reads timed out {storm.raw_timeouts};"
        f" equivalent mutations not sent {storm.skipped_equivalent}; audit entries {len(entries)}"
    )


# -- single cases the storm found or must not forget ------------------------------------------------


async def test_one_signed_token_is_accepted_once_however_it_is_spelt(harness: Harness) -> None:
    """Trailing '=' and surrounding white space spell the same token: its jti is used up once."""
    client = harness.client()
    token = make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami")
    spellings = [token + "==", f" {token}\n", token]
    codes = [(await client.send_token(spelling)).http_status for spelling in spellings]
    assert codes.count(200) <= 1 and all(code in (200, 401) for code in codes), codes
    entries = await harness.executor.audit.tail(10)
    assert sum(1 for e in entries if e.decision == "executed") == codes.count(200)


async def raw_exchange(socket_path: Path, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_undecodable_content_encoding_is_a_4xx(harness: Harness) -> None:
    """Found by the storm: request.read() raised RequestPayloadError past json_errors (a 500, unaudited)."""
    entries_before = await harness.executor.audit.count()
    answer = await raw_exchange(
        harness.settings.socket_path,
        b"POST /v1/request HTTP/1.1\r\nHost: executor\r\nContent-Type: application/jwt\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 7\r\nConnection: close\r\n\r\ngarbage",
    )
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert await harness.executor.audit.count() == entries_before + 1  # like every other bad request


async def test_a_content_type_the_header_parser_chokes_on_is_a_4xx(harness: Harness) -> None:
    """Found by the storm: request.content_type raised IndexError (the stdlib email header parser
    under aiohttp's) for a parameter name ending in '*' with no value: a 500, unaudited."""
    entries_before = await harness.executor.audit.count()
    reply = await harness.client().send_raw(b"garbage", "application/jwt; x*")
    assert 400 <= reply.http_status < 500, reply
    assert await harness.executor.audit.count() == entries_before + 1  # like every other bad request


@pytest.mark.xfail(
    strict=True,
    reason=(
        "aiohttp 3.14.5 bug: its C parser gives `CONNECT \\r\\n\\r\\n` (no target) url=None; BaseRequest.__init__ "
        "raises AttributeError on url.absolute, the connection's RequestHandler.start task dies unanswered and "
        "asyncio logs 'Task exception was never retrieved'; the connection stays open until the client closes it"
    ),
)
async def test_a_connect_with_no_target_is_answered(harness: Harness) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        reader, writer = await asyncio.open_unix_connection(str(harness.settings.socket_path))
        writer.write(b"CONNECT \r\n\r\n")
        try:
            answer = await asyncio.wait_for(reader.read(200), 2)
        except asyncio.TimeoutError:
            answer = b""
        writer.close()
        await asyncio.sleep(0.05)
        # Collect the dead connection task here, under this handler: left to a later, random
        # collection its finalizer has been seen to break pytest's own ast.parse (CPython 3.11.7).
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert errors == [], [context.get("exception") for context in errors]
    assert answer.startswith(b"HTTP/") and answer.split(b" ", 2)[1].startswith(b"4"), answer
