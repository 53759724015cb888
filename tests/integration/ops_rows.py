"""Test rows for the operations tests: deliveries, attempts and outbox rows aged by SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, update

from schema.tables import deliveries, delivery_attempts, integrations, outbox

HANDOFF_EVENT = "solhelps.insight.handoff"


def ago(**kwargs: float) -> datetime:
    """Return the time that long before now, such as ago(days=6)."""
    return datetime.now(UTC) - timedelta(**kwargs)


def add_delivery(
    engine: Engine,
    workspace_id: str,
    *,
    status: str,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
    delivered_at: datetime | None = None,
    next_attempt_at: datetime | None = None,
    attempts: int = 0,
) -> str:
    """Insert one delivery (and `attempts` attempt rows); `updated_at` defaults to `created_at`."""
    delivery_id = str(uuid.uuid4())
    created_at = created_at or datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries).values(
                id=delivery_id,
                workspace_id=workspace_id,
                event=HANDOFF_EVENT,
                theme_id="permissions",
                body=b"{}",
                status=status,
                provider="generic",
                url_redacted="http://127.0.0.1:9/…",
                created_at=created_at,
                updated_at=updated_at or created_at,
                delivered_at=delivered_at,
                next_attempt_at=next_attempt_at,
                attempt_count=attempts,
                max_automatic_attempts=4,
            )
        )
        for number in range(1, attempts + 1):
            connection.execute(
                insert(delivery_attempts).values(
                    delivery_id=delivery_id,
                    number=number,
                    trigger="scheduled",
                    started_at=created_at,
                    outcome="failed" if status == "failed" else "delivered",
                )
            )
    return delivery_id


def add_outbox_row(
    engine: Engine,
    delivery_id: str,
    *,
    available_at: datetime,
    published_at: datetime | None = None,
) -> None:
    """Insert one outbox row of `delivery_id`."""
    with engine.begin() as connection:
        connection.execute(
            insert(outbox).values(
                delivery_id=delivery_id,
                available_at=available_at,
                created_at=available_at,
                published_at=published_at,
            )
        )


def set_integration_updated_at(engine: Engine, workspace_id: str, moment: datetime) -> None:
    """Backdate the integration's last change."""
    with engine.begin() as connection:
        connection.execute(
            update(integrations)
            .where(integrations.c.workspace_id == workspace_id)
            .values(updated_at=moment, created_at=moment)
        )


def delivery_ids(engine: Engine) -> set[str]:
    """Return the ids of every delivery left."""
    with engine.connect() as connection:
        return {str(row) for row in connection.execute(select(deliveries.c.id)).scalars()}
