"""Cancellation of a workspace's undelivered deliveries when its integration goes away."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from schema.tables import deliveries

OPEN_STATUSES = ("pending", "queued", "retrying")


def cancel_open_deliveries(db: Session | Connection, workspace_id: str, reason: str) -> int:
    """Turn the workspace's pending, queued and retrying deliveries into `cancelled`.

    An attempt already in flight (`sending`) finishes and records its own outcome. Runs in
    the caller's transaction and never commits.

    Returns:
        How many deliveries were cancelled.
    """
    result = db.execute(
        update(deliveries)
        .where(deliveries.c.workspace_id == workspace_id, deliveries.c.status.in_(OPEN_STATUSES))
        .values(
            status="cancelled",
            failure_reason=reason,
            next_attempt_at=None,
            updated_at=datetime.now(UTC),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
