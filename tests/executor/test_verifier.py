"""The executor's verifier against bare PyJWT: never more lenient, and stricter only by rule.

``TokenVerifier`` lets PyJWT verify each token and adds its own rules on top (see its
docstring); this holds those rules to their promise. Here hypothesis builds tokens -- valid
ones, ones with bytes flipped, cut or re-encoded, with other headers, claims of other types
and times, other keys -- and each is given to both:

- whatever our verifier accepts, PyJWT (EdDSA pinned, the same audience, issuer, leeway and
  required claims) accepts too, with the same claims;
- whatever PyJWT accepts and ours refuses, ours refuses for one of its own stricter rules
  (whole-second times, the 0 to 60 s lifetime from ``iat``, the shapes of ``jti``, ``sub``
  and ``req``, no base64 padding), never for a reason PyJWT would have had too.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.protocol import ISSUER, LEEWAY, REQUIRED_CLAIMS, TokenRejected, TokenVerifier, audience_for

TRUSTED = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KID = "bot"
AUDIENCE = audience_for("local")
# Refusals of ours that PyJWT does not make: our rules on top of RFC 7519's.
STRICTER = ("whole seconds", "at most 60 s", "expires before it was issued", "jti must be", "sub must be", "req must be", "req.action", "req.args")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pyjwt_claims(token: str) -> dict[str, Any] | None:
    """PyJWT's verdict under the executor's rules: the claims, or None when refused."""
    try:
        header = jwt.get_unverified_header(token)
        if "crit" in header or header.get("kid") != KID:
            return None
        return jwt.decode(
            token,
            TRUSTED.public_key(),
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return None


# One trusted key (PyJWT reads the token once) and two (PyJWT reads the header first to
# pick the key): the same verdicts either way. The spare key signs nothing here.
VERIFIERS = {
    "one key": TokenVerifier({KID: TRUSTED.public_key()}, AUDIENCE),
    "two keys": TokenVerifier({KID: TRUSTED.public_key(), "spare": Ed25519PrivateKey.generate().public_key()}, AUDIENCE),
}


def ours(token: str, verifier: str = "one key") -> tuple[dict[str, Any] | None, str | None]:
    try:
        request = VERIFIERS[verifier].verify(token, time.time())
    except TokenRejected as exc:
        return None, exc.reason
    return {"jti": request.jti, "exp": request.exp, "action": request.action, "args": request.args}, None


def valid_claims(now: int) -> dict[str, Any]:
    return {
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 30,
        "jti": "0123456789abcdef0123456789abcdef", "sub": "tg:1", "req": {"action": "whoami", "args": {}, "chat": {}},
    }  # fmt: skip


# Times are offsets from the moment the token is made (hypothesis may run long after import).
offsets = st.one_of(st.integers(-200, 200), st.floats(-100, 100), st.booleans(), st.text(max_size=3), st.none())
VARIANTS = {
    "iss": st.one_of(st.sampled_from([ISSUER[:-1], ISSUER + "x", ISSUER.upper(), ""]), st.lists(st.just(ISSUER), max_size=2), st.integers()),
    "aud": st.one_of(st.sampled_from([AUDIENCE[:-1], AUDIENCE + " "]), st.lists(st.just(AUDIENCE), max_size=2), st.none()),
    "iat": offsets,
    "nbf": offsets,
    "exp": st.one_of(st.integers(-60, 120), offsets),
    "jti": st.text(alphabet="0123456789abcdefABCDEF", max_size=33),
    "sub": st.one_of(st.sampled_from(["bot", "tg:", "tg:x", "admin", "tg:1 ", "tg:42"]), st.integers()),
    "req": st.one_of(
        st.fixed_dictionaries({"action": st.text(max_size=8), "args": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)}),
        st.lists(st.integers(), max_size=2),
    ),
}


def variant(name: str, value: Any, now: int) -> Any:
    if name in ("iat", "nbf", "exp") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + value
    return value


def mostly(draw: st.DrawFn) -> bool:
    """True four times in five: most tokens differ from a valid one in one or two places."""
    return draw(st.integers(0, 4)) > 0


@st.composite
def tokens(draw: st.DrawFn) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {}
    for name, valid in valid_claims(now).items():
        if draw(st.integers(0, 19)) == 0:
            continue  # missing
        claims[name] = valid if draw(st.integers(0, 7)) > 0 else variant(name, draw(VARIANTS[name]), now)
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT", "kid": KID}
    if not mostly(draw):
        header = draw(
            st.fixed_dictionaries(
                {"alg": st.sampled_from(["EdDSA", "none", "HS256", "ES256", "eddsa", ""]), "kid": st.sampled_from([KID, "other", ""])},
                optional={"crit": st.lists(st.sampled_from(["exp", "b64"]), max_size=1), "typ": st.sampled_from(["JWT", "x"])},
            )
        )
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    key = TRUSTED if mostly(draw) else OTHER
    token = f"{signing_input}.{b64(key.sign(signing_input.encode()))}"
    if mostly(draw):
        return token
    mutation = draw(st.sampled_from(["flip", "cut", "pad", "dots", "swap"]))
    if mutation == "flip":
        at = draw(st.integers(0, len(token) - 1))
        token = token[:at] + draw(st.sampled_from("AZaz09-_.=+/ ")) + token[at + 1 :]
    elif mutation == "cut":
        token = token[: draw(st.integers(0, len(token) - 1))]
    elif mutation == "pad":
        token += "=" * draw(st.integers(1, 3))
    elif mutation == "dots":
        token = token.replace(".", draw(st.sampled_from(["..", "", ".x."])), 1)
    else:
        header_part, _, signature = token.split(".")
        token = f"{header_part}.{b64(json.dumps({**claims, 'sub': 'tg:2'}).encode())}.{signature}"
    return token


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens())
def test_our_verifier_is_never_more_lenient_than_pyjwt(token: str) -> None:
    accepted, reason = ours(token)
    assert ours(token, "two keys")[0] == accepted
    reference = pyjwt_claims(token)
    if accepted is not None:
        assert reference is not None, f"we accepted a token PyJWT refuses: {token}"
        assert (reference["jti"], reference["exp"], reference["req"]["action"]) == (accepted["jti"], accepted["exp"], accepted["action"])
    elif reference is not None:
        padded = "=" in token and reason == "the token is not a compact JWS"  # PyJWT allows padding
        assert reason is not None and (padded or any(rule in reason for rule in STRICTER)), f"refused {token}: {reason}"


def test_a_valid_token_passes_both() -> None:
    token = jwt.encode(valid_claims(int(time.time())), TRUSTED, algorithm="EdDSA", headers={"kid": KID})
    assert ours(token)[0] is not None and pyjwt_claims(token) is not None


def test_a_signature_spelt_with_stray_low_bits_is_refused() -> None:
    """A 64-byte signature's last base64url character carries 4 unused bits: only the
    spelling with them zero is accepted (as PyJWT does), so each signature has one spelling."""
    signing_input = f"{b64(json.dumps({'alg': 'EdDSA', 'kid': KID}).encode())}.{b64(json.dumps(valid_claims(int(time.time()))).encode())}"
    signature = b64(TRUSTED.sign(signing_input.encode()))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = signature[:-1] + alphabet[alphabet.index(signature[-1]) | 1]
    assert base64.urlsafe_b64decode(respelt + "==") == base64.urlsafe_b64decode(signature + "==")
    assert ours(f"{signing_input}.{signature}")[0] is not None
    assert ours(f"{signing_input}.{respelt}") == (None, "the token is not a compact JWS")
    assert pyjwt_claims(f"{signing_input}.{respelt}") is None
