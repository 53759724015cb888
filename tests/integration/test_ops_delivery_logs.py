"""Every delivery log line carries its ids and outcome; every attempt is counted in the metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import structlog
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from handoff.broker import DELIVERY_QUEUE
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox.relay import Relay
from tests.receivers import Receiver, Respond
from tests.seed import Seeded, enqueue_handoffs, seed_workspace
from worker.delivery import DeliveryWorker
from worker.resolver import resolver_from_settings
from worker.transport import make_http_client

DELIVERY_EVENTS = (
    "delivery_attempted",
    "delivery_succeeded",
    "delivery_retry_scheduled",
    "delivery_failed",
)
EVENT = "solhelps.insight.handoff"


@pytest.fixture
def seeded(engine: Engine, receiver: Receiver) -> Seeded:
    return seed_workspace(engine, url=receiver.url)


@pytest.fixture
def parts(engine: Engine, settings: Settings) -> Iterator[tuple[Relay, DeliveryWorker]]:
    broker = StubBroker()
    broker.declare_queue(DELIVERY_QUEUE)
    client = make_http_client(resolver=resolver_from_settings(settings), allow_private=True)
    worker = DeliveryWorker(engine, settings, client, SecretBox(str(settings.secret_key)))
    yield Relay(engine, broker, settings), worker
    client.close()
    broker.close()


def attempts_counted(outcome: str) -> float:
    labels = {"event": EVENT, "outcome": outcome}
    return REGISTRY.get_sample_value("handoff_deliveries_total", labels) or 0.0


def durations_counted() -> float:
    return REGISTRY.get_sample_value("handoff_attempt_duration_seconds_count") or 0.0


def attempt(relay: Relay, worker: DeliveryWorker, delivery_id: str) -> None:
    """Publish the delivery's due outbox row, then make its attempt."""
    deadline = time.monotonic() + 5
    while relay.publish_due() == 0:
        assert time.monotonic() < deadline, "no outbox row came due"
        time.sleep(0.05)
    worker.deliver(delivery_id)


def test_delivery_lines_carry_ids_and_outcome(
    engine: Engine,
    settings: Settings,
    seeded: Seeded,
    receiver: Receiver,
    parts: tuple[Relay, DeliveryWorker],
) -> None:
    relay, worker = parts
    receiver.script(Respond(503), Respond(200), Respond(404))
    before = {
        outcome: attempts_counted(outcome) for outcome in ("delivered", "will_retry", "failed")
    }
    durations_before = durations_counted()

    with structlog.testing.capture_logs() as events:
        [retried] = enqueue_handoffs(engine, seeded, settings)
        attempt(relay, worker, retried)
        attempt(relay, worker, retried)
        [rejected] = enqueue_handoffs(engine, seeded, settings)
        attempt(relay, worker, rejected)

    lines = [event for event in events if event["event"].startswith("delivery_")]
    assert [
        ("delivery_attempted", retried, 1, "sending"),
        ("delivery_retry_scheduled", retried, 1, "will_retry"),
        ("delivery_attempted", retried, 2, "sending"),
        ("delivery_succeeded", retried, 2, "delivered"),
        ("delivery_attempted", rejected, 1, "sending"),
        ("delivery_failed", rejected, 1, "failed"),
    ] == [(line["event"], line["delivery_id"], line["attempt"], line["outcome"]) for line in lines]
    for line in lines:
        assert "acme" == line["workspace_id"]
    assert set(DELIVERY_EVENTS) == {line["event"] for line in lines}
    assert not [line for line in events if receiver.url in str(line)]

    assert 1.0 == attempts_counted("delivered") - before["delivered"]
    assert 1.0 == attempts_counted("will_retry") - before["will_retry"]
    assert 1.0 == attempts_counted("failed") - before["failed"]
    assert 3.0 == durations_counted() - durations_before
