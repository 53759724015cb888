"""Delivery history of a workspace in the API's JSON layout, shared by the API and the CLI."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from outbox.errors import InvalidHandoff
from outbox.events import HANDOFF_EVENT, TEST_EVENT, format_timestamp
from schema.tables import DELIVERY_STATUSES, deliveries, delivery_attempts

EVENTS = (HANDOFF_EVENT, TEST_EVENT)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_SUMMARY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.event,
    deliveries.c.theme_id,
    deliveries.c.status,
    deliveries.c.provider,
    deliveries.c.url_redacted,
    deliveries.c.created_at,
    deliveries.c.delivered_at,
    deliveries.c.next_attempt_at,
    deliveries.c.attempt_count,
    deliveries.c.failure_reason,
)


def parse_delivery_id(value: str) -> str | None:
    """Return `value` as a canonical UUID string, or None when it is not a UUID.

    Callers respond 404 for None, so a malformed id looks like any other unknown id.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def serialize_attempt(row: Any) -> dict[str, Any]:
    """Return one `delivery_attempts` row in the API layout; `outcome` is None while in flight."""
    return {
        "number": row.number,
        "trigger": row.trigger,
        "startedAt": _timestamp(row.started_at),
        "durationMs": row.duration_ms,
        "statusCode": row.status_code,
        "outcome": row.outcome,
        "errorClass": row.error_class,
        "errorMessage": row.error_message,
        "requestHeaders": row.request_headers,
        "bodySize": row.body_size,
        "responseHeaders": row.response_headers,
        "responseBodyExcerpt": row.response_body_excerpt,
        "nextAttemptAt": _timestamp(row.next_attempt_at),
    }


def serialize_delivery(row: Any, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return one `deliveries` row in the API layout.

    Args:
        row: a row with at least the columns of a history list item.
        attempts: the serialized attempts; None leaves the `attempts` key out, as list items do.
    """
    item: dict[str, Any] = {
        "deliveryId": str(row.id),
        "event": row.event,
        "themeId": row.theme_id,
        "status": row.status,
        "provider": row.provider,
        "url": row.url_redacted,
        "createdAt": _timestamp(row.created_at),
        "deliveredAt": _timestamp(row.delivered_at),
        "nextAttemptAt": _timestamp(row.next_attempt_at),
        "attemptCount": row.attempt_count,
        "failureReason": row.failure_reason,
    }
    if attempts is not None:
        item["attempts"] = attempts
    return item


def encode_cursor(created_at: datetime, delivery_id: str) -> str:
    """Return the opaque cursor that continues a page after this delivery."""
    # isoformat keeps the microseconds Postgres stores, so the keyset comparison is exact.
    raw = f"{created_at.isoformat()}|{delivery_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the creation time and delivery id inside `cursor`.

    Raises:
        InvalidHandoff: the cursor was not made by `encode_cursor`.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        moment_text, delivery_text = raw.split("|", 1)
        moment = datetime.fromisoformat(moment_text)
        delivery_id = str(uuid.UUID(delivery_text))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidHandoff(
            "cursor", "invalid cursor; pass the nextCursor of a previous page unchanged"
        ) from None
    if moment.tzinfo is None:
        raise InvalidHandoff(
            "cursor", "invalid cursor; pass the nextCursor of a previous page unchanged"
        )
    return moment, delivery_id


def _validate_filters(status: str | None, event: str | None, limit: int) -> None:
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidHandoff("status", f"must be one of {', '.join(DELIVERY_STATUSES)}")
    if event is not None and event not in EVENTS:
        raise InvalidHandoff("event", f"must be one of {', '.join(EVENTS)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidHandoff("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")


def list_deliveries(
    session: Session,
    workspace_id: str,
    *,
    status: str | None = None,
    event: str | None = None,
    theme_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Return one page of the workspace's deliveries, newest first, test events included.

    Items are ordered by `createdAt`, then `deliveryId`, both descending, and carry no
    `attempts`. Only reads, so any transaction (or none) will do.

    Args:
        session: the session to read with.
        workspace_id: the workspace whose deliveries are listed.
        status: keep only deliveries with this status.
        event: keep only this event name.
        theme_id: keep only deliveries of this theme.
        created_from: keep deliveries created at or after this time (timezone-aware).
        created_to: keep deliveries created at or before this time (timezone-aware).
        limit: page size, 1 to 200.
        cursor: the `nextCursor` of the previous page.

    Returns:
        `{"items": [...], "nextCursor": str | None}`; `nextCursor` is None on the last page.

    Raises:
        InvalidHandoff: a filter, the limit or the cursor is invalid (`field` names it).
    """
    _validate_filters(status, event, limit)
    query = select(*_SUMMARY_COLUMNS).where(deliveries.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if event is not None:
        query = query.where(deliveries.c.event == event)
    if theme_id is not None:
        query = query.where(deliveries.c.theme_id == theme_id)
    if created_from is not None:
        query = query.where(deliveries.c.created_at >= created_from)
    if created_to is not None:
        query = query.where(deliveries.c.created_at <= created_to)
    if cursor is not None:
        after_created_at, after_id = decode_cursor(cursor)
        query = query.where(
            tuple_(deliveries.c.created_at, deliveries.c.id)
            < tuple_(
                literal(after_created_at, deliveries.c.created_at.type),
                literal(after_id, deliveries.c.id.type),
            )
        )

    # Fetching one row more than the page shows whether another page follows.
    rows = session.execute(
        query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(limit + 1)
    ).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(last.created_at, str(last.id))
    return {"items": [serialize_delivery(row) for row in page], "nextCursor": next_cursor}


def delivery_exists(session: Session, workspace_id: str, delivery_id: str) -> bool:
    """Tell whether `delivery_id` names a delivery of the workspace (False for a non-UUID)."""
    canonical = parse_delivery_id(delivery_id)
    if canonical is None:
        return False
    found = session.execute(
        select(deliveries.c.id).where(
            deliveries.c.id == canonical, deliveries.c.workspace_id == workspace_id
        )
    ).first()
    return found is not None


def get_delivery(session: Session, workspace_id: str, delivery_id: str) -> dict[str, Any] | None:
    """Return one delivery of the workspace with all its attempts, oldest attempt first.

    Returns:
        The delivery in the API layout, or None when `delivery_id` is not a UUID or names no
        delivery of this workspace (another workspace's delivery included).
    """
    canonical = parse_delivery_id(delivery_id)
    if canonical is None:
        return None
    row = session.execute(
        select(*_SUMMARY_COLUMNS).where(
            deliveries.c.id == canonical, deliveries.c.workspace_id == workspace_id
        )
    ).one_or_none()
    if row is None:
        return None
    attempt_rows = session.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == canonical)
        .order_by(delivery_attempts.c.number)
    ).all()
    return serialize_delivery(row, [serialize_attempt(attempt) for attempt in attempt_rows])
