"""Bulk redelivery: one more attempt for every delivery that failed since a given time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from outbox.errors import HandoffError, WebhookDisabled, WebhookNotConfigured
from outbox.redeliver import redeliver
from schema.tables import deliveries, integrations

log = structlog.get_logger(__name__)

FAILED_REDELIVERED = "failed_deliveries_redelivered"


@dataclass
class BulkRedelivery:
    """Result of a bulk redelivery, delivery by delivery."""

    redelivered: int = 0
    # Deliveries left alone because their workspace's integration is removed or disabled.
    skipped_not_configured: int = 0
    skipped_disabled: int = 0
    # Deliveries that were no longer `failed` when their turn came (redelivered meanwhile).
    skipped_changed: int = 0
    skipped_workspaces: set[str] = field(default_factory=set)


def redeliver_failed_since(
    engine: Engine, since: datetime, *, workspace_id: str | None = None
) -> BulkRedelivery:
    """Queue one manual attempt of every delivery that failed at or after `since`.

    A delivery counts as failed at its last change (`updated_at`), the moment it became
    `failed`. Workspaces whose integration is removed or disabled are skipped whole; each
    redelivery commits on its own, so a failure part-way keeps what was done.

    Args:
        engine: the service's database.
        since: the earliest failure time to include (timezone-aware).
        workspace_id: only this workspace; None for every workspace.

    Returns:
        The counts of redelivered and skipped deliveries.
    """
    query = (
        select(deliveries.c.id, deliveries.c.workspace_id)
        .where(deliveries.c.status == "failed", deliveries.c.updated_at >= since)
        .order_by(deliveries.c.updated_at, deliveries.c.id)
    )
    if workspace_id is not None:
        query = query.where(deliveries.c.workspace_id == workspace_id)
    with engine.connect() as connection:
        failed = connection.execute(query).all()
        workspace_ids = {row.workspace_id for row in failed}
        enabled_by_workspace = {
            row.workspace_id: row.enabled
            for row in connection.execute(
                select(integrations.c.workspace_id, integrations.c.enabled).where(
                    integrations.c.workspace_id.in_(workspace_ids)
                )
            )
        }

    result = BulkRedelivery()
    for row in failed:
        enabled = enabled_by_workspace.get(row.workspace_id)
        if enabled is None:
            result.skipped_not_configured += 1
            result.skipped_workspaces.add(row.workspace_id)
            continue
        if not enabled:
            result.skipped_disabled += 1
            result.skipped_workspaces.add(row.workspace_id)
            continue
        _redeliver_one(engine, row.workspace_id, str(row.id), result)

    log.info(
        FAILED_REDELIVERED,
        since=since.isoformat(),
        workspace_id=workspace_id,
        redelivered=result.redelivered,
        skipped_not_configured=result.skipped_not_configured,
        skipped_disabled=result.skipped_disabled,
        skipped_changed=result.skipped_changed,
    )
    return result


def _redeliver_one(
    engine: Engine, workspace_id: str, delivery_id: str, result: BulkRedelivery
) -> None:
    with Session(engine) as session, session.begin():
        # The lock orders this against a concurrent redelivery; only a still-failed
        # delivery is queued again.
        status = session.execute(
            select(deliveries.c.status).where(deliveries.c.id == delivery_id).with_for_update()
        ).scalar_one_or_none()
        if status != "failed":
            result.skipped_changed += 1
            return
        try:
            redeliver(session, workspace_id, delivery_id, now=datetime.now(UTC))
        except WebhookNotConfigured:
            result.skipped_not_configured += 1
            result.skipped_workspaces.add(workspace_id)
        except WebhookDisabled:
            result.skipped_disabled += 1
            result.skipped_workspaces.add(workspace_id)
        except HandoffError:
            # Not found (pruned meanwhile) or in progress: no longer a failed delivery.
            result.skipped_changed += 1
        else:
            result.redelivered += 1
