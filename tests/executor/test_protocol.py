"""The protocol's negative matrix: every bad token is refused with its reason, audited, and runs nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from audit import SigningKey, generate_key_pair, load_signing_key
from audit.signing import load_public_key
from executor.protocol import ISSUER, make_token
from tests.harness import ADMIN, AUDIENCE, Harness


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 30,
        "jti": hashlib.md5(str(time.perf_counter_ns()).encode()).hexdigest(),
        "sub": f"tg:{ADMIN}",
        "req": {"action": "whoami", "args": {}, "chat": {}},
    }
    for name, value in changes.items():
        if value is ...:
            base.pop(name)
        else:
            base[name] = value
    return base


def signed(key: SigningKey, body: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(body, key.private, algorithm="EdDSA", headers={"kid": key.kid, **headers})


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}.{b64(signature)}"


def hs256_with_public_key(pub_path: Path, body: dict[str, Any]) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the server's public key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "bot"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    mac = hmac.new(pub_path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.fixture
def stranger_key(tmp_path: Path) -> SigningKey:
    return load_signing_key(generate_key_pair(tmp_path / "other", "bot")[0])  # same kid, other key


def flip_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["req"]["action"] = "verify"
    return f"{header}.{b64(json.dumps(decoded).encode())}.{signature}"


CASES: list[tuple[str, Any, str]] = [
    ("bad signature", lambda h, k, s: signed(s, claims()), "signature does not verify"),
    ("alg none", lambda h, k, s: unsigned({"alg": "none", "typ": "JWT", "kid": "bot"}, claims()), "'none' is not accepted"),
    ("HS256 with the public key", lambda h, k, s: hs256_with_public_key(h.home / "keys" / "bot.pub", claims()), "'HS256' is not accepted"),
    *[
        (f"missing {name}", (lambda n: lambda h, k, s: signed(k, claims(**{n: ...})))(name), f"required claim '{name}'")
        for name in ("iss", "aud", "iat", "nbf", "exp", "jti", "sub", "req")
    ],
    ("wrong aud", lambda h, k, s: signed(k, claims(aud="wingman-exec")), "another audience"),
    ("iss a prefix of the expected", lambda h, k, s: signed(k, claims(iss=ISSUER[:-1])), "unknown issuer"),
    ("iss containing the expected", lambda h, k, s: signed(k, claims(iss=ISSUER + "x")), "unknown issuer"),
    ("expired", lambda h, k, s: signed(k, claims(iat=int(time.time()) - 100, nbf=int(time.time()) - 100, exp=int(time.time()) - 40)), "expired"),
    ("nbf in the future", lambda h, k, s: signed(k, claims(nbf=int(time.time()) + 30, exp=int(time.time()) + 50)), "not valid yet"),
    ("lifetime over the maximum", lambda h, k, s: signed(k, claims(exp=int(time.time()) + 120)), "at most 60 s"),
    # Both times inside the tolerated skew, so only the lifetime rule can refuse it.
    ("exp before iat", lambda h, k, s: signed(k, claims(iat=int(time.time()) + 4, exp=int(time.time()) + 1)), "expires before it was issued"),
    ("lifetime from iat over the maximum", lambda h, k, s: signed(k, claims(iat=int(time.time()) - 30, nbf=int(time.time()) - 30, exp=int(time.time()) + 31)), "at most 60 s"),
    ("unknown kid", lambda h, k, s: jwt.encode(claims(), k.private, algorithm="EdDSA", headers={"kid": "nobody"}), "unknown key id"),
    ("crit header", lambda h, k, s: signed(k, claims(), crit=["exp"]), "'crit' header"),
    ("body changed after signing", lambda h, k, s: flip_payload(make_token(k, audience=AUDIENCE, user_id=ADMIN, action="whoami")), "signature does not verify"),
    ("not a JWS", lambda h, k, s: "hello.world", "not a compact JWS"),
    ("sub not a Telegram user", lambda h, k, s: signed(k, claims(sub="admin")), "sub must be"),
    ("jti not 128-bit hex", lambda h, k, s: signed(k, claims(jti="1")), "jti must be"),
]


@pytest.mark.parametrize(("name", "make", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_bad_tokens_are_refused_audited_and_run_nothing(
    harness: Harness, stranger_key: SigningKey, name: str, make: Any, reason: str
) -> None:
    token = make(harness, harness.bot_key, stranger_key)
    reply = await harness.client().send_token(token)
    assert (reply.http_status, reply.status) == (401, "refused"), reply
    assert reason in reply.reason
    entries = await harness.executor.audit.tail(5)
    mine = [e for e in entries if e.request_id == reply.request_id]
    assert [(e.actor, e.decision, e.outcome) for e in mine] == [("unverified", "refused", reply.reason)]
    assert not any(e.decision == "executed" for e in entries)


async def test_a_replayed_token_is_refused_also_after_a_restart(harness: Harness) -> None:
    token = make_token(harness.bot_key, audience=AUDIENCE, user_id=ADMIN, action="whoami")
    first = await harness.client().send_token(token)
    assert first.status == "done"
    again = await harness.client().send_token(token)
    assert (again.http_status, again.status) == (401, "refused") and "replay" in again.reason
    await harness.restart()
    after = await harness.client().send_token(token)
    assert (after.http_status, after.status) == (401, "refused") and "replay" in after.reason
    executed = [e for e in await harness.executor.audit.tail(20) if e.decision == "executed"]
    assert len(executed) == 1


async def test_a_rotated_key_is_accepted_beside_the_old_one(make_harness: Any, tmp_path: Path) -> None:
    new = load_signing_key(generate_key_pair(tmp_path / "keys", "bot-2")[0])
    harness = await make_harness(trusted_keys=[tmp_path / "keys" / "bot.pub", tmp_path / "keys" / "bot-2.pub"])
    assert (await harness.client().call(ADMIN, "whoami")).status == "done"
    assert (await harness.client(new).call(ADMIN, "whoami")).status == "done"
    assert load_public_key(tmp_path / "keys" / "bot-2.pub") is not None


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/jwt", 400),
        (b"x" * (64 * 1024 + 1), "application/jwt", 413),
        (b'{"token": "x"}', "application/json", 415),
        ("é".encode(), "application/jwt", 400),
    ],
)
async def test_bodies_that_are_not_requests_get_a_4xx(harness: Harness, body: bytes, content_type: str, status: int) -> None:
    client = harness.client()
    reply = await client.send_raw(body, content_type)
    assert reply.http_status == status and reply.status == "bad_request"
    assert (await client.call(ADMIN, "whoami")).status == "done"  # unharmed


async def test_unknown_paths_and_methods_are_4xx(harness: Harness) -> None:
    reply = await harness.client().send_raw(b"x", "application/jwt", path="/v2/other")
    assert reply.http_status == 404


async def test_unknown_actions_are_denied_and_audited(harness: Harness) -> None:
    reply = await harness.client().call(ADMIN, "exec", {"cmd": "rm -rf /"})
    assert (reply.http_status, reply.status) == (403, "denied") and "unknown action" in reply.reason
    entry = (await harness.executor.audit.tail(1))[0]
    assert (entry.action, entry.decision, entry.params) == ("exec", "denied", {"cmd": "rm -rf /"})
