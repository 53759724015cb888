"""Enqueueing of events: product code adds a delivery and its outbox row to its own transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import LargeBinary, bindparam, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from handoff.redaction import redact_url
from handoff.settings import Settings, current_settings
from outbox.errors import NotPermitted, ThemeNotFound, WebhookDisabled, WebhookNotConfigured
from outbox.events import (
    HANDOFF_EVENT,
    TEST_EVENT,
    Actor,
    Theme,
    Workspace,
    build_handoff_body,
    build_test_body,
    parse_range,
    parse_sources,
)

EXPORT_PERMISSION = "insights.export"
ADMIN_ROLES = ("owner", "admin")


def can_export(
    role: str, permissions: list[str], assistant_ids: list[str], assistant_id: str
) -> bool:
    """Tell whether a member may send a handoff for `assistant_id`.

    Owners and admins have every permission and every assistant.
    """
    if role in ADMIN_ROLES:
        return True
    return EXPORT_PERMISSION in permissions and assistant_id in assistant_ids


# Actor, workspace, theme and integration in one round trip. Enqueue sits inside the
# caller's transaction, so every round trip it saves shortens the time the caller holds its
# locks. Plain SQL built once: compiling and cache-keying an equivalent select() construct
# on every call cost more CPU than the query itself. Theme and integration columns are
# NULL when missing.
_CONTEXT = text(
    """
    SELECT m.id::text AS actor_id, m.name AS actor_name, m.role, m.permissions, m.assistant_ids,
           w.name AS workspace_name, w.plan_tier,
           t.id AS theme_id, t.assistant_id AS theme_assistant_id, t.label AS theme_label,
           t.conversation_count, t.impact_tier, t.confidence, t.recommendation_title,
           t.recommendation_next_step, t.evidence,
           i.provider, i.url, i.enabled
    FROM members m
    JOIN workspaces w ON w.id = m.workspace_id
    LEFT JOIN themes t ON t.workspace_id = m.workspace_id AND t.id = :theme_id
    LEFT JOIN integrations i ON i.workspace_id = m.workspace_id
    WHERE m.id = :actor_id AND m.workspace_id = :workspace_id
    """
).bindparams(bindparam("actor_id", type_=UUID(as_uuid=False)))


def _load_context(session: Session, workspace_id: str, actor_id: str, theme_id: str | None) -> Any:
    """Read the actor, its workspace, the theme and the integration in one round trip."""
    row = (
        session.connection()
        .execute(
            _CONTEXT, {"actor_id": actor_id, "workspace_id": workspace_id, "theme_id": theme_id}
        )
        .one_or_none()
    )
    if row is None:
        raise NotPermitted(f"not permitted: member {actor_id} is not in workspace {workspace_id}")
    return row


def _actor(context: Any) -> Actor:
    return Actor(user_id=context.actor_id, name=context.actor_name, role=context.role)


def _workspace(context: Any, workspace_id: str) -> Workspace:
    return Workspace(
        company_id=workspace_id, company_name=context.workspace_name, plan_tier=context.plan_tier
    )


def _check_integration(context: Any) -> None:
    if context.enabled is None:
        raise WebhookNotConfigured()
    if not context.enabled:
        raise WebhookDisabled()


# Both rows in one statement: one round trip instead of two inside the caller's transaction.
_INSERT_DELIVERY = text(
    """
    WITH delivery AS (
        INSERT INTO deliveries (
            id, workspace_id, event, theme_id, body, status, provider, url_redacted,
            created_at, next_attempt_at, max_automatic_attempts
        ) VALUES (
            :delivery_id, :workspace_id, :event, :theme_id, :body, 'pending', :provider,
            :url_redacted, :created_at, :created_at, :max_automatic_attempts
        )
        RETURNING id
    )
    INSERT INTO outbox (delivery_id, available_at) SELECT id, :created_at FROM delivery
    """
).bindparams(bindparam("body", type_=LargeBinary))


def _add_delivery(
    session: Session,
    *,
    delivery_id: str,
    workspace_id: str,
    event: str,
    theme_id: str | None,
    body: bytes,
    context: Any,
    created_at: datetime,
    max_automatic_attempts: int,
) -> None:
    session.connection().execute(
        _INSERT_DELIVERY,
        {
            "delivery_id": delivery_id,
            "workspace_id": workspace_id,
            "event": event,
            "theme_id": theme_id,
            "body": body,
            "provider": context.provider,
            "url_redacted": redact_url(context.url),
            "created_at": created_at,
            "max_automatic_attempts": max_automatic_attempts,
        },
    )


def enqueue_handoff(
    session: Session,
    *,
    workspace_id: str,
    actor_id: str,
    theme_id: str,
    assistant_id: str,
    range: dict[str, Any],  # noqa: A002 - the public name matches the API's request field
    sources: list[str] | None = None,
    settings: Settings | None = None,
) -> str:
    """Add a `solhelps.insight.handoff` delivery to the caller's transaction.

    The row is sent only if the caller commits; this function never commits or flushes
    beyond its own inserts. Checks run in the API's order: permission, existence,
    validation, configuration.

    Returns:
        The new `deliveryId`.

    Raises:
        NotPermitted: the actor lacks `insights.export` or the assistant scope.
        ThemeNotFound: no such theme, or it belongs to another assistant.
        InvalidHandoff: `range` or `sources` is invalid.
        WebhookNotConfigured, WebhookDisabled: the integration is missing or off.
    """
    settings = settings or current_settings()
    now = datetime.now(UTC)

    context = _load_context(session, workspace_id, actor_id, theme_id)
    if not can_export(context.role, context.permissions, context.assistant_ids, assistant_id):
        raise NotPermitted()

    if context.theme_id is None or context.theme_assistant_id != assistant_id:
        raise ThemeNotFound(theme_id)

    date_range = parse_range(range, now)
    source_list = parse_sources(sources)
    _check_integration(context)

    delivery_id = str(uuid.uuid4())
    theme = Theme(
        id=context.theme_id,
        assistant_id=context.theme_assistant_id,
        label=context.theme_label,
        conversation_count=context.conversation_count,
        impact_tier=context.impact_tier,
        confidence=context.confidence,
        recommendation_title=context.recommendation_title,
        recommendation_next_step=context.recommendation_next_step,
        evidence=list(context.evidence),
    )
    body = build_handoff_body(
        delivery_id=delivery_id,
        created_at=now,
        workspace=_workspace(context, workspace_id),
        actor=_actor(context),
        theme=theme,
        date_range=date_range,
        sources=source_list,
        app_base_url=settings.app_base_url,
    )
    _add_delivery(
        session,
        delivery_id=delivery_id,
        workspace_id=workspace_id,
        event=HANDOFF_EVENT,
        theme_id=theme_id,
        body=body,
        context=context,
        created_at=now,
        max_automatic_attempts=len(settings.retry_schedule_s) + 1,
    )
    return delivery_id


def enqueue_test_event(
    session: Session, *, workspace_id: str, actor_id: str, settings: Settings | None = None
) -> str:
    """Add a `solhelps.webhook.test` delivery, with one attempt and no retry, to the transaction.

    Returns:
        The new `deliveryId`.

    Raises:
        NotPermitted: the actor is not an owner or admin of the workspace.
        WebhookNotConfigured, WebhookDisabled: the integration is missing or off.
    """
    settings = settings or current_settings()
    now = datetime.now(UTC)

    context = _load_context(session, workspace_id, actor_id, None)
    if context.role not in ADMIN_ROLES:
        raise NotPermitted("not permitted: only an Admin or Owner can send the test webhook")
    _check_integration(context)

    delivery_id = str(uuid.uuid4())
    body = build_test_body(
        delivery_id=delivery_id,
        created_at=now,
        workspace=_workspace(context, workspace_id),
        actor=_actor(context),
        app_base_url=settings.app_base_url,
    )
    _add_delivery(
        session,
        delivery_id=delivery_id,
        workspace_id=workspace_id,
        event=TEST_EVENT,
        theme_id=None,
        body=body,
        context=context,
        created_at=now,
        max_automatic_attempts=1,
    )
    return delivery_id
