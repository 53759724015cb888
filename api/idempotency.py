"""Idempotency keys: a repeated request with the same key returns the first request's delivery."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import IdempotencyKeyReused, ValidationFailed
from schema.tables import idempotency_keys

KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class StoredKey:
    """A key saved with the request it first came with."""

    request_hash: bytes
    delivery_id: str


def validate_key(value: str | None) -> str | None:
    """Return the Idempotency-Key header value, or None when the header is absent.

    Raises:
        ValidationFailed: the key is empty, longer than 255 characters, or contains a
            control character.
    """
    if value is None:
        return None
    if not value.strip():
        raise ValidationFailed(HEADER, "must not be empty; send a unique string per request")
    if len(value) > MAX_KEY_LENGTH:
        raise ValidationFailed(HEADER, f"longer than {MAX_KEY_LENGTH} characters")
    # Postgres text cannot hold NUL, and no client needs control characters in a key.
    if any(ord(character) < 0x20 or character == "\x7f" for character in value):
        raise ValidationFailed(HEADER, "must not contain control characters")
    return value


def request_hash(path_values: dict[str, Any], body: dict[str, Any]) -> bytes:
    """Return the SHA-256 of the request in canonical JSON, so key order never matters.

    Args:
        path_values: the values taken from the path, such as `{"themeId": ...}`.
        body: the parsed JSON body.
    """
    canonical = json.dumps(
        {**path_values, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    # A JSON body can carry a lone surrogate (`"\ud800"`), which strict UTF-8 cannot encode.
    # surrogatepass hashes it as its own bytes and leaves every valid text as before.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()


def find_key(
    session: Session, *, workspace_id: str, endpoint: str, key: str, now: datetime
) -> StoredKey | None:
    """Return the key as saved within the last 24 hours, or None; older rows are ignored."""
    row = session.execute(
        select(idempotency_keys.c.request_hash, idempotency_keys.c.delivery_id).where(
            idempotency_keys.c.workspace_id == workspace_id,
            idempotency_keys.c.endpoint == endpoint,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at > now - KEY_TTL,
        )
    ).one_or_none()
    if row is None:
        return None
    return StoredKey(request_hash=bytes(row.request_hash), delivery_id=str(row.delivery_id))


def save_key(
    session: Session,
    *,
    workspace_id: str,
    endpoint: str,
    key: str,
    hashed_request: bytes,
    delivery_id: str,
    now: datetime,
) -> None:
    """Save a key in the caller's transaction, replacing an expired row of the same key.

    Call it in the transaction that creates the delivery, so key and delivery commit
    together. When another request saved the same key first, the insert raises
    `sqlalchemy.exc.IntegrityError` (a unique violation) and the caller responds
    with that request's delivery.
    """
    session.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.workspace_id == workspace_id,
            idempotency_keys.c.endpoint == endpoint,
            idempotency_keys.c.key == key,
            idempotency_keys.c.created_at <= now - KEY_TTL,
        )
    )
    session.execute(
        insert(idempotency_keys).values(
            workspace_id=workspace_id,
            endpoint=endpoint,
            key=key,
            request_hash=hashed_request,
            delivery_id=delivery_id,
            created_at=now,
        )
    )


def is_key_conflict(error: IntegrityError) -> bool:
    """Tell whether `error` is the unique violation of a key saved concurrently."""
    cause = error.orig
    return isinstance(cause, UniqueViolation) and cause.diag.table_name == "idempotency_keys"


def replayed_delivery(stored: StoredKey, hashed_request: bytes) -> str:
    """Return the delivery id of a replay.

    Raises:
        IdempotencyKeyReused: the key was saved with a different request.
    """
    if stored.request_hash != hashed_request:
        raise IdempotencyKeyReused()
    return stored.delivery_id
