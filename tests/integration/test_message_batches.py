"""Messages that carry several deliveries: one claim, one record, and no wait on a slow receiver."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError

from handoff.broker import DELIVERY_QUEUE
from handoff.secret_box import SecretBox, SecretBoxError
from handoff.settings import Settings
from outbox.relay import Relay
from schema.tables import deliveries, delivery_attempts, outbox
from tests.receivers import Hang, Receiver, Respond
from tests.seed import enqueue_handoffs, seed_workspace
from worker import delivery as delivery_module
from worker.claims import claim_deliveries
from worker.delivery import DeliveryWorker
from worker.resolver import resolver_from_settings
from worker.transport import make_http_client


@pytest.fixture
def worker(engine: Engine, settings: Settings) -> Iterator[DeliveryWorker]:
    client = make_http_client(resolver=resolver_from_settings(settings), allow_private=True)
    delivery_worker = DeliveryWorker(engine, settings, client, SecretBox(str(settings.secret_key)))
    yield delivery_worker
    delivery_worker.close()
    client.close()


def publish(engine: Engine, settings: Settings) -> None:
    """Move the committed handoffs to `queued`, as the relay does, on a broker with no worker."""
    broker = StubBroker()
    broker.declare_queue(DELIVERY_QUEUE)
    try:
        Relay(engine, broker, settings).publish_due()
    finally:
        broker.close()


def statuses(engine: Engine, ids: list[str]) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.id, deliveries.c.status).where(deliveries.c.id.in_(ids))
        )
        return {str(row.id): row.status for row in rows}


def attempt_value(engine: Engine, column: Any, delivery_id: str) -> Any:
    """Return `column` of the one attempt of `delivery_id`."""
    with engine.connect() as connection:
        return connection.execute(
            select(column).where(delivery_attempts.c.delivery_id == delivery_id)
        ).scalar_one()


def test_message_uses_one_claim_one_record(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    ids = enqueue_handoffs(engine, seeded, settings, count=6)
    publish(engine, settings)
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count_statement)
    try:
        worker.deliver_many(ids)
    finally:
        event.remove(engine, "before_cursor_execute", count_statement)

    assert 6 == len(receiver.wait_for(6))
    assert {delivery_id: "delivered" for delivery_id in ids} == statuses(engine, ids)
    claims = [sql for sql in statements if "INSERT INTO delivery_attempts" in sql]
    records = [sql for sql in statements if "jsonb_to_recordset" in sql]
    assert (1, 1) == (len(claims), len(records))


def test_message_slow_receiver_records_others_first(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    assert settings.delivery_timeout_s < 10, "the slow receiver must outlast the timeout"
    slow = Receiver(default=Hang(seconds=30)).start()
    try:
        fast_ids = enqueue_handoffs(engine, seed_workspace(engine, url=receiver.url), settings, 3)
        [slow_id] = enqueue_handoffs(
            engine, seed_workspace(engine, workspace_id="slowco", url=slow.url), settings
        )
        publish(engine, settings)
        started = time.monotonic()
        thread = threading.Thread(target=worker.deliver_many, args=([slow_id, *fast_ids],))
        thread.start()

        deadline = started + settings.delivery_timeout_s
        while set(statuses(engine, fast_ids).values()) != {"delivered"}:
            assert time.monotonic() < deadline, statuses(engine, fast_ids)
            time.sleep(0.02)
        fast_recorded_s = time.monotonic() - started
        slow_status_then = statuses(engine, [slow_id])[slow_id]
        thread.join(timeout=settings.delivery_timeout_s + 10)
    finally:
        slow.stop()

    assert "sending" == slow_status_then
    assert fast_recorded_s < settings.delivery_timeout_s / 2
    assert "retrying" == statuses(engine, [slow_id])[slow_id]
    assert "timeout" == attempt_value(engine, delivery_attempts.c.error_class, slow_id)


def test_ids_that_cannot_be_claimed_are_skipped(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    first, second = enqueue_handoffs(engine, seeded, settings, count=2)
    publish(engine, settings)
    worker.deliver_many([first])
    receiver.wait_for(1)

    # `first` is delivered already, as after a duplicate message; only `second` is sent.
    worker.deliver_many([first, second])

    requests = receiver.wait_for(2)
    time.sleep(0.2)
    assert 2 == len(receiver.wait_for(2))
    assert [first, second] == [request.headers["x-sol-delivery"] for request in requests]
    with engine.connect() as connection:
        attempts = connection.execute(
            select(delivery_attempts.c.delivery_id).where(
                delivery_attempts.c.delivery_id.in_([first, second])
            )
        ).all()
    assert 2 == len(attempts)


def test_message_failing_attempt_keeps_others(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    receiver.script(Respond(503), Respond(200), Respond(200))
    seeded = seed_workspace(engine, url=receiver.url)
    ids = enqueue_handoffs(engine, seeded, settings, count=3)
    publish(engine, settings)

    worker.deliver_many(ids)

    assert ["delivered", "delivered", "retrying"] == sorted(statuses(engine, ids).values())


def test_nul_in_response_body_is_recorded(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    receiver.script(Respond(200, body=b"ok\x00done"))
    seeded = seed_workspace(engine, url=receiver.url)
    [delivery_id] = enqueue_handoffs(engine, seeded, settings)
    publish(engine, settings)

    worker.deliver(delivery_id)

    excerpt = attempt_value(engine, delivery_attempts.c.response_body_excerpt, delivery_id)
    assert "ok\ufffddone" == excerpt
    assert "delivered" == statuses(engine, [delivery_id])[delivery_id]


def test_unreadable_secret_fails_only_its_delivery(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    good_ids = enqueue_handoffs(engine, seed_workspace(engine, url=receiver.url), settings, 2)
    locked = seed_workspace(
        engine,
        workspace_id="lockedco",
        url=receiver.url,
        secret="whsec_dGVzdA==",
        secret_key="a-key-this-worker-does-not-have-0123456789",
    )
    [locked_id] = enqueue_handoffs(engine, locked, settings)
    publish(engine, settings)

    with pytest.raises(SecretBoxError):
        worker.deliver_many([locked_id, *good_ids])

    assert 2 == len(receiver.wait_for(2))
    assert {delivery_id: "delivered" for delivery_id in good_ids} == statuses(engine, good_ids)
    # Its lease runs out and the sweeper records the attempt as interrupted.
    assert "sending" == statuses(engine, [locked_id])[locked_id]


def test_failed_record_does_not_stop_later_records(
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    worker: DeliveryWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = Receiver(default=Respond(200)).start()
    slow.script(Hang(seconds=1.0))
    real_record = delivery_module.record_outcomes
    calls: list[int] = []

    def fail_first(connection: Any, outcomes: Any) -> Any:
        calls.append(len(outcomes))
        if len(calls) == 1:
            raise OperationalError("record", {}, Exception("server closed the connection"))
        return real_record(connection, outcomes)

    monkeypatch.setattr(delivery_module, "record_outcomes", fail_first)
    try:
        [fast_id] = enqueue_handoffs(engine, seed_workspace(engine, url=receiver.url), settings)
        [slow_id] = enqueue_handoffs(
            engine, seed_workspace(engine, workspace_id="slowco", url=slow.url), settings
        )
        publish(engine, settings)

        with pytest.raises(OperationalError):
            worker.deliver_many([fast_id, slow_id])
    finally:
        slow.stop()

    assert 2 == len(calls)
    # The failed wave's attempt waits for the sweeper; the later one was still recorded.
    assert "sending" == statuses(engine, [fast_id])[fast_id]
    assert "retrying" == statuses(engine, [slow_id])[slow_id]


def test_retry_after_sibling_410_is_cancelled(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    receiver.script(Respond(410), Hang(seconds=30))
    seeded = seed_workspace(engine, url=receiver.url)
    ids = enqueue_handoffs(engine, seeded, settings, count=2)
    publish(engine, settings)

    worker.deliver_many(ids)

    assert ["cancelled", "failed"] == sorted(statuses(engine, ids).values())
    with engine.connect() as connection:
        scheduled = connection.execute(
            select(outbox.c.id).where(
                outbox.c.delivery_id.in_(ids), outbox.c.published_at.is_(None)
            )
        ).all()
    assert [] == scheduled


def test_attempt_without_enough_lease_is_not_sent(
    engine: Engine, settings: Settings, receiver: Receiver, worker: DeliveryWorker
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    [delivery_id] = enqueue_handoffs(engine, seeded, settings)
    publish(engine, settings)
    with engine.connect() as connection:
        [claim] = claim_deliveries(
            connection,
            [delivery_id],
            lease_s=settings.lease_s,
            secret_box=SecretBox(str(settings.secret_key)),
        )
    # As if it had waited for a sender thread until less than one timeout of lease was left.
    waited = dataclasses.replace(claim, claimed_at=time.monotonic() - 11)

    assert worker._attempt(waited) is None
    time.sleep(0.3)
    assert [] == receiver.requests
