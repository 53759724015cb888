"""Manual redelivery: queue one more attempt of an existing delivery, same id and body."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from outbox.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    WebhookDisabled,
    WebhookNotConfigured,
)
from outbox.history import parse_delivery_id
from outbox.sweeper import INTERRUPTED_MESSAGE
from schema.tables import deliveries, delivery_attempts, integrations, outbox


def redeliver(session: Session, workspace_id: str, delivery_id: str, *, now: datetime) -> None:
    """Queue one manual attempt of a delivery in the caller's transaction.

    The delivery becomes `queued` with `next_trigger='manual'`, and an outbox row makes the
    relay publish it; the worker then makes one attempt with trigger `manual`, which does
    not count toward the automatic attempts. Works from any status but an attempt in
    flight. Never commits.

    Args:
        session: the caller's session, inside a transaction.
        workspace_id: the workspace the delivery must belong to.
        delivery_id: the delivery to redeliver.
        now: the current time (timezone-aware).

    Raises:
        DeliveryNotFound: no such delivery in the workspace, or not a UUID.
        WebhookNotConfigured, WebhookDisabled: the integration is missing or off.
        DeliveryInProgress: the delivery is `sending` and its lease has not expired.
    """
    canonical = parse_delivery_id(delivery_id)
    if canonical is None:
        raise DeliveryNotFound(delivery_id)

    # The row lock orders this against a worker claiming or recording an attempt, so the
    # status read below cannot change before the update.
    row = session.execute(
        select(deliveries.c.status, deliveries.c.lease_until)
        .where(deliveries.c.id == canonical, deliveries.c.workspace_id == workspace_id)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise DeliveryNotFound(delivery_id)

    enabled = session.execute(
        select(integrations.c.enabled).where(integrations.c.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if enabled is None:
        raise WebhookNotConfigured()
    if not enabled:
        raise WebhookDisabled()

    if row.status == "sending":
        if row.lease_until is not None and row.lease_until > now:
            raise DeliveryInProgress(canonical)
        # The lease ran out, so the worker is gone. The attempt is closed as the sweeper
        # would close it; otherwise the history would show it in flight forever.
        session.execute(
            update(delivery_attempts)
            .where(
                delivery_attempts.c.delivery_id == canonical,
                delivery_attempts.c.outcome.is_(None),
            )
            .values(
                outcome="interrupted",
                error_class="interrupted",
                error_message=INTERRUPTED_MESSAGE,
            )
        )

    session.execute(
        update(deliveries)
        .where(deliveries.c.id == canonical)
        .values(
            status="queued",
            queued_at=now,
            next_trigger="manual",
            next_attempt_at=now,
            lease_until=None,
            updated_at=now,
        )
    )
    session.execute(
        insert(outbox).values(delivery_id=canonical, trigger="manual", available_at=now)
    )
