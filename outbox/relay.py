"""The relay: publishes committed outbox rows to Dramatiq, waking on LISTEN/NOTIFY."""

from __future__ import annotations

import threading
import time

import dramatiq
import psycopg
import redis
import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from handoff.broker import delivery_messages, enqueue_batch
from handoff.db import libpq_url
from handoff.settings import Settings
from outbox.sweeper import Sweeper
from schema.tables import OUTBOX_CHANNEL

log = structlog.get_logger(__name__)

DEFAULT_BATCH_SIZE = 500
# Without a NOTIFY (lost connection, missed wake-up) the relay still looks this often.
POLL_INTERVAL_S = 1.0
MAX_BACKOFF_S = 10.0
# While handoffs keep coming, the relay waits this long after a wake-up before it claims, so
# that one message carries several deliveries. A worker claims and records a message's
# deliveries with one statement each, which costs Postgres far less than one per delivery.
# The first handoff after a quiet spell is published at once.
LINGER_S = 0.005
BUSY_WINDOW_S = 0.05

# One statement claims a batch, marks it published and moves its deliveries to `queued`.
#
# Rows are chosen by availability, never "id greater than the last one seen": ids are
# assigned at insert, not at commit, so a slow transaction can commit a smaller id after a
# larger one has been published. FOR UPDATE SKIP LOCKED lets several relays share the
# table without publishing a row twice. The delivery rows stay locked until COMMIT, which
# comes after the broker accepted the messages: a worker that receives a message before
# that commit blocks on its claim until the row is `queued`, or finds it unchanged if the
# relay rolled back (the outbox row is then published again).
#
# `current` finds the deliveries by primary key and locks, in id order, only those that can
# be queued. Its test is a CASE on purpose: the planner cannot match a CASE to the partial
# indexes on status. A plain test let it combine those indexes, which keep one dead entry
# per finished attempt until VACUUM (1 to 2 ms per batch after 10,000 attempts). Rows that
# cannot be queued in the statement's snapshot (`sending`, say) are skipped without waiting
# for their lock. So a worker that has locked one and then cancels its workspace's open
# deliveries does not deadlock with the relay (tests/integration/test_relay_locks.py). A
# row locked meanwhile is tested again as last committed.
_CLAIM = text(
    """
    WITH claimed AS (
        SELECT id FROM outbox
        WHERE published_at IS NULL AND available_at <= now()
        ORDER BY available_at, id
        LIMIT :batch_size
        FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE outbox SET published_at = now()
        FROM claimed WHERE outbox.id = claimed.id
        RETURNING outbox.delivery_id, outbox.trigger
    ), current AS (
        SELECT id FROM deliveries
        WHERE id IN (SELECT delivery_id FROM marked)
          AND CASE status
                  WHEN 'pending' THEN true
                  WHEN 'queued' THEN true
                  WHEN 'retrying' THEN next_attempt_at <= now() + interval '1 second'
                  ELSE false
              END
        ORDER BY id FOR UPDATE
    )
    UPDATE deliveries SET
        status = 'queued', queued_at = now(), next_trigger = marked.trigger, updated_at = now()
    FROM marked JOIN current c ON c.id = marked.delivery_id
    WHERE deliveries.id = marked.delivery_id
    RETURNING deliveries.id
    """
)

_NEXT_AVAILABLE = """
    SELECT extract(epoch FROM min(available_at) - now())::float8 FROM outbox
    WHERE published_at IS NULL
"""


