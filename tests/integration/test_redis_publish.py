"""Publishing a batch to Redis: one round trip, and every message queued after a script flush."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from chaos.services import PrivateRedis
from handoff.broker import DELIVERY_QUEUE, delivery_message, enqueue_batch, make_broker
from tests.conftest import require_service


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test's own: the test flushes its scripts."""
    if shutil.which("redis-server") is None:
        require_service("redis-server")
    private = PrivateRedis.create(tmp_path / "redis")
    yield private
    private.stop()


def queued_ids(client: redis.Redis) -> list[list[str]]:
    """Return the delivery ids of every message in the delivery queue, sorted."""
    message_ids = client.lrange(f"dramatiq:{DELIVERY_QUEUE}", 0, -1)
    bodies = client.hmget(f"dramatiq:{DELIVERY_QUEUE}.msgs", message_ids)
    return sorted(Message.decode(body).args[0] for body in bodies if body is not None)


def command_calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_publish_after_script_flush(server: PrivateRedis) -> None:
    broker = cast(RedisBroker, make_broker(server.url))
    client = redis.Redis.from_url(server.url)
    try:
        # A new server has never seen the dispatch script, like one that restarted.
        enqueue_batch(broker, [delivery_message(["a"]), delivery_message(["b", "c"])])
        assert [["a"], ["b", "c"]] == queued_ids(client)

        client.script_flush()
        enqueue_batch(broker, [delivery_message(["d"])])
        assert [["a"], ["b", "c"], ["d"]] == queued_ids(client)
    finally:
        client.close()
        broker.close()


def test_publish_skips_script_exists(server: PrivateRedis) -> None:
    broker = cast(RedisBroker, make_broker(server.url))
    client = redis.Redis.from_url(server.url)
    try:
        enqueue_batch(broker, [delivery_message(["a"])])
        client.config_resetstat()

        enqueue_batch(broker, [delivery_message(["b"]), delivery_message(["c"])])

        assert 0 == command_calls(client, "script|exists")
        assert 0 == command_calls(client, "script|load")
        assert 2 == command_calls(client, "evalsha")
    finally:
        client.close()
        broker.close()
