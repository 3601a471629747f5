"""The wire protocol between a client (the bot, the tests, your own tool) and the executor.

Transport
    HTTP/1.1 over the executor's Unix socket (``WINGMAN_SOCKET``). The socket is mode 0660;
    the executor also reads the peer's uid (``SO_PEERCRED``) and drops connections from
    uids it does not allow before reading a byte. Limits, so that no local user can wear
    the executor down: each uid may hold at most 64 connections at once (more are closed
    as they arrive); a connection must deliver a complete request header within 5 s of
    opening or of its previous reply (else it is closed), the body within 10 s of the
    header (else ``408``), and read its reply (a reply unread for 10 s is cut). A client
    keeping connections alive should therefore drop idle ones sooner than 5 s.

Request
    ``POST /v1/request`` with ``Content-Type: application/jwt`` and, as the whole body (at
    most 64 KiB), one compact JWS (RFC 7515/7519) signed with Ed25519: three segments
    joined by ``.``, each base64url without padding (RFC 7515 section 2), the signature over
    the ASCII of ``<header>.<claims>`` as sent.

    - header: ``{"alg": "EdDSA", "typ": "JWT", "kid": "<key id>"}``. ``kid`` names one of
      the executor's trusted public keys (``WINGMAN_TRUSTED_KEYS``; a key's id is its file
      stem). No other algorithm is accepted, whatever the header says, and a ``crit``
      header is refused.
    - claims, all required:
      ``iss`` the client's name, exactly ``"wingman-bot"``;
      ``aud`` exactly ``"wingman-executor:<name>"``, the name of the one executor the
      request is for (``WINGMAN_EXECUTOR_NAME``, see ``audience_for``): an executor refuses
      a token meant for another one, so a request captured for one host cannot be replayed
      at another (the refusal says which executor it was meant for, and is audited);
      ``iat``, ``nbf``, ``exp`` integer seconds since the epoch, with
      ``0 <= exp - iat <= 60`` (5 s of clock skew are tolerated);
      ``jti`` 32 lower-case hex digits (128 random bits), never used before;
      ``sub`` the human the request is for, ``"tg:<telegram user id>"``, or ``"bot"`` for
      the client's own ``outbox.*`` calls;
      ``req`` the request itself: ``{"action": str, "args": {...}, "chat": {...}}``.
    One optional claim: ``display_name``, how the human appeared in the chat, for display only
    (``"@alice"``, the Telegram username with its ``@``, or the first name when there is
    no username). It is 1 to 64 characters: either ``@`` and a Telegram username (5 to 32
    letters, digits and ``_``), or printable text that does not start with ``@`` (so a
    first name cannot pass for somebody's username) and holds no control or format
    character (no right-to-left override, no zero-width joiner). A token whose ``display_name``
    breaks these rules is refused ``bad_request``, never truncated: the client shortens a
    long name before it signs (the bot cuts it to 63 characters and ``…``). The
    executor keeps the name beside the id where it stores people (approvals, votes, the
    names it last saw); the id in ``sub`` stays the identity, the audit records the id
    alone, and a client shows the name escaped like any text a user chose.
    Because the request travels inside the signed claims, changing any byte of it breaks
    the signature.

    Actions are the catalogue's (``help``, ``whoami``, ``status``, ``deploy``, …; see
    ``policy.CATALOGUE``) with their arguments in ``args`` (``target`` for the container
    name or vmid, plus e.g. ``image``, ``lines``, ``n``), and these protocol actions:
    ``approval.approve``, ``approval.reject``, ``approval.cancel`` (``args: {"id": …}``;
    an approve also carries ``"code"``, the approver's six-digit one-time code, where the
    approval needs one: without it the answer is 403 with ``result.code_required: true``),
    ``outbox.poll`` (``args: {"wait": seconds <= 30, "limit": n <= 100, "after": id}``;
    ``after``, default 0, skips events up to that id: those the client holds back) and
    ``outbox.ack`` (``args: {"ids": [...], "posted": [{"id", "chat_id", "message_id"}]}``:
    the notifications delivered, and the messages the client created for them). Each
    polled notification is ``{"id", "chat_id" (null: the team chat), "kind", "ref",
    "payload", "created_at" (seconds since the epoch), "messages": {"<chat id>": <message id>}}``: ``messages`` are the messages
    already showing ``ref``, to be edited rather than posted again. ``chat`` is the context answers go to:
    ``{"chat_id": int, "message_id": int | null, "private": bool}``. A catalogue
    request's ``args`` and ``chat`` are recorded in the audit log exactly, so they hold no
    floating-point number (``NaN`` included: send a whole number or text) and only valid
    Unicode (no lone surrogate); such a request is refused ``bad_request``, naming the value.

Health
    ``GET /v1/health`` needs no token: ``{"status": "ok", "name": "<executor name>",
    "version": "<package version>", "audit_seq": int}``. A client that does not know the
    executor's name asks here before its first signed request.

Updates
    The ``updates`` action (tier 0, ``/updates``) checks the registries now and answers, in
    ``result``, every update available for the containers the user may see; the scheduled
    check (``WINGMAN_UPDATE_CHECK_AT``) posts the same shape as ONE notification of kind
    ``updates`` (``chat_id`` null: the team chat), holding only the updates not announced
    before, or none when only a new registry problem is to be told::

        {"updates": [{"id": "3f2a9c1b7d04",          # 12 hex digits, stable for this update
                      "target": "web",               # the container
                      "image": "repo:1.2.3",         # what it runs, as configured
                      "current_tag": "1.2.3", "new_tag": "1.2.4",   # equal: a new image, same tag
                      "current_digest": "sha256:…", "new_digest": "sha256:…",
                      "reference": "repo:1.2.4@sha256:…",  # what a deploy request carries
                      "created": 1765000000 | null}],      # when the new image was built
         "problems": ["<registry>: <one line>", ...],       # per registry (or container label)
         "checked": 12}                                     # containers checked

    To deploy one, send an ordinary ``deploy`` request with ``{"target": <target>, "image":
    <reference>}``: it is bound to exactly that digest (a registry that resolves it to another
    refuses it) and goes through approval like any deploy. ``updates`` with ``args: {"id":
    "<id>"}`` reads one update back from the executor's database without asking a registry
    (``result.updates`` holds it alone, ``result.state`` is ``pending`` or ``gone``), so a
    button's callback needs to carry only the executor's name and the id.

Response
    JSON, always ``{"status": …, "reason": str, "request_id": str | null, "result": {...}}``:

    ======  ===============  ==============================================================
    HTTP    status           meaning
    ======  ===============  ==============================================================
    200     ``done``         the action ran; ``result`` holds what it returned
    202     ``pending``      it waits for approval; ``result.approval`` describes it
    400     ``bad_request``  the body is not a request (malformed, wrong claims' shapes)
    401     ``refused``      the token failed: signature, key, audience, issuer, expiry,
                             replay, …; ``reason`` says which
    403     ``denied``       policy said no; ``reason`` says why in the operator's words
    404/405 ``bad_request``  no such path / method
    408     ``bad_request``  the body did not arrive within 10 s of the header
    409     ``conflict``     an approval already decided, expired, or the target is busy
    413     ``bad_request``  the body is over 64 KiB
    415     ``bad_request``  the content type is not ``application/jwt``
    500     ``failed``       the action was attempted and failed; ``reason`` says how
    500     ``internal_error``  a bug in the executor; audited, ``request_id`` to quote
    503     ``unavailable``  a dependency (Docker, Proxmox, the database) is unreachable
    ======  ===============  ==============================================================

Every request the executor receives, valid or not, becomes an audit entry (the bot's own
``outbox.*`` plumbing is audited only when refused).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.signing import SigningKey

PATH = "/v1/request"
HEALTH_PATH = "/v1/health"
CONTENT_TYPE = "application/jwt"
ISSUER = "wingman-bot"
AUDIENCE_PREFIX = "wingman-executor:"
# An executor's name: what WINGMAN_EXECUTOR_NAME and the bot's WINGMAN_EXECUTORS hold. At
# most 20 characters: the bot puts it in its buttons' callback data (64 bytes).
EXECUTOR_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?")
EXECUTOR_NAME_RULE = "1 to 20 lowercase letters, digits and '-', not starting or ending with '-'"
ALGORITHM = "EdDSA"
MAX_LIFETIME = 60
LEEWAY = 5
MAX_BODY = 64 * 1024
# Connection limits (see "Transport" above); the client keeps idle connections for less
# than IDLE_TIMEOUT and opens at most MAX_CONNECTIONS_PER_UID.
IDLE_TIMEOUT = 5.0
BODY_TIMEOUT = 10.0
MAX_CONNECTIONS_PER_UID = 64
REQUIRED_CLAIMS = ("iss", "aud", "iat", "nbf", "exp", "jti", "sub", "req")
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # an empty signature is PyJWT's to refuse
JTI_PATTERN = re.compile(r"[0-9a-f]{32}")
SUB_PATTERN = re.compile(r"tg:([0-9]{1,20})|bot")
ACTION_PATTERN = re.compile(r"[a-z][a-z.]{0,31}")
NAME_MAX = 64
USERNAME_PATTERN = re.compile(r"@[A-Za-z0-9_]{5,32}")
NAME_RULE = (
    "display_name must be @ and a Telegram username, or 1 to 64 printable characters not starting with @ "
    "(the display name the client saw)"
)

PROTOCOL_ACTIONS = ("approval.approve", "approval.reject", "approval.cancel", "outbox.poll", "outbox.ack")

STATUS_HTTP = {
    "done": 200,
    "pending": 202,
    "bad_request": 400,
    "refused": 401,
    "denied": 403,
    "conflict": 409,
    "failed": 500,
    "internal_error": 500,
    "unavailable": 503,
}


def audience_for(name: str) -> str:
    """The ``aud`` of a token meant for the executor called ``name``."""
    return AUDIENCE_PREFIX + name


def executor_name_problem(name: str) -> str | None:
    """Why ``name`` is not an executor name (one line), or None when it is one."""
    if EXECUTOR_NAME.fullmatch(name):
        return None
    return f"{name[:70]!r} is not an executor name: use {EXECUTOR_NAME_RULE} (e.g. nas, home-1)"


def name_from_host(host: str) -> str:
    """An executor name made from a host name: its first label, lower-cased, reduced to
    a-z, 0-9 and ``-``, at most 20 of them (``NAS.local`` -> ``nas``); ``executor`` when
    nothing is left."""
    label = host.split(".", 1)[0].lower()
    reduced = re.sub(r"[^a-z0-9-]", "", label).strip("-")[:20].strip("-")
    return reduced or "executor"


class TokenRejected(Exception):
    """The token does not hold; ``reason`` is one line and safe to return to the client."""

    def __init__(self, reason: str, status: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """A verified request: who, what, where the answer goes."""

    jti: str
    exp: int
    kid: str
    user_id: int | None  # None: the client itself ("bot"), for outbox calls
    action: str
    args: dict[str, Any]
    chat: dict[str, Any] = field(default_factory=dict)
    display_name: str | None = None  # how the human appeared in the chat: display only, never identity

    @property
    def actor(self) -> str:
        return "bot" if self.user_id is None else f"tg:{self.user_id}"


def make_token(
    key: SigningKey,
    *,
    audience: str,
    user_id: int | None,
    action: str,
    args: Mapping[str, Any] | None = None,
    chat: Mapping[str, Any] | None = None,
    now: float | None = None,
    lifetime: int = 30,
    issuer: str = ISSUER,
    display_name: str | None = None,
) -> str:
    """A signed request token, as the bot makes one; ``audience`` is ``audience_for(name)``
    of the executor it is for, ``display_name`` the optional ``display_name`` claim."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": secrets.token_hex(16),
        "sub": "bot" if user_id is None else f"tg:{user_id}",
        "req": {"action": action, "args": dict(args or {}), "chat": dict(chat or {})},
    }
    if display_name is not None:
        claims["display_name"] = display_name
    return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})