class Relay:
    """Moves committed outbox rows onto the broker, in batches, once each in normal operation."""

    def __init__(
        self,
        engine: Engine,
        broker: dramatiq.Broker,
        settings: Settings,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._engine = engine
        self._broker = broker
        self._settings = settings
        self._batch_size = batch_size
        self._sweeper = Sweeper(engine, settings)

    def publish_batch(self, connection: Connection | None = None) -> int:
        """Publish one batch of due outbox rows, on `connection` or on one from the pool.

        Returns:
            How many outbox rows were claimed; rows whose delivery no longer needs an
            attempt (delivered, cancelled, a duplicate) are marked without a message.
        """
        if connection is None:
            with self._engine.connect() as pooled:
                return self.publish_batch(pooled)
        with connection.begin():
            delivery_ids = (
                connection.execute(_CLAIM, {"batch_size": self._batch_size}).scalars().all()
            )
            # One round trip to the broker for the whole batch: the rows stay locked until
            # COMMIT, and every worker that got one of these messages waits for that lock.
            enqueue_batch(
                self._broker, delivery_messages([str(delivery_id) for delivery_id in delivery_ids])
            )
        if delivery_ids:
            log.info("outbox_published", count=len(delivery_ids))
        return len(delivery_ids)

    def publish_due(self, connection: Connection | None = None) -> int:
        """Publish batches until no due row is left; return the number of rows published."""
        total = 0
        while True:
            count = self.publish_batch(connection)
            total += count
            if count < self._batch_size:
                return total

    def run(self, stop: threading.Event) -> None:
        """Publish and sweep until `stop` is set, riding over database and broker outages."""
        listener = _Listener(self._settings.database_url or "")
        # The loop keeps one connection instead of taking one from the pool per batch: a
        # checkout pings Postgres first, which doubled the relay's round trips to it. A
        # broken connection fails its next statement and is replaced after the back-off.
        connection: Connection | None = None
        next_sweep = time.monotonic()
        backoff_s = 0.5
        last_published = -BUSY_WINDOW_S
        log.info("relay_started", batch_size=self._batch_size)
        while not stop.is_set():
            try:
                listener.ensure_listening()
                if connection is None:
                    connection = self._engine.connect()
                if self.publish_due(connection):
                    last_published = time.monotonic()

                if time.monotonic() >= next_sweep:
                    self._sweeper.sweep()
                    next_sweep = time.monotonic() + self._settings.sweep_interval_s

                wait_s = min(POLL_INTERVAL_S, max(0.0, next_sweep - time.monotonic()))
                due_in = listener.seconds_until_next_row()
                if due_in is not None:
                    wait_s = min(wait_s, due_in)
                if listener.wait(wait_s) and time.monotonic() - last_published < BUSY_WINDOW_S:
                    stop.wait(LINGER_S)
                backoff_s = 0.5
            except (
                SQLAlchemyError,
                psycopg.Error,
                dramatiq.errors.ConnectionError,
                # The Redis broker's enqueue raises redis-py's own errors, not Dramatiq's.
                redis.RedisError,
            ) as error:
                # Expected during a restart of Postgres or the broker: nothing is lost, because
                # unpublished rows stay in the outbox until a publish commits.
                log.warning("relay_backing_off", error=type(error).__name__, delay_s=backoff_s)
                listener.close()
                if connection is not None:
                    # Discarded, not returned to the pool: it may be the broken one.
                    connection.invalidate()
                    connection.close()
                    connection = None
                stop.wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
        listener.close()
        if connection is not None:
            connection.close()
        log.info("relay_stopped")


class _Listener:
    """A LISTEN connection on the outbox channel, reopened after any failure.

    The relay also reads the next row's due time on it: the connection is in autocommit
    mode, so that query costs one round trip, with no BEGIN and no ROLLBACK around it.
    """

    def __init__(self, database_url: str) -> None:
        self._url = libpq_url(database_url) if database_url else ""
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def ensure_listening(self) -> None:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            self._connection.execute(f"LISTEN {OUTBOX_CHANNEL}")

    def seconds_until_next_row(self) -> float | None:
        """Return how long until the earliest unpublished row is due, or None when none waits."""
        if self._connection is None:
            return None
        row = self._connection.execute(_NEXT_AVAILABLE).fetchone()
        seconds = None if row is None else row[0]
        # min() over no rows is NULL, so no row is waiting.
        return max(0.0, seconds) if isinstance(seconds, float) else None

    def wait(self, timeout_s: float) -> bool:
        """Return on the first notification or after `timeout_s`, draining any others.

        Returns:
            Whether a notification came.
        """
        if self._connection is None or timeout_s <= 0:
            return False
        notified = False
        for _ in self._connection.notifies(timeout=timeout_s, stop_after=1):
            notified = True
        # Fold a burst of notifications into one wake-up.
        for _ in self._connection.notifies(timeout=0.0):
            notified = True
        return notified

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def run_relay(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run the relay and its sweeper in this process until `stop` is set (or forever).

    Args:
        settings: requires `database_url` and `broker_url`.
        stop: set it from another thread to end the loop; the relay exits within a second.
    """
    from handoff.broker import make_broker
    from handoff.db import make_engine

    settings.require("database_url", "broker_url")
    engine = make_engine(str(settings.database_url), pool_size=2, max_overflow=2)
    broker = make_broker(str(settings.broker_url))
    try:
        Relay(engine, broker, settings).run(stop or threading.Event())
    finally:
        broker.close()
        engine.dispose()
