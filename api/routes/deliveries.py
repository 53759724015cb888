"""Delivery history endpoints: list, one delivery with its attempts, and redeliver."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from api.auth import CurrentAdmin, CurrentEngine, CurrentMember, check_admin
from api.errors import NotFound, ValidationFailed
from api.schemas import Delivery, DeliveryPage, RedeliveryAccepted, error_responses
from outbox.history import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    delivery_exists,
    get_delivery,
    list_deliveries,
    parse_delivery_id,
)
from outbox.redeliver import redeliver

log = structlog.get_logger(__name__)

REDELIVERY_QUEUED_EVENT = "redelivery_queued"

router = APIRouter(tags=["deliveries"])

DeliveryIdPath = Annotated[str, Path(alias="deliveryId")]


def _parse_moment(field: str, value: str, *, end_of_day: bool) -> datetime:
    """Parse an ISO 8601 date or date-time; a bare date means its start, or its end for `to`."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1, microseconds=-1) if end_of_day else start
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            field, f"invalid date {text[:40]!r}; use ISO 8601 such as 2026-02-15T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    try:
        return int(value)
    except ValueError:
        raise ValidationFailed("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}") from None


@router.get(
    "/api/v1/deliveries",
    response_model=DeliveryPage,
    responses=error_responses(401, 403, 422),
    summary="List deliveries, newest first, with filters and cursor pagination",
)
def list_history(
    member: CurrentAdmin,
    engine: CurrentEngine,
    # Parameters are read as text and checked here, so the error names the parameter in the
    # API's own words and comes after the permission check.
    status: Annotated[str | None, Query(description="pending, queued, sending, …")] = None,
    event: Annotated[str | None, Query()] = None,
    theme_id: Annotated[str | None, Query(alias="themeId")] = None,
    created_from: Annotated[
        str | None, Query(alias="from", description="ISO 8601; createdAt at or after")
    ] = None,
    created_to: Annotated[
        str | None, Query(alias="to", description="ISO 8601; createdAt at or before")
    ] = None,
    limit: Annotated[str | None, Query(description=f"1 to {MAX_PAGE_SIZE}, default 50")] = None,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
) -> dict[str, Any]:
    start = _parse_moment("from", created_from, end_of_day=False) if created_from else None
    end = _parse_moment("to", created_to, end_of_day=True) if created_to else None
    if start is not None and end is not None and start > end:
        raise ValidationFailed("from", "must not be after to")
    # Postgres text cannot hold NUL, so the query would fail instead of matching nothing.
    if theme_id is not None and "\x00" in theme_id:
        raise ValidationFailed("themeId", "must not contain NUL characters")
    with Session(engine) as session:
        return list_deliveries(
            session,
            member.workspace_id,
            status=status,
            event=event,
            theme_id=theme_id,
            created_from=start,
            created_to=end,
            limit=_parse_limit(limit),
            cursor=cursor,
        )


@router.get(
    "/api/v1/deliveries/{deliveryId}",
    response_model=Delivery,
    responses=error_responses(401, 403, 404),
    summary="Read one delivery with all its attempts",
)
def read_delivery(
    delivery_id: DeliveryIdPath, member: CurrentMember, engine: CurrentEngine
) -> dict[str, Any]:
    # Existence comes before the role check here: an id outside the caller's workspace
    # gets 404 for every caller, so no caller learns that it exists elsewhere.
    with Session(engine) as session:
        delivery = get_delivery(session, member.workspace_id, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id[:100]!r} not found in this workspace")
    check_admin(member)
    return delivery


@router.post(
    "/api/v1/deliveries/{deliveryId}/redeliver",
    status_code=202,
    response_model=RedeliveryAccepted,
    responses=error_responses(401, 403, 404, 409),
    summary="Queue one more attempt now, with the same deliveryId and body",
)
def redeliver_delivery(
    delivery_id: DeliveryIdPath, member: CurrentMember, engine: CurrentEngine
) -> dict[str, str]:
    with Session(engine) as session, session.begin():
        if not delivery_exists(session, member.workspace_id, delivery_id):
            raise NotFound(f"delivery {delivery_id[:100]!r} not found in this workspace")
        check_admin(member)
        redeliver(session, member.workspace_id, delivery_id, now=datetime.now(UTC))
    canonical = parse_delivery_id(delivery_id)
    log.info(
        REDELIVERY_QUEUED_EVENT,
        workspace_id=member.workspace_id,
        delivery_id=canonical,
        member_id=member.id,
    )
    return {"deliveryId": str(canonical), "status": "queued"}