def valid_name(name: object) -> bool:
    """Whether ``name`` is a display name the ``display_name`` claim admits (see the module docstring)."""
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
        return False
    if name.startswith("@"):
        return USERNAME_PATTERN.fullmatch(name) is not None
    if not name.strip():
        return False
    # Category C: control, format (bidi overrides, zero-width), unassigned, private use, surrogates.
    return not any(unicodedata.category(char).startswith("C") for char in name)


def _canonical(encoded: str) -> bool:
    """Whether a base64url segment is spelt the one way its bytes encode (no stray bits in
    the last character): one token, one spelling, whatever the PyJWT release."""
    decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    return base64.urlsafe_b64encode(decoded).rstrip(b"=") == encoded.encode("ascii")


def _seconds(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenRejected("iat, nbf and exp must be whole seconds")
    return value


# PyJWT's refusals in the operator's words; the first matching class wins (subclasses first).
_PYJWT_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "the signature does not verify"),
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "the token comes from an unknown issuer"),
    (jwt.InvalidIssuedAtError, "iat, nbf and exp must be whole seconds"),
    (jwt.DecodeError, "the token is not a compact JWS"),
)


def _audience_reason(token: str, audience: str) -> str:
    """Which executor a token PyJWT refused for its audience was meant for. PyJWT checks
    ``aud`` only after the signature, so the claims read here are signed by a trusted key."""
    try:
        aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        aud = None
    here = audience.removeprefix(AUDIENCE_PREFIX)
    if isinstance(aud, str) and aud.startswith(AUDIENCE_PREFIX):
        return f"the token is meant for executor {aud.removeprefix(AUDIENCE_PREFIX)[:64]!r}, not for this one ({here!r})"
    if aud == "wingman-executor":
        return f"the token names no executor (audience 'wingman-executor'): upgrade the bot with the executor; this one is {here!r}"
    return f"the token is for another audience, not for executor {here!r}"


