"""Signing of webhook requests: the `X-Sol-Signature` header and the Standard Webhooks headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as random_secrets
from collections.abc import Sequence

import handoff

USER_AGENT = f"SolHelps-Webhooks/{handoff.__version__}"
STANDARD_WEBHOOKS_PREFIX = "whsec_"
GENERATED_SECRET_BYTES = 32

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def sign_v1(secret: str, timestamp: int, body: bytes) -> str:
    """Sign `body` as `X-Sol-Signature` does.

    Args:
        secret: the signing secret exactly as stored; its UTF-8 bytes are the HMAC key.
        timestamp: the `X-Sol-Timestamp` of this attempt, in Unix seconds.
        body: the request body bytes exactly as sent.

    Returns:
        `v1=` followed by the lowercase hex HMAC-SHA256 of `{timestamp}.{body}`.
    """
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str | None:
    """Build the `X-Sol-Signature` value: one `v1=` entry per secret, separated by a space.

    During a rotation both the new and the previous secret sign, so a receiver that still
    has either one accepts the request. Empty secrets are skipped.

    Returns:
        The header value, or None when no secret is set (the header is then left out).
    """
    entries = [sign_v1(secret, timestamp, body) for secret in secrets if secret]
    return " ".join(entries) if entries else None


def _standard_webhooks_key(secret: str) -> bytes | None:
    """Return the HMAC key of a `whsec_` secret, or None when `secret` is not of that form."""
    if not secret.startswith(STANDARD_WEBHOOKS_PREFIX):
        return None
    encoded = secret[len(STANDARD_WEBHOOKS_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        return None
    # Receivers' libraries accept the base64 without its padding, so restore it first.
    unpadded = encoded.rstrip("=")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except binascii.Error:
        return None
    return key or None


def is_standard_webhooks_secret(secret: str) -> bool:
    """Tell whether `secret` has the Standard Webhooks form: `whsec_` and non-empty base64."""
    return _standard_webhooks_key(secret) is not None


def standard_webhooks_headers(
    delivery_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """Build the Standard Webhooks headers for the secrets of `whsec_` form.

    Each signature is `v1,` and the base64 HMAC-SHA256 of `{delivery_id}.{timestamp}.{body}`,
    keyed with the base64-decoded part of the secret after `whsec_`.

    Args:
        delivery_id: sent as `webhook-id`, the same value as `X-Sol-Delivery`.
        timestamp: sent as `webhook-timestamp`, in Unix seconds.
        body: the request body bytes exactly as sent.
        secrets: the secrets that sign this attempt; those not of `whsec_` form are skipped.

    Returns:
        `webhook-id`, `webhook-timestamp` and `webhook-signature`, or an empty dict when no
        secret has the `whsec_` form.
    """
    message = f"{delivery_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        key = _standard_webhooks_key(secret)
        if key is None:
            continue
        digest = hmac.new(key, message, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode("ascii"))
    if not signatures:
        return {}
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }


def generate_secret() -> str:
    """Return a new signing secret: `whsec_` and the base64 of 32 random bytes."""
    key = random_secrets.token_bytes(GENERATED_SECRET_BYTES)
    return STANDARD_WEBHOOKS_PREFIX + base64.b64encode(key).decode("ascii")


def build_headers(
    *,
    delivery_id: str,
    event: str,
    provider: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    user_agent: str,
) -> dict[str, str]:
    """Build every header of one delivery attempt.

    Args:
        delivery_id: the delivery's id, the same on every attempt and redelivery.
        event: the event name, such as `solhelps.insight.handoff`.
        provider: `zapier` or `generic`.
        timestamp: the time of this attempt, in Unix seconds.
        body: the request body bytes exactly as sent.
        secrets: the secrets that sign this attempt; empty when none is set.
        user_agent: the `User-Agent` value, normally `USER_AGENT`.

    Returns:
        The headers, with `X-Sol-Signature` only when a secret is set and the Standard
        Webhooks headers only when a secret has the `whsec_` form.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-Sol-Event": event,
        "X-Sol-Delivery": delivery_id,
        "X-Sol-Timestamp": str(timestamp),
        "X-Sol-Provider": provider,
    }
    signature = signature_header(secrets, timestamp, body)
    if signature is not None:
        headers["X-Sol-Signature"] = signature
    headers.update(standard_webhooks_headers(delivery_id, timestamp, body, secrets))
    return headers
