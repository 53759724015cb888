"""Dramatiq broker construction from `BROKER_URL`: Redis (TCP or Unix socket) or RabbitMQ."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage, ShutdownNotifications, TimeLimit

# Every delivery message goes to this one queue.
DELIVERY_QUEUE = "handoff"
DELIVER_ACTOR = "deliver"


def make_broker(url: str, time_limit_s: float = 120.0) -> dramatiq.Broker:
    """Create the broker for `url` and make it Dramatiq's global broker.

    Dramatiq's Retries middleware is left out on purpose: Postgres decides retries and
    their times, and the default middleware would retry a crashed actor 20 times over weeks.

    Args:
        url: redis://, rediss://, unix:// (a Redis socket) or amqp:// URL.
        time_limit_s: a hard stop for one actor run, well above the delivery timeout.
    """
    middleware = [
        TimeLimit(time_limit=int(time_limit_s * 1000)),
        ShutdownNotifications(),
        CurrentMessage(),
    ]
    broker: dramatiq.Broker
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, middleware=middleware)
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, middleware=middleware)  # type: ignore[no-untyped-call]
    broker.declare_queue(DELIVERY_QUEUE)
    dramatiq.set_broker(broker)
    return broker


def delivery_message(delivery_id: str) -> dramatiq.Message[object]:
    """Build a fresh message for one delivery.

    Each call gets a new message id. Publishing one id twice is unsafe because Dramatiq's
    Redis broker keys a queued message's body by that id, so a second copy can vanish.
    """
    return dramatiq.Message(
        queue_name=DELIVERY_QUEUE,
        actor_name=DELIVER_ACTOR,
        args=(delivery_id,),
        kwargs={},
        options={},
    )
