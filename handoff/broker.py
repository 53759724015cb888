"""Dramatiq broker construction from `BROKER_URL`: Redis (TCP or Unix socket) or RabbitMQ."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

import dramatiq
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import CurrentMessage, ShutdownNotifications, TimeLimit
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

from handoff.redis_wakeup import WakeupConsumer, push_wakeups

# Every delivery message goes to this one queue.
DELIVERY_QUEUE = "handoff"
DELIVER_ACTOR = "deliver"

# The maximum number of delivery ids in one message. A message's deliveries are POSTed side by side,
# so this also bounds how many sender threads one message can keep busy.
MAX_DELIVERIES_PER_MESSAGE = 20


class _RedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose delivery consumers block while idle instead of polling."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        # Nothing here sends delayed messages, because Postgres stores retry times. So the
        # delay queue that Dramatiq consumes beside each queue keeps Dramatiq's consumer,
        # which backs off to a poll a second while it stays empty.
        if queue_name == dq_name(queue_name):
            return super().consume(queue_name, prefetch, timeout)
        return WakeupConsumer(self, queue_name, prefetch, timeout)


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

        # Publisher confirms: enqueue returns only once RabbitMQ has the message, so the
        # relay never marks a row published that the broker did not take.
        broker = RabbitmqBroker(url=url, middleware=middleware, confirm_delivery=True)
    else:
        broker = _RedisBroker(url=url, middleware=middleware)  # type: ignore[no-untyped-call]
    broker.declare_queue(DELIVERY_QUEUE)
    dramatiq.set_broker(broker)
    return broker


def delivery_message(delivery_ids: Sequence[str]) -> dramatiq.Message[object]:
    """Build a fresh message for the deliveries `delivery_ids`.

    Each call gets a new message id. Publishing one id twice is unsafe because Dramatiq's
    Redis broker keys a queued message's body by that id, so a second copy can vanish.
    """
    return dramatiq.Message(
        queue_name=DELIVERY_QUEUE,
        actor_name=DELIVER_ACTOR,
        args=(list(delivery_ids),),
        kwargs={},
        options={},
    )


def delivery_messages(delivery_ids: Sequence[str]) -> list[dramatiq.Message[object]]:
    """Split `delivery_ids` into messages of at most `MAX_DELIVERIES_PER_MESSAGE`, evenly.

    A worker claims and records the deliveries of one message with one statement each, so
    fuller messages cost Postgres less per delivery. Even sizes spread a burst over workers.
    """
    if not delivery_ids:
        return []
    count = -(-len(delivery_ids) // MAX_DELIVERIES_PER_MESSAGE)
    size, extra = divmod(len(delivery_ids), count)
    messages = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        messages.append(delivery_message(delivery_ids[start:end]))
        start = end
    return messages


def enqueue_batch(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[object]]) -> None:
    """Publish `messages`, in one round trip to Redis.

    Dramatiq has no batch enqueue, and its Redis broker sends one Lua script call per
    message. This sends the same calls, with the same middleware hooks, through one
    pipeline, and wakes as many idle consumers (handoff.redis_wakeup). RabbitMQ gets one
    transaction per batch (see handoff.rabbitmq_publish); other brokers get one `enqueue`
    per message.

    Raises:
        redis.RedisError: Redis failed; some of the messages may be queued already, as
            with one `enqueue` at a time.
    """
    if not messages:
        return
    if isinstance(broker, RabbitmqBroker):
        from handoff.rabbitmq_publish import enqueue_batch_rabbitmq

        enqueue_batch_rabbitmq(broker, messages)
        return
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return

    # NOTE: this mirrors RedisBroker.enqueue and RedisBroker._dispatch of Dramatiq 2.2 (the
    # argument order of dispatch.lua). The pipeline tests fail if a Dramatiq upgrade
    # changes them, because no message would reach the worker.
    dispatch = broker.scripts["dispatch"]
    calls: list[tuple[dramatiq.Message[object], list[EncodableT]]] = []
    for message in messages:
        # A Redis message id of its own, as RedisBroker.enqueue gives every message.
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        arguments: list[EncodableT] = [
            broker.namespace,
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            message.options["redis_message_id"],
            message.encode(),
        ]
        calls.append((message, arguments))

    # EVALSHA at once: calling the Script object in a pipeline makes redis-py ask Redis
    # first whether the script is loaded (SCRIPT EXISTS), one more round trip per batch.
    # Only a server that lost its scripts (a restart, SCRIPT FLUSH) replies NOSCRIPT. Those
    # calls did nothing, so they are sent again once the script is loaded.
    results = _send_dispatches(broker, dispatch.sha, calls, raise_on_error=False)
    missing = [
        call
        for call, result in zip(calls, results, strict=True)
        if isinstance(result, NoScriptError)
    ]
    if missing:
        dispatch.sha = broker.client.script_load(dispatch.script)
        _send_dispatches(broker, dispatch.sha, missing, raise_on_error=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, NoScriptError):
            raise result
    for message, _ in calls:
        broker.emit_after("enqueue", message, None)


def _send_dispatches(
    broker: RedisBroker,
    sha: str,
    calls: Sequence[tuple[dramatiq.Message[object], list[EncodableT]]],
    *,
    raise_on_error: bool,
) -> list[object]:
    """Send the dispatch calls and their consumers' wake-ups in one pipeline.

    Returns:
        One result per call, in order; errors are included unless `raise_on_error`.
    """
    with broker.client.pipeline(transaction=False) as pipeline:
        for _, arguments in calls:
            pipeline.evalsha(sha, 1, *arguments)
        for queue_name, count in Counter(message.queue_name for message, _ in calls).items():
            push_wakeups(pipeline, broker, queue_name, count)
        results: list[object] = pipeline.execute(raise_on_error=raise_on_error)
    return results[: len(calls)]
