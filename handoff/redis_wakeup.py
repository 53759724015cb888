"""Waking idle Redis consumers: the relay pushes a token, a consumer blocks on the list.

Dramatiq's Redis consumer polls an empty queue with a Lua call every few milliseconds (5 ms
at most here). On the 2-core development machine that cost an idle worker process 9 % of a
core, and it added up to one poll interval of latency to every message. This
consumer fetches like Dramatiq's, but an empty fetch blocks on a Redis list (BLPOP) that the
relay pushes one token to per message it publishes. A message published some other way is
still fetched within `IDLE_WAIT_S`.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

# The maximum time an idle consumer blocks before it fetches again anyway, so also how
# late a message published without a wake-up token is fetched.
IDLE_WAIT_S = 0.1
# How long a consumer whose prefetch slots are all taken waits before it looks again.
BUSY_WAIT_S = 0.005
# Tokens left when no consumer is idle only cause empty fetches later, so few are kept.
MAX_TOKENS = 64


def wakeup_key(broker: RedisBroker, queue_name: str) -> str:
    """Return the name of the list that wakes the consumers of `queue_name`."""
    return f"{broker.namespace}:{queue_name}.wakeup"


def push_wakeups(pipeline: Any, broker: RedisBroker, queue_name: str, count: int) -> None:
    """Add to `pipeline` the commands that wake up to `count` consumers of `queue_name`."""
    key = wakeup_key(broker, queue_name)
    pipeline.lpush(key, *["1"] * min(count, MAX_TOKENS))
    pipeline.ltrim(key, 0, MAX_TOKENS - 1)


class WakeupConsumer(_RedisConsumer):
    """A Redis consumer that blocks on the wake-up list while its queue is empty.

    NOTE: this relies on Dramatiq 2.2's `_RedisConsumer` attributes (`message_cache`,
    `queued_message_ids`, `prefetch`) and `RedisBroker.do_fetch`. The pipeline tests stop
    receiving messages if a Dramatiq upgrade changes them.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        # Dramatiq's fetch script has returned None entries in the past;
                        # its own consumer skips them too.
                        continue
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)

                free = self.prefetch - self.outstanding_message_count
                if free <= 0:
                    # Returning lets the worker's consumer thread send the acknowledgements
                    # that free the slots.
                    time.sleep(BUSY_WAIT_S)
                    return None

                self.message_cache = self.broker.do_fetch(self.queue_name, free) or []
                if not self.message_cache:
                    key = wakeup_key(self.broker, self.queue_name)
                    self.broker.client.blpop([key], timeout=IDLE_WAIT_S)
                    return None
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]
