"""Message counts of the delivery queue on the broker, read without ever raising.

Both brokers are read the same way: `messages` and `delayed` count what waits on the broker
and has not been handed to a worker yet (messages a worker prefetched are not counted), and
`deadLettered` counts Dramatiq's dead-letter queue. The product never delays a message in
the broker (Postgres stores retry times), so `delayed` stays 0 unless other code enqueues
with a delay.

- Redis (Dramatiq's layout under the `dramatiq` namespace): LLEN of `dramatiq:handoff` and
  `dramatiq:handoff.DQ`, ZCARD of `dramatiq:handoff.XQ`.
- RabbitMQ: the message counts of a passive declare of `handoff`, `handoff.DQ` and
  `handoff.XQ`; a queue that was never declared counts 0.
"""

from __future__ import annotations

import copy
from typing import Any

import dramatiq
import structlog

from handoff.broker import DELIVERY_QUEUE

log = structlog.get_logger(__name__)

BROKER_FIGURES_FAILED = "broker_figures_failed"
# Seconds to wait for the broker before reporting it unavailable.
BROKER_TIMEOUT_S = 2.0
REDIS_NAMESPACE = "dramatiq"

Counts = tuple[int, int, int]


def broker_figures(
    broker: dramatiq.Broker | str | None, queue_name: str = DELIVERY_QUEUE
) -> dict[str, Any]:
    """Count the messages of `queue_name` on the broker; never raises.

    Args:
        broker: a Dramatiq Redis or RabbitMQ broker, or a `BROKER_URL` (redis://, rediss://,
            unix:// or amqp://), or None when no broker is configured.
        queue_name: the canonical queue; its `.DQ` and `.XQ` queues are counted with it.

    Returns:
        `{"queue", "messages", "delayed", "deadLettered"}`. When the broker cannot be read,
        the three counts are None and an `error` key says why in a few words (the class of
        the error only, because driver messages can contain the URL and its password).
    """
    if broker is None:
        return _unavailable(queue_name, "broker not configured (set BROKER_URL)")
    try:
        messages, delayed, dead_lettered = _count(broker, queue_name)
    except Exception as error:  # noqa: BLE001 - any broker failure is reported, never raised
        log.warning(BROKER_FIGURES_FAILED, queue=queue_name, error_type=type(error).__name__)
        return _unavailable(queue_name, f"broker unavailable ({type(error).__name__})")
    return {
        "queue": queue_name,
        "messages": messages,
        "delayed": delayed,
        "deadLettered": dead_lettered,
    }


def null_broker_figures(queue_name: str = DELIVERY_QUEUE) -> dict[str, Any]:
    """Return the broker figures with every count None and no error: not read on purpose."""
    return {"queue": queue_name, "messages": None, "delayed": None, "deadLettered": None}


def _unavailable(queue_name: str, reason: str) -> dict[str, Any]:
    return {**null_broker_figures(queue_name), "error": reason}


def _count(broker: dramatiq.Broker | str, queue_name: str) -> Counts:
    if isinstance(broker, str):
        if broker.startswith(("amqp://", "amqps://")):
            import pika

            return _count_rabbitmq(pika.URLParameters(broker), queue_name)
        import redis

        client = redis.Redis.from_url(
            broker, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
        )
        try:
            return _count_redis(client, REDIS_NAMESPACE, queue_name)
        finally:
            client.close()

    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        return _count_redis(broker.client, broker.namespace, queue_name)
    if isinstance(broker, RabbitmqBroker):
        parameters = broker.parameters
        first = parameters[0] if isinstance(parameters, list) else parameters
        return _count_rabbitmq(first, queue_name)
    raise TypeError(f"cannot count messages on a {type(broker).__name__}")


def _count_redis(client: Any, namespace: str, queue_name: str) -> Counts:
    prefix = f"{namespace}:{queue_name}"
    with client.pipeline(transaction=False) as pipeline:
        pipeline.llen(prefix)
        pipeline.llen(f"{prefix}.DQ")
        pipeline.zcard(f"{prefix}.XQ")
        messages, delayed, dead_lettered = pipeline.execute()
    return int(messages), int(delayed), int(dead_lettered)


def _count_rabbitmq(parameters: Any, queue_name: str) -> Counts:
    import pika

    # A copy, so the broker's own parameters keep their timeouts.
    parameters = copy.copy(parameters)
    parameters.connection_attempts = 1
    parameters.retry_delay = 0
    parameters.socket_timeout = BROKER_TIMEOUT_S
    parameters.stack_timeout = BROKER_TIMEOUT_S
    parameters.blocked_connection_timeout = BROKER_TIMEOUT_S
    connection = pika.BlockingConnection(parameters)
    try:
        counts = [
            _rabbitmq_message_count(connection, name)
            for name in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ")
        ]
    finally:
        if connection.is_open:
            connection.close()
    return counts[0], counts[1], counts[2]


def _rabbitmq_message_count(connection: Any, name: str) -> int:
    import pika

    # A channel per queue, because the broker closes the channel of a failed passive declare.
    channel = connection.channel()
    try:
        frame = channel.queue_declare(queue=name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 404:
            return 0
        raise
    count = int(frame.method.message_count)
    channel.close()
    return count
