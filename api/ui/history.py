"""Delivery history: the filtered list, one delivery with its attempts and payload, and redeliver.

The list and the delivery come from the JSON API's route functions, which read through
`outbox.history`; redeliver calls the API's redeliver route function.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Member
from api.errors import ApiError
from api.routes.deliveries import list_history, read_delivery, redeliver_delivery
from api.ui.pages import (
    HISTORY_PATH,
    Visit,
    blocked_by_error,
    log_rejected,
    open_visit,
    redirect,
    render,
)
from api.ui.session import CSRF_FIELD
from outbox.errors import HandoffError
from outbox.history import EVENTS
from schema.tables import DELIVERY_STATUSES, deliveries, themes

PAGE_NAME = "Delivery history"
PAGE_SIZE = 25
# Longer response excerpts are cut on the page; the API returns the whole 16 KiB excerpt.
MAX_EXCERPT_SHOWN = 2000
REDELIVERY_QUEUED = (
    "one more attempt is queued, with trigger manual, the same deliveryId and the same body."
)

router = APIRouter(include_in_schema=False)


def _theme_ids(visit: Visit, workspace_id: str) -> list[str]:
    with Session(visit.engine) as session:
        return list(
            session.execute(
                select(themes.c.id)
                .where(themes.c.workspace_id == workspace_id)
                .order_by(themes.c.id)
            ).scalars()
        )


def _pretty_payload(visit: Visit, workspace_id: str, delivery_id: str) -> str:
    """Return the stored body indented for reading; the bytes sent are unchanged."""
    with Session(visit.engine) as session:
        body = session.execute(
            select(deliveries.c.body).where(
                deliveries.c.id == delivery_id, deliveries.c.workspace_id == workspace_id
            )
        ).scalar_one_or_none()
    if body is None:
        return ""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return bytes(body).decode("utf-8", errors="replace")


@router.get(HISTORY_PATH)
def history_page(
    request: Request,
    status: Annotated[str | None, Query()] = None,
    event: Annotated[str | None, Query()] = None,
    theme: Annotated[str | None, Query()] = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    visit = open_visit(request)
    member = visit.require_admin(PAGE_NAME)
    filters = {
        "status": status or "",
        "event": event or "",
        "theme": theme or "",
        "from": start or "",
        "to": end or "",
    }
    error = None
    page: dict[str, Any] = {"items": [], "nextCursor": None}
    try:
        page = list_history(
            member,
            visit.engine,
            status=status or None,
            event=event or None,
            theme_id=theme or None,
            created_from=start or None,
            created_to=end or None,
            limit=str(PAGE_SIZE),
            cursor=cursor or None,
        )
    except (ApiError, HandoffError) as failure:
        log_rejected(visit, failure)
        error = failure.message

    active = {key: value for key, value in filters.items() if value}
    next_link = None
    if page["nextCursor"]:
        next_link = f"{HISTORY_PATH}?{urlencode({**active, 'cursor': page['nextCursor']})}"
    return render(
        visit,
        "deliveries.html",
        {
            "items": page["items"],
            "filters": filters,
            "filtered": bool(active),
            "statuses": DELIVERY_STATUSES,
            "events": EVENTS,
            "theme_ids": _theme_ids(visit, member.workspace_id),
            "next_link": next_link,
            "first_link": f"{HISTORY_PATH}?{urlencode(active)}" if cursor else None,
            "error": error,
        },
        status=422 if error else 200,
        title=PAGE_NAME,
    )


def _delivery_page(
    visit: Visit, member: Member, delivery_id: str, *, status: int = 200, **context: Any
) -> Response:
    try:
        delivery = read_delivery(delivery_id, member, visit.engine)
    except (ApiError, HandoffError) as error:
        raise blocked_by_error(visit, error) from None
    return render(
        visit,
        "delivery.html",
        {
            "delivery": delivery,
            "payload": _pretty_payload(visit, member.workspace_id, delivery["deliveryId"]),
            "max_excerpt": MAX_EXCERPT_SHOWN,
            **context,
        },
        status=status,
        title=f"Delivery {delivery['deliveryId']}",
    )


@router.get(HISTORY_PATH + "/{delivery_id}")
def delivery_page(
    request: Request,
    delivery_id: Annotated[str, Path()],
    redelivered: Annotated[str | None, Query()] = None,
) -> Response:
    visit = open_visit(request)
    member = visit.require_admin(PAGE_NAME)
    notice = REDELIVERY_QUEUED if redelivered is not None else None
    return _delivery_page(visit, member, delivery_id, notice=notice)


@router.post(HISTORY_PATH + "/{delivery_id}/redeliver")
def redeliver(
    request: Request,
    delivery_id: Annotated[str, Path()],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    visit = open_visit(request)
    visit.check_csrf(csrf_token)
    member = visit.require_admin(PAGE_NAME)
    try:
        accepted = redeliver_delivery(delivery_id, member, visit.engine)
    except (ApiError, HandoffError) as error:
        if error.status == 404:
            raise blocked_by_error(visit, error) from None
        log_rejected(visit, error)
        return _delivery_page(visit, member, delivery_id, status=error.status, error=error.message)
    # Redirecting to a GET keeps a reload of the result page from queueing another attempt.
    return redirect(visit, f"{HISTORY_PATH}/{accepted['deliveryId']}?redelivered=1")
