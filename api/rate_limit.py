"""Rate limit of test webhooks: at most 10 per workspace in any rolling 60 seconds."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.errors import RateLimited
from outbox.events import TEST_EVENT
from schema.tables import deliveries

TEST_SENDS_PER_WINDOW = 10
WINDOW = timedelta(seconds=60)


def check_test_send_rate(session: Session, workspace_id: str, now: datetime) -> None:
    """Raise RateLimited when the workspace's test deliveries of the last minute exceed 10.

    Call it in the transaction that has just added the new test delivery, after adding it:
    the count includes that delivery, and raising rolls it back. A transaction-scoped
    advisory lock per workspace serializes concurrent test sends. Under READ COMMITTED
    the count runs after the lock is granted, so it counts every delivery committed
    by the sender that held the lock before, and ten concurrent senders cannot all pass.

    Raises:
        RateLimited: the limit is reached; `retry_after_s` is the time until the oldest
            test delivery in the window leaves it.
    """
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
        {"name": f"test_send:{workspace_id}"},
    )
    since = now - WINDOW
    count, oldest = session.execute(
        select(func.count(), func.min(deliveries.c.created_at)).where(
            deliveries.c.workspace_id == workspace_id,
            deliveries.c.event == TEST_EVENT,
            deliveries.c.created_at > since,
        )
    ).one()
    if count <= TEST_SENDS_PER_WINDOW:
        return
    wait_s = (oldest + WINDOW - now).total_seconds() if oldest is not None else WINDOW.seconds
    retry_after_s = max(1, math.ceil(wait_s))
    raise RateLimited(
        f"rate limited: at most {TEST_SENDS_PER_WINDOW} test webhooks per minute per "
        f"workspace; retry in {retry_after_s} s",
        retry_after_s=retry_after_s,
    )
