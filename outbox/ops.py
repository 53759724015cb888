"""Operations figures: outbox backlog, deliveries per status, retries, broker queue, last hour.

One function builds the layout that `GET /api/v1/ops/queues`, `handoff ops status --json`,
the admin UI and the API's `/metrics` share:

    {"outbox": {"pending", "oldestPendingAgeSeconds"},
     "deliveries": {one count per status, all seven},
     "retries": {"dueNow", "nextDueAt"},
     "broker": {"queue", "messages", "delayed", "deadLettered"} (+ "error" when unreadable),
     "lastHour": {"delivered", "failed", "latencyP50Ms", "latencyP95Ms"}}
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import dramatiq
from sqlalchemy import Engine, text

from outbox.broker_figures import broker_figures, null_broker_figures
from outbox.events import format_timestamp
from schema.tables import DELIVERY_STATUSES

# The figures read whole tables (see the NOTE below). A slow scan must not pin a connection
# for an operator page that refreshes every few seconds.
STATEMENT_TIMEOUT_MS = 10_000

# "Pending" outbox rows are the relay's backlog: unpublished and due. A retry's row waits
# unpublished until its time comes, and counts under `retries`, not here.
_OUTBOX = """
    SELECT count(*) AS pending,
           extract(epoch FROM now() - min(o.available_at)) AS oldest_age_s
    FROM outbox o {join}
    WHERE o.published_at IS NULL AND o.available_at <= now()
"""
_OUTBOX_JOIN = "JOIN deliveries d ON d.id = o.delivery_id AND d.workspace_id = :workspace_id"

# NOTE: one scan of `deliveries` (of one workspace with a filter) per call. That is fine for
# the retention period's rows at moderate volume. At thousands of handoffs a second, the
# per-status counts and the last-hour window need indexes or pre-aggregated counters.
# `failed` has no timestamp of its own, so a delivery counts as failed in the last hour when
# its row last changed within it (a failure is its final change until a redelivery).
# Latency runs from createdAt (the enqueueing transaction's start, close to its commit) to
# deliveredAt.
_DELIVERIES = """
    SELECT {status_counts},
        count(*) FILTER (WHERE status = 'retrying' AND next_attempt_at <= now()) AS due_now,
        min(next_attempt_at) FILTER (WHERE status = 'retrying' AND next_attempt_at > now())
            AS next_due_at,
        count(*) FILTER (WHERE delivered_at >= now() - interval '1 hour') AS delivered,
        count(*) FILTER (WHERE status = 'failed' AND updated_at >= now() - interval '1 hour')
            AS failed,
        percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM delivered_at - created_at) * 1000
        ) FILTER (WHERE delivered_at >= now() - interval '1 hour') AS latency_p50_ms,
        percentile_cont(0.95) WITHIN GROUP (
            ORDER BY extract(epoch FROM delivered_at - created_at) * 1000
        ) FILTER (WHERE delivered_at >= now() - interval '1 hour') AS latency_p95_ms
    FROM deliveries {where}
"""
_STATUS_COUNTS = ", ".join(
    f"count(*) FILTER (WHERE status = '{status}') AS status_{status}"
    for status in DELIVERY_STATUSES
)


def queue_figures(
    engine: Engine, broker: dramatiq.Broker | str | None, workspace_id: str | None = None
) -> dict[str, Any]:
    """Read the operations figures of every workspace, or of one.

    Runs its own read-only transaction; the broker part never raises (see `broker_figures`).

    Args:
        engine: the service's database.
        broker: a Dramatiq broker or a `BROKER_URL`; None reports the broker as not
            configured.
        workspace_id: None for every workspace (operators); a workspace id for that
            workspace's figures (its admins). The broker is shared by every workspace and its
            messages carry no workspace, so a workspace's view has null broker counts
            instead of figures that would reveal other workspaces' traffic.

    Returns:
        The layout in this module's docstring. Ages are in seconds, latencies in
        milliseconds, times in UTC ISO 8601 with milliseconds; an empty measure is None.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: Postgres failed or the statement timed out.
    """
    parameters = {"workspace_id": workspace_id}
    outbox_sql = _OUTBOX.format(join=_OUTBOX_JOIN if workspace_id is not None else "")
    deliveries_sql = _DELIVERIES.format(
        status_counts=_STATUS_COUNTS,
        where="WHERE workspace_id = :workspace_id" if workspace_id is not None else "",
    )
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        backlog = connection.execute(text(outbox_sql), parameters).one()
        row = connection.execute(text(deliveries_sql), parameters).one()

    broker_part = null_broker_figures() if workspace_id is not None else broker_figures(broker)
    return {
        "outbox": {
            "pending": int(backlog.pending),
            "oldestPendingAgeSeconds": _rounded(backlog.oldest_age_s, 3),
        },
        "deliveries": {
            status: int(getattr(row, f"status_{status}")) for status in DELIVERY_STATUSES
        },
        "retries": {
            "dueNow": int(row.due_now),
            "nextDueAt": None if row.next_due_at is None else format_timestamp(row.next_due_at),
        },
        "broker": broker_part,
        "lastHour": {
            "delivered": int(row.delivered),
            "failed": int(row.failed),
            "latencyP50Ms": _rounded(row.latency_p50_ms, 1),
            "latencyP95Ms": _rounded(row.latency_p95_ms, 1),
        },
    }


def _rounded(value: Decimal | float | None, digits: int) -> float | None:
    if value is None:
        return None
    return round(max(0.0, float(value)), digits)
