"""Retention: removes published outbox rows and finished delivery history past the retention period.

What goes, once older than `HANDOFF_RETENTION_DAYS`:

- outbox rows the relay published (by `published_at`);
- deliveries in a final state, with their attempts and outbox rows: `delivered` and
  `cancelled` ones, and `failed` ones of a workspace whose integration was removed. A failed
  delivery of a workspace that still has its integration stays until it is resolved
  (redelivered and delivered), so an admin can still find and redeliver it. A delivery's age
  is that of its last change (`updated_at`), so a recent manual redelivery keeps it.

Rows go in batches of `BATCH_SIZE`, one short transaction each, and rows locked by someone
else are skipped (`SKIP LOCKED`) rather than waited for, so pruning never holds long locks or
blocks the relay and the workers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger(__name__)

RETENTION_PRUNED = "retention_pruned"
RETENTION_FAILED = "retention_failed"
BATCH_SIZE = 1000
PRUNE_INTERVAL_S = 3600.0
# After a failed prune (Postgres restarting), the next try comes sooner than in an hour.
RETRY_INTERVAL_S = 60.0

# Oldest ids first: ids grow with time, so the primary key finds old rows without a scan.
_PRUNE_OUTBOX = text(
    """
    WITH old AS (
        SELECT id FROM outbox
        WHERE published_at < now() - make_interval(days => :days)
        ORDER BY id
        LIMIT :batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM outbox USING old WHERE outbox.id = old.id
    """
)

# Attempts and outbox rows go with their delivery (ON DELETE CASCADE).
# NOTE: no index covers `updated_at`, so each batch scans `deliveries` until it has found
# its rows. At high volume, an index on (updated_at) WHERE status IN ('delivered',
# 'cancelled', 'failed') would keep each batch short.
_PRUNE_DELIVERIES = text(
    """
    WITH old AS (
        SELECT d.id FROM deliveries d
        WHERE d.updated_at < now() - make_interval(days => :days)
          AND (d.status IN ('delivered', 'cancelled')
               OR (d.status = 'failed'
                   AND NOT EXISTS (
                       SELECT 1 FROM integrations i WHERE i.workspace_id = d.workspace_id)))
        LIMIT :batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM deliveries USING old WHERE deliveries.id = old.id
    """
)


@dataclass(frozen=True)
class PruneResult:
    """How many rows one prune removed, and whether it stopped before finishing."""

    outbox_rows: int
    deliveries: int
    finished: bool


def prune(
    engine: Engine,
    retention_days: int,
    *,
    batch_size: int = BATCH_SIZE,
    time_budget_s: float | None = None,
) -> PruneResult:
    """Delete everything older than the retention period, one batch per transaction.

    Args:
        engine: the service's database; each batch commits on its own.
        retention_days: rows whose time is older than this many days go.
        batch_size: rows per transaction.
        time_budget_s: stop after the batch that passes this many seconds, leaving the rest
            for the next run; None runs until nothing old is left.

    Returns:
        The counts removed; `finished` is False when the time budget stopped the run early.
    """
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    parameters = {"days": retention_days, "batch_size": batch_size}
    removed = {"outbox": 0, "deliveries": 0}
    finished = True
    for name, statement in (("deliveries", _PRUNE_DELIVERIES), ("outbox", _PRUNE_OUTBOX)):
        while True:
            with engine.begin() as connection:
                count = connection.execute(statement, parameters).rowcount
            removed[name] += count
            if count < batch_size:
                break
            if deadline is not None and time.monotonic() > deadline:
                finished = False
                break
        if not finished:
            break

    result = PruneResult(
        outbox_rows=removed["outbox"], deliveries=removed["deliveries"], finished=finished
    )
    if result.outbox_rows or result.deliveries or not finished:
        log.info(
            RETENTION_PRUNED,
            outbox_rows=result.outbox_rows,
            deliveries=result.deliveries,
            finished=finished,
            retention_days=retention_days,
        )
    return result


def run_retention(
    engine: Engine, retention_days: int, stop: threading.Event, interval_s: float = PRUNE_INTERVAL_S
) -> None:
    """Prune at once and then every `interval_s` seconds until `stop` is set.

    The relay process runs this in a thread of its own, so pruning never delays publishing.
    Several relays may prune at the same time: each batch skips the rows another one holds.
    """
    while not stop.is_set():
        wait_s = interval_s
        try:
            prune(engine, retention_days)
        except SQLAlchemyError as error:
            log.warning(RETENTION_FAILED, error=type(error).__name__, retry_in_s=RETRY_INTERVAL_S)
            wait_s = RETRY_INTERVAL_S
        stop.wait(wait_s)
