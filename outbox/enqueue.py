"""Enqueueing of events: product code adds a delivery and its outbox row to its own transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
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
from schema.tables import deliveries, integrations, members, outbox, themes, workspaces

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


def _load_actor(session: Session, workspace_id: str, actor_id: str) -> tuple[Actor, Any]:
    row = session.execute(
        select(members).where(members.c.id == actor_id, members.c.workspace_id == workspace_id)
    ).one_or_none()
    if row is None:
        raise NotPermitted(f"not permitted: member {actor_id} is not in workspace {workspace_id}")
    return Actor(user_id=row.id, name=row.name, role=row.role), row


def _load_workspace(session: Session, workspace_id: str) -> Workspace:
    row = session.execute(select(workspaces).where(workspaces.c.id == workspace_id)).one()
    return Workspace(company_id=row.id, company_name=row.name, plan_tier=row.plan_tier)


def _load_integration(session: Session, workspace_id: str) -> Any:
    row = session.execute(
        select(integrations.c.provider, integrations.c.url, integrations.c.enabled).where(
            integrations.c.workspace_id == workspace_id
        )
    ).one_or_none()
    if row is None:
        raise WebhookNotConfigured()
    if not row.enabled:
        raise WebhookDisabled()
    return row


def _add_delivery(
    session: Session,
    *,
    delivery_id: str,
    workspace_id: str,
    event: str,
    theme_id: str | None,
    body: bytes,
    integration: Any,
    created_at: datetime,
    max_automatic_attempts: int,
) -> None:
    session.execute(
        insert(deliveries).values(
            id=delivery_id,
            workspace_id=workspace_id,
            event=event,
            theme_id=theme_id,
            body=body,
            status="pending",
            provider=integration.provider,
            url_redacted=redact_url(integration.url),
            created_at=created_at,
            next_attempt_at=created_at,
            max_automatic_attempts=max_automatic_attempts,
        )
    )
    session.execute(insert(outbox).values(delivery_id=delivery_id, available_at=created_at))


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

    actor, member = _load_actor(session, workspace_id, actor_id)
    if not can_export(member.role, member.permissions, member.assistant_ids, assistant_id):
        raise NotPermitted()

    theme_row = session.execute(
        select(themes).where(themes.c.workspace_id == workspace_id, themes.c.id == theme_id)
    ).one_or_none()
    if theme_row is None or theme_row.assistant_id != assistant_id:
        raise ThemeNotFound(theme_id)

    date_range = parse_range(range, now)
    source_list = parse_sources(sources)
    integration = _load_integration(session, workspace_id)

    delivery_id = str(uuid.uuid4())
    theme = Theme(
        id=theme_row.id,
        assistant_id=theme_row.assistant_id,
        label=theme_row.label,
        conversation_count=theme_row.conversation_count,
        impact_tier=theme_row.impact_tier,
        confidence=theme_row.confidence,
        recommendation_title=theme_row.recommendation_title,
        recommendation_next_step=theme_row.recommendation_next_step,
        evidence=list(theme_row.evidence),
    )
    body = build_handoff_body(
        delivery_id=delivery_id,
        created_at=now,
        workspace=_load_workspace(session, workspace_id),
        actor=actor,
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
        integration=integration,
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

    actor, member = _load_actor(session, workspace_id, actor_id)
    if member.role not in ADMIN_ROLES:
        raise NotPermitted("not permitted: only an Admin or Owner can send the test webhook")
    integration = _load_integration(session, workspace_id)

    delivery_id = str(uuid.uuid4())
    body = build_test_body(
        delivery_id=delivery_id,
        created_at=now,
        workspace=_load_workspace(session, workspace_id),
        actor=actor,
        app_base_url=settings.app_base_url,
    )
    _add_delivery(
        session,
        delivery_id=delivery_id,
        workspace_id=workspace_id,
        event=TEST_EVENT,
        theme_id=None,
        body=body,
        integration=integration,
        created_at=now,
        max_automatic_attempts=1,
    )
    return delivery_id
