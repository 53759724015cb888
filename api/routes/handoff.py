"""The handoff endpoint: commit a theme's recommended action to the outbox for delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Path
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import CurrentEngine, CurrentMember, CurrentSettings, Member
from api.errors import NotFound, ValidationFailed
from api.idempotency import (
    find_key,
    is_key_conflict,
    replayed_delivery,
    request_hash,
    save_key,
    validate_key,
)
from api.schemas import (
    HandoffAccepted,
    HandoffRequest,
    error_responses,
    parse_json_object,
    read_body,
    request_body,
)
from outbox import NotPermitted, enqueue_handoff
from outbox.enqueue import EXPORT_PERMISSION, can_export
from schema.tables import themes

log = structlog.get_logger(__name__)

IDEMPOTENCY_ENDPOINT = "handoff"
HANDOFF_ACCEPTED_EVENT = "handoff_accepted"
HANDOFF_REPLAYED_EVENT = "handoff_replayed"

router = APIRouter(tags=["insights"])


def _theme_exists(engine: Engine, workspace_id: str, theme_id: str) -> bool:
    # Postgres text cannot hold NUL, so no theme has such an id, and the query would fail.
    if "\x00" in theme_id:
        return False
    with Session(engine) as session:
        found = session.execute(
            select(themes.c.id).where(
                themes.c.workspace_id == workspace_id, themes.c.id == theme_id
            )
        ).first()
    return found is not None


def _replay(member: Member, assistant_id: str, delivery_id: str) -> dict[str, str]:
    # A replay still needs today's permission for the assistant: the key belongs to the
    # workspace, and another member may send it.
    if not can_export(
        member.role, list(member.permissions), list(member.assistant_ids), assistant_id
    ):
        raise NotPermitted()
    log.info(HANDOFF_REPLAYED_EVENT, workspace_id=member.workspace_id, delivery_id=delivery_id)
    return {"deliveryId": delivery_id, "status": "pending"}


@router.post(
    "/api/v1/insights/themes/{themeId}/handoff",
    status_code=202,
    response_model=HandoffAccepted,
    responses=error_responses(401, 403, 404, 409, 422),
    openapi_extra=request_body(HandoffRequest),
    summary="Send solhelps.insight.handoff for a theme",
)
def send_handoff(
    theme_id: Annotated[str, Path(alias="themeId")],
    member: CurrentMember,
    engine: CurrentEngine,
    settings: CurrentSettings,
    body: Annotated[bytes, Depends(read_body)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, str]:
    """Commit a handoff and respond 202 with its delivery id.

    Checks run in the API's order. A theme id unknown to the caller's workspace gets 404
    before any permission check, so nothing leaks about other workspaces. A member without
    `insights.export` is refused before the body is read. The assistant scope, the theme's
    assistant, the range and the configuration are checked by `enqueue_handoff`, in that
    order.
    """
    if not _theme_exists(engine, member.workspace_id, theme_id):
        raise NotFound(f"theme {theme_id[:100]!r} not found in this workspace")
    if not member.is_admin and EXPORT_PERMISSION not in member.permissions:
        raise NotPermitted()

    payload = parse_json_object(body)
    assistant_id = payload.get("assistantId")
    if not isinstance(assistant_id, str) or not assistant_id.strip():
        raise ValidationFailed("assistantId", "required; send the assistant id as a string")
    key = validate_key(idempotency_key)
    hashed = request_hash({"themeId": theme_id}, payload)
    # enqueue_handoff validates range and sources, after its permission and theme checks.
    range_value: Any = payload.get("range")
    now = datetime.now(UTC)

    if key is not None:
        with Session(engine) as session:
            stored = find_key(
                session,
                workspace_id=member.workspace_id,
                endpoint=IDEMPOTENCY_ENDPOINT,
                key=key,
                now=now,
            )
        if stored is not None:
            return _replay(member, assistant_id, replayed_delivery(stored, hashed))

    try:
        with Session(engine) as session, session.begin():
            delivery_id = enqueue_handoff(
                session,
                workspace_id=member.workspace_id,
                actor_id=member.id,
                theme_id=theme_id,
                assistant_id=assistant_id,
                range=range_value,
                sources=payload.get("sources"),
                settings=settings,
            )
            if key is not None:
                save_key(
                    session,
                    workspace_id=member.workspace_id,
                    endpoint=IDEMPOTENCY_ENDPOINT,
                    key=key,
                    hashed_request=hashed,
                    delivery_id=delivery_id,
                    now=now,
                )
    except IntegrityError as error:
        # Two requests with one key raced and the other committed first; this one's
        # delivery was rolled back with the failed insert, so respond with the other's.
        if key is None or not is_key_conflict(error):
            raise
        with Session(engine) as session:
            stored = find_key(
                session,
                workspace_id=member.workspace_id,
                endpoint=IDEMPOTENCY_ENDPOINT,
                key=key,
                now=now,
            )
        if stored is None:
            raise
        return _replay(member, assistant_id, replayed_delivery(stored, hashed))

    log.info(
        HANDOFF_ACCEPTED_EVENT,
        workspace_id=member.workspace_id,
        delivery_id=delivery_id,
        theme_id=theme_id,
        member_id=member.id,
        idempotency_key_given=key is not None,
    )
    return {"deliveryId": delivery_id, "status": "pending"}
