"""Idle Redis consumers block on the wake-up list instead of polling, and the relay wakes them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import cast

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from handoff import redis_wakeup
from handoff.broker import DELIVERY_QUEUE, delivery_message, enqueue_batch, make_broker
from handoff.redis_wakeup import MAX_TOKENS, WakeupConsumer, wakeup_key


@pytest.fixture
def broker(redis_broker_url: str) -> Iterator[RedisBroker]:
    redis_broker = cast(RedisBroker, make_broker(redis_broker_url))
    yield redis_broker
    redis_broker.close()


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


def test_delivery_queue_gets_the_wakeup_consumer(broker: RedisBroker) -> None:
    consumer = broker.consume(DELIVERY_QUEUE, prefetch=2)

    assert isinstance(consumer, WakeupConsumer)


def test_idle_consumer_does_not_poll(
    broker: RedisBroker, redis_broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_wakeup, "IDLE_WAIT_S", 0.5)
    client = redis.Redis.from_url(redis_broker_url)
    consumer = broker.consume(DELIVERY_QUEUE, prefetch=2)
    before = evalsha_calls(client)
    started = time.monotonic()

    while time.monotonic() - started < 1.0:
        assert next(consumer) is None

    # One fetch per half-second wait; Dramatiq's own consumer polls every few milliseconds.
    # Other clients of this Redis add calls too, hence the margin.
    assert evalsha_calls(client) - before <= 10
    client.close()


def test_published_message_wakes_idle_consumer(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_wakeup, "IDLE_WAIT_S", 30.0)
    consumer = broker.consume(DELIVERY_QUEUE, prefetch=2)
    received: list[dramatiq.Message[object]] = []

    def consume() -> None:
        # The first call blocks on the empty list; the message comes on a later call.
        for _ in range(3):
            message = next(consumer)
            if message is not None:
                received.append(message)
                return

    thread = threading.Thread(target=consume)
    started = time.monotonic()
    thread.start()
    time.sleep(0.2)
    enqueue_batch(broker, [delivery_message(["00000000-0000-0000-0000-000000000001"])])
    thread.join(timeout=10)

    assert 1 == len(received)
    assert time.monotonic() - started < 10
    assert [["00000000-0000-0000-0000-000000000001"]] == [
        list(message.args[0]) for message in received
    ]


def test_wakeup_tokens_are_capped(broker: RedisBroker, redis_broker_url: str) -> None:
    messages = [delivery_message([f"id-{index}"]) for index in range(MAX_TOKENS + 10)]

    enqueue_batch(broker, messages)
    enqueue_batch(broker, messages)

    client = redis.Redis.from_url(redis_broker_url)
    assert MAX_TOKENS == client.llen(wakeup_key(broker, DELIVERY_QUEUE))
    client.close()
