"""Both brokers: fresh message ids on every publish, and readiness against RabbitMQ."""

from __future__ import annotations

import dataclasses

import dramatiq
import pika
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from api.app import create_app
from handoff.broker import DELIVERY_QUEUE, make_broker
from handoff.settings import Settings
from outbox.relay import Relay
from schema.tables import outbox
from tests.seed import enqueue_handoffs, seed_workspace


def queued_messages(broker_url: str) -> list[dramatiq.Message[object]]:
    """Read every message waiting on the delivery queue (RabbitMQ: and take them off)."""
    if broker_url.startswith("amqp"):
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        bodies = []
        while True:
            method, _properties, body = channel.basic_get(DELIVERY_QUEUE, auto_ack=True)
            if method is None:
                break
            bodies.append(body)
        connection.close()
    else:
        client = redis.Redis.from_url(broker_url)
        bodies = client.hvals(f"dramatiq:{DELIVERY_QUEUE}.msgs")
        client.close()
    return [dramatiq.Message.decode(body) for body in bodies]


def test_each_publish_has_fresh_message_id(
    engine: Engine, settings: Settings, broker_url: str
) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    [delivery_id] = enqueue_handoffs(engine, seeded, settings)
    broker = make_broker(broker_url)
    relay = Relay(engine, broker, settings)
    try:
        assert 1 == relay.publish_due()
        # What the sweeper adds when it thinks the first message was lost.
        with engine.begin() as connection:
            connection.execute(insert(outbox).values(delivery_id=delivery_id, trigger="recovered"))
        assert 1 == relay.publish_due()
        messages = queued_messages(broker_url)
    finally:
        broker.close()

    assert [([delivery_id],), ([delivery_id],)] == [message.args for message in messages]
    assert 2 == len({message.message_id for message in messages})


def test_readiness_checks_rabbitmq(
    engine: Engine, settings: Settings, rabbitmq_broker_url: str
) -> None:
    reachable = dataclasses.replace(settings, broker_url=rabbitmq_broker_url)
    unreachable = dataclasses.replace(settings, broker_url="amqp://guest:hunter2@127.0.0.1:1/%2F")

    with TestClient(create_app(reachable, engine)) as client:
        ready = client.get("/readyz")
    with TestClient(create_app(unreachable, engine)) as client:
        not_ready = client.get("/readyz")

    assert 200 == ready.status_code
    assert {"postgres": "ok", "broker": "ok"} == ready.json()["checks"]
    assert 503 == not_ready.status_code
    assert "not_ready" == not_ready.json()["error"]["code"]
    assert "broker unavailable" in not_ready.json()["error"]["message"]
    assert "hunter2" not in not_ready.text
