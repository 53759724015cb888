"""The web UI's session: a signed, HttpOnly cookie naming the signed-in token, and its CSRF token.

The cookie value is `base64url(JSON payload) "." base64url(HMAC-SHA256 of the first part)`,
keyed by a key derived from `HANDOFF_SECRET_KEY`. The payload carries the SHA-256 hash of
the API token the user signed in with (never the token itself), the session's CSRF token and
an expiry. Every request looks the hash up again, so deleting a member or its token ends
its sessions at once.

NOTE: there is no server-side session row, so signing out only replaces the browser's
cookie. A copy of the old cookie stays valid until it expires (12 hours after sign-in)
unless the member or its token is removed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE_NAME = "handoff_session"
CSRF_FIELD = "csrf_token"
# A session lasts 12 hours from sign-in, whatever the activity; then the user signs in again.
SESSION_LIFETIME_S = 12 * 3600
# An anonymous session only carries the sign-in form's CSRF token.
ANONYMOUS_LIFETIME_S = 2 * 3600
PAYLOAD_VERSION = 1

# Changing this label signs everyone out, like changing the key.
_KDF_INFO = b"solhelps-webhook-handoff ui session cookie v1"


@dataclass(frozen=True)
class UiSession:
    """The contents of a valid session cookie.

    Attributes:
        csrf_token: the token every form of this session must send back.
        token_hash: SHA-256 of the signed-in API token, or None before sign-in.
        expires_at: Unix seconds after which the cookie is refused.
    """

    csrf_token: str
    token_hash: bytes | None
    expires_at: int


def session_key(secret_key: str) -> bytes:
    """Derive the cookie-signing key from `HANDOFF_SECRET_KEY`.

    HKDF with its own label keeps this key apart from the one that encrypts signing secrets.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(
        secret_key.encode("utf-8")
    )


def new_session(token_hash: bytes | None = None, *, now_s: float | None = None) -> UiSession:
    """Start a session with a fresh CSRF token; signed in when `token_hash` is given."""
    now = time.time() if now_s is None else now_s
    lifetime = SESSION_LIFETIME_S if token_hash is not None else ANONYMOUS_LIFETIME_S
    return UiSession(
        csrf_token=secrets.token_urlsafe(32),
        token_hash=token_hash,
        expires_at=int(now) + lifetime,
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64encode(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def encode_session(session: UiSession, key: bytes) -> str:
    """Serialize and sign `session` as a cookie value."""
    payload = {
        "v": PAYLOAD_VERSION,
        "csrf": session.csrf_token,
        "sub": session.token_hash.hex() if session.token_hash is not None else None,
        "exp": session.expires_at,
    }
    encoded = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    return f"{encoded}.{_signature(key, encoded)}"


def decode_session(value: str, key: bytes, *, now_s: float | None = None) -> UiSession | None:
    """Return the session in a cookie value, or None when it is altered, expired or malformed."""
    encoded, _, signature = value.partition(".")
    if not encoded or not signature or not encoded.isascii():
        return None
    # Comparing in constant time gives an attacker no timing hint about a forged signature.
    if not hmac.compare_digest(_signature(key, encoded), signature):
        return None
    try:
        payload = json.loads(_b64decode(encoded))
        csrf = payload["csrf"]
        subject = payload["sub"]
        expires_at = payload["exp"]
        token_hash = bytes.fromhex(subject) if subject is not None else None
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if payload.get("v") != PAYLOAD_VERSION or not isinstance(csrf, str) or not csrf:
        return None
    if not isinstance(expires_at, int) or expires_at <= (time.time() if now_s is None else now_s):
        return None
    return UiSession(csrf_token=csrf, token_hash=token_hash, expires_at=expires_at)


def csrf_matches(session: UiSession, submitted: str | None) -> bool:
    """Tell whether a form's CSRF field equals the session's token (constant-time)."""
    if not submitted:
        return False
    return hmac.compare_digest(session.csrf_token.encode("utf-8"), submitted.encode("utf-8"))
