"""The sweeper: recovers deliveries whose message or attempt was lost, from Postgres state alone.

Dramatiq alone takes from a minute to well over ten to bring back a killed worker's
message, and loses queued messages outright when Redis restarts empty. Postgres records
what should be happening, so the sweeper compares the two and re-publishes through the
outbox: a recovered delivery gets one more outbox row with trigger `recovered`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, text

from handoff.settings import Settings
from outbox.auto_disable import disable_failing_integrations
from outbox.metrics import SWEEPER_RECOVERED_TOTAL

log = structlog.get_logger(__name__)

SWEEP_LIMIT = 1000
# Auto-disable looks at failure streaks of days, so once an hour is often enough.
AUTO_DISABLE_INTERVAL_S = 3600.0
INTERRUPTED_MESSAGE = "attempt interrupted: no outcome was recorded before its lease expired"

# An attempt whose lease expired without an outcome: the worker died or lost Postgres
# mid-request. The attempt is recorded `interrupted` and counts toward the automatic
# attempts. The next one is published at once with trigger `recovered`, unless no automatic
# attempt is left, in which case the delivery fails.
_EXPIRED_LEASES = text(
    """
    WITH expired AS (
        SELECT id, automatic_attempts,
               (next_trigger <> 'manual' AND automatic_attempts >= max_automatic_attempts)
                   AS gave_up
        FROM deliveries
        WHERE status = 'sending' AND lease_until < now()
        ORDER BY lease_until
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), interrupted AS (
        UPDATE delivery_attempts SET
            outcome = 'interrupted', error_class = 'interrupted', error_message = :message
        FROM expired
        WHERE delivery_attempts.delivery_id = expired.id AND delivery_attempts.outcome IS NULL
        RETURNING delivery_attempts.delivery_id
    ), updated AS (
        UPDATE deliveries SET
            status = CASE WHEN expired.gave_up THEN 'failed' ELSE 'retrying' END,
            failure_reason = CASE WHEN expired.gave_up
                                  THEN 'gave up after ' || expired.automatic_attempts
                                       || ' attempts: the last one was interrupted'
                                  ELSE deliveries.failure_reason END,
            next_attempt_at = CASE WHEN expired.gave_up THEN NULL ELSE now() END,
            lease_until = NULL,
            updated_at = now()
        FROM expired
        WHERE deliveries.id = expired.id
        RETURNING deliveries.id, deliveries.status
    ), published AS (
        INSERT INTO outbox (delivery_id, trigger, available_at)
        SELECT id, 'recovered', now() FROM updated WHERE status = 'retrying'
        RETURNING delivery_id
    )
    SELECT
        (SELECT count(*) FROM updated) AS interrupted,
        (SELECT count(*) FROM published) AS republished
    """
)

# A delivery the relay published that no worker claimed within the grace period, or a
# retry that came due with no outbox row waiting: its message is gone (Redis restarted or
# flushed, a worker killed with the message prefetched). A message that is merely slow, in a
# long backlog, gets a duplicate; the worker's claim turns the extra copy into a no-op.
_LOST_MESSAGES = text(
    """
    WITH lost AS (
        SELECT d.id FROM deliveries d
        WHERE ((d.status = 'queued' AND d.queued_at < now() - make_interval(secs => :grace_s))
               OR (d.status = 'retrying'
                   AND d.next_attempt_at < now() - make_interval(secs => :grace_s)))
          AND NOT EXISTS (
              SELECT 1 FROM outbox o WHERE o.delivery_id = d.id AND o.published_at IS NULL
          )
        ORDER BY d.id
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    ), touched AS (
        UPDATE deliveries SET queued_at = now(), updated_at = now()
        FROM lost WHERE deliveries.id = lost.id
        RETURNING deliveries.id
    )
    INSERT INTO outbox (delivery_id, trigger, available_at)
    SELECT id, 'recovered', now() FROM touched
    RETURNING delivery_id
    """
)


@dataclass(frozen=True)
class SweepResult:
    """Counts of the deliveries one sweep recovered."""

    interrupted: int
    republished: int


class Sweeper:
    """Finds lost messages and expired attempt leases and re-publishes them through the outbox."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._next_auto_disable = time.monotonic()

    def sweep(self) -> SweepResult:
        """Run one sweep in one transaction; safe to run from several relays at once.

        Once an hour (and on the first sweep) it also disables the integrations whose
        deliveries have all failed for `HANDOFF_AUTO_DISABLE_DAYS` days.
        """
        with self._engine.begin() as connection:
            leases = connection.execute(
                _EXPIRED_LEASES, {"limit": SWEEP_LIMIT, "message": INTERRUPTED_MESSAGE}
            ).one()
            lost = connection.execute(
                _LOST_MESSAGES, {"limit": SWEEP_LIMIT, "grace_s": self._settings.sweep_grace_s}
            ).all()
        result = SweepResult(
            interrupted=int(leases.interrupted), republished=int(leases.republished) + len(lost)
        )
        if result.interrupted or result.republished:
            log.warning(
                "sweeper_recovered",
                interrupted=result.interrupted,
                republished=result.republished,
            )
            SWEEPER_RECOVERED_TOTAL.labels(kind="interrupted").inc(result.interrupted)
            SWEEPER_RECOVERED_TOTAL.labels(kind="republished").inc(result.republished)

        if time.monotonic() >= self._next_auto_disable:
            self._next_auto_disable = time.monotonic() + AUTO_DISABLE_INTERVAL_S
            disable_failing_integrations(self._engine, self._settings.auto_disable_days)
        return result
