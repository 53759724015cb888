"""Operations figures: outbox backlog, statuses, retries, last hour and the broker's queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from handoff.broker import DELIVERY_QUEUE, delivery_message, make_broker
from handoff.settings import Settings
from outbox.events import format_timestamp
from outbox.ops import queue_figures
from outbox.relay import Relay
from schema.tables import DELIVERY_STATUSES
from tests.integration.ops_rows import add_delivery, add_outbox_row, ago
from tests.seed import enqueue_handoffs, seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"


def test_empty_database_reports_zeros(engine: Engine, redis_broker_url: str) -> None:
    figures = queue_figures(engine, redis_broker_url)

    assert {
        "outbox": {"pending": 0, "oldestPendingAgeSeconds": None},
        "deliveries": dict.fromkeys(DELIVERY_STATUSES, 0),
        "retries": {"dueNow": 0, "nextDueAt": None},
        "broker": {"queue": "handoff", "messages": 0, "delayed": 0, "deadLettered": 0},
        "lastHour": {"delivered": 0, "failed": 0, "latencyP50Ms": None, "latencyP95Ms": None},
    } == figures


def test_every_status_is_counted(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    for count, status in enumerate(DELIVERY_STATUSES, start=1):
        for _ in range(count):
            add_delivery(engine, "acme", status=status, created_at=ago(days=2))

    figures = queue_figures(engine, None)

    assert {
        "pending": 1,
        "queued": 2,
        "sending": 3,
        "retrying": 4,
        "delivered": 5,
        "failed": 6,
        "cancelled": 7,
    } == figures["deliveries"]


def test_outbox_pending_counts_due_unpublished_rows(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    delivery_id = add_delivery(engine, "acme", status="pending")
    add_outbox_row(engine, delivery_id, available_at=ago(seconds=30))
    add_outbox_row(engine, delivery_id, available_at=ago(seconds=5))
    # A retry's row that is not due yet, and a row already published.
    add_outbox_row(engine, delivery_id, available_at=ago(seconds=-3600))
    add_outbox_row(engine, delivery_id, available_at=ago(hours=2), published_at=ago(hours=2))

    outbox = queue_figures(engine, None)["outbox"]

    assert 2 == outbox["pending"]
    assert 30 <= outbox["oldestPendingAgeSeconds"] < 60


def test_retries_due_now_and_next_due(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    next_due = ago(minutes=-10)
    for moment in (ago(seconds=5), ago(minutes=1), next_due, ago(hours=-2)):
        add_delivery(engine, "acme", status="retrying", next_attempt_at=moment)

    retries = queue_figures(engine, None)["retries"]

    assert 2 == retries["dueNow"]
    assert format_timestamp(next_due) == retries["nextDueAt"]


def test_last_hour_counts_and_latency(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    delivered_at = ago(minutes=10)
    for latency_ms in (100, 200, 300, 400, 500):
        add_delivery(
            engine,
            "acme",
            status="delivered",
            created_at=delivered_at - timedelta(milliseconds=latency_ms),
            delivered_at=delivered_at,
        )
    add_delivery(
        engine, "acme", status="delivered", created_at=ago(hours=3), delivered_at=ago(hours=2)
    )
    add_delivery(
        engine, "acme", status="failed", created_at=ago(hours=30), updated_at=ago(minutes=5)
    )
    add_delivery(engine, "acme", status="failed", created_at=ago(hours=30), updated_at=ago(hours=2))

    last_hour = queue_figures(engine, None)["lastHour"]

    assert 5 == last_hour["delivered"]
    assert 1 == last_hour["failed"]
    # percentile_cont interpolates: the median of 100..500 is 300, the 95th percentile 480.
    assert 300.0 == last_hour["latencyP50Ms"]
    assert 480.0 == last_hour["latencyP95Ms"]


def test_workspace_scope_counts_only_its_rows(engine: Engine, redis_broker_url: str) -> None:
    seed_workspace(engine, url=HOOK_URL)
    seed_workspace(engine, workspace_id="globex", url=HOOK_URL)
    acme = add_delivery(engine, "acme", status="pending")
    globex = add_delivery(engine, "globex", status="pending")
    add_delivery(engine, "globex", status="retrying", next_attempt_at=ago(seconds=1))
    add_outbox_row(engine, acme, available_at=ago(seconds=1))
    add_outbox_row(engine, globex, available_at=ago(seconds=1))
    add_outbox_row(engine, globex, available_at=ago(seconds=1))

    everyone = queue_figures(engine, redis_broker_url)
    acme_only = queue_figures(engine, redis_broker_url, "acme")

    assert 3 == everyone["outbox"]["pending"]
    assert 1 == acme_only["outbox"]["pending"]
    assert 2 == everyone["deliveries"]["pending"]
    assert 1 == acme_only["deliveries"]["pending"]
    assert 0 == acme_only["retries"]["dueNow"]
    assert 0 == everyone["broker"]["messages"]
    assert {"queue": "handoff", "messages": None, "delayed": None, "deadLettered": None} == (
        acme_only["broker"]
    )


def test_broker_counts_ready_delayed_and_dead_messages(
    engine: Engine, settings: Settings, broker_url: str
) -> None:
    seeded = seed_workspace(engine, url=HOOK_URL)
    broker = make_broker(broker_url)
    try:
        # Three messages: the relay puts the handoffs it publishes together in one message.
        for _ in range(3):
            enqueue_handoffs(engine, seeded, settings)
            assert 1 == Relay(engine, broker, settings).publish_due()
        broker.enqueue(delivery_message(["00000000-0000-0000-0000-000000000000"]), delay=600_000)
        consumer = broker.consume(DELIVERY_QUEUE, prefetch=1, timeout=2000)
        message = next(message for message in consumer if message is not None)
        consumer.nack(message)
        # Closing the consumer gives back anything it prefetched beyond the nacked message.
        consumer.close()

        by_url = queue_figures(engine, broker_url)["broker"]
        by_broker = queue_figures(engine, broker)["broker"]
    finally:
        broker.close()

    expected = {"queue": "handoff", "messages": 2, "delayed": 1, "deadLettered": 1}
    assert expected == by_url
    assert expected == by_broker


@pytest.mark.parametrize(
    ("broker", "error"),
    [
        ("redis://127.0.0.1:1/0", "broker unavailable (ConnectionError)"),
        ("amqp://guest:guest@127.0.0.1:1/%2F", "broker unavailable (AMQPConnectionError)"),
        (None, "broker not configured (set BROKER_URL)"),
    ],
)
def test_unreachable_broker_reports_nulls_and_error(
    engine: Engine, broker: str | None, error: str
) -> None:
    figures = queue_figures(engine, broker)

    assert {
        "queue": "handoff",
        "messages": None,
        "delayed": None,
        "deadLettered": None,
        "error": error,
    } == figures["broker"]
    assert 0 == figures["outbox"]["pending"]


def test_broker_of_unknown_kind_reports_error(engine: Engine) -> None:
    from dramatiq.brokers.stub import StubBroker

    figures = queue_figures(engine, StubBroker())

    assert "broker unavailable (TypeError)" == figures["broker"]["error"]