def _pyjwt_reason(exc: jwt.PyJWTError, token: str, trusted: Mapping[str, Any], audience: str) -> str:
    """One line for a token PyJWT refused. Its header is read again (by PyJWT) only here,
    on the way out, so an unknown key or a ``crit`` header is named as such whichever key
    PyJWT was given."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        header = {}
    if header and "crit" not in header and header.get("kid") not in trusted:
        return f"unknown key id {str(header.get('kid'))[:64]!r}"
    if "crit" in header or "critical" in str(exc).lower() or "'crit' header" in str(exc):
        return "a token with a 'crit' header is not accepted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the required claim {exc.claim!r}"
    if isinstance(exc, jwt.InvalidAudienceError):
        return _audience_reason(token, audience)
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"algorithm {str(header.get('alg'))[:20]!r} is not accepted: only EdDSA"
    if isinstance(exc, jwt.DecodeError) and "must be an integer" in str(exc):
        return "iat, nbf and exp must be whole seconds"  # PyJWT's words for a non-number nbf/exp
    for kind, reason in _PYJWT_REASONS:
        if isinstance(exc, kind):
            return reason
    return f"the token is invalid: {str(exc)[:120]}"


class TokenVerifier:
    """Checks signature, key, header, claims and lifetime; replay is the caller's next step.

    PyJWT parses and verifies the token: the algorithm pinned to EdDSA, the signature with
    the trusted key the header's ``kid`` names, the required claims, ``aud`` (this
    executor's ``audience``) and ``iss`` exactly, the times with ``LEEWAY`` of skew. Our own rules only ever add refusals on top
    of its verdict: one spelling per token (no padding, no stray bits), no ``crit`` header,
    whole-second times, a lifetime of 0 to ``MAX_LIFETIME`` s counted from ``iat``, and the
    shapes of ``jti``, ``sub`` and ``req``. ``tests/executor/test_verifier.py`` holds the
    whole to PyJWT's verdicts: never more lenient, stricter only by these rules.

    With one trusted key (the usual case) PyJWT reads the token once, with that key, and the
    header's ``kid`` is checked after; with several (a key rotation) PyJWT reads the header
    first to pick the key. PyJWT's reading costs about as much as the signature check, so
    once instead of twice per request matters (README, Performance).
    """

    def __init__(self, trusted: Mapping[str, Ed25519PublicKey], audience: str) -> None:
        self._trusted = dict(trusted)
        self.audience = audience
        self._only = next(iter(self._trusted)) if len(self._trusted) == 1 else None

    def verify(self, token: str, now: float) -> Request:
        # Our shape rule first: it is one C-level match, and spares PyJWT the junk.
        if not COMPACT_JWS.fullmatch(token):
            raise TokenRejected("the token is not a compact JWS")
        try:
            kid = self._only if self._only is not None else jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str) or kid not in self._trusted:
                raise TokenRejected(f"unknown key id {str(kid)[:64]!r}")
            decoded = jwt.decode_complete(
                token,
                self._trusted[kid],
                algorithms=[ALGORITHM],  # never taken from the token
                audience=self.audience,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(_pyjwt_reason(exc, token, self._trusted, self.audience)) from None
        except RecursionError:
            raise TokenRejected("the token is nested too deeply") from None
        except (ValueError, TypeError) as exc:  # a refusal whatever PyJWT meets, never a crash
            raise TokenRejected(f"the token is invalid: {str(exc)[:120]}") from None
        header: dict[str, Any] = decoded["header"]
        if "crit" in header:
            raise TokenRejected("a token with a 'crit' header is not accepted")
        if header.get("kid") != kid:
            raise TokenRejected(f"unknown key id {str(header.get('kid'))[:64]!r}")
        if not all(_canonical(segment) for segment in token.split(".")):
            raise TokenRejected("the token is not a compact JWS")  # stray bits in a last character
        claims: dict[str, Any] = decoded["payload"]
        iat, nbf, exp = (_seconds(claims, name) for name in ("iat", "nbf", "exp"))
        # PyJWT checked the times on its own wall clock; ours is the caller's (the same one).
        if exp <= now - LEEWAY:
            raise TokenRejected("the token has expired")
        if nbf > now + LEEWAY or iat > now + LEEWAY:
            raise TokenRejected("the token is not valid yet (nbf or iat in the future)")
        return self._request(claims, kid, now)

    @staticmethod
    def _request(claims: dict[str, Any], kid: str, now: float) -> Request:
        iat, exp = claims["iat"], claims["exp"]
        if exp < iat:
            raise TokenRejected("the token expires before it was issued (exp before iat)")
        if exp - iat > MAX_LIFETIME:
            raise TokenRejected(f"the token lives {exp - iat} s; at most {MAX_LIFETIME} s are accepted")
        jti = claims["jti"]
        if not isinstance(jti, str) or not JTI_PATTERN.fullmatch(jti):
            raise TokenRejected("jti must be 32 lower-case hex digits")
        sub = claims["sub"]
        match = SUB_PATTERN.fullmatch(sub) if isinstance(sub, str) else None
        if match is None:
            raise TokenRejected("sub must be tg:<telegram user id> or bot")
        req = claims["req"]
        if not isinstance(req, dict) or set(req) - {"action", "args", "chat"}:
            raise TokenRejected("req must be {action, args, chat}", status="bad_request")
        action, args, chat = req.get("action"), req.get("args", {}), req.get("chat", {})
        if not isinstance(action, str) or not ACTION_PATTERN.fullmatch(action):
            raise TokenRejected("req.action must be an action name", status="bad_request")
        if not isinstance(args, dict) or not isinstance(chat, dict):
            raise TokenRejected("req.args and req.chat must be objects", status="bad_request")
        user_id = int(match.group(1)) if match.group(1) else None
        name = claims.get("display_name")
        if name is not None and (user_id is None or not valid_name(name)):
            raise TokenRejected(NAME_RULE if user_id is not None else "the client's own requests carry no display_name", status="bad_request")
        return Request(jti, exp, kid, user_id, action, args, chat, name)
