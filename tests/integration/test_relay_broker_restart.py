"""The relay rides over a Redis restart: it backs off while Redis is down and publishes after."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from chaos.services import PrivateRedis
from handoff.broker import make_broker
from handoff.settings import Settings
from outbox.relay import Relay
from schema.tables import deliveries
from tests.conftest import require_service
from tests.seed import enqueue_handoffs, seed_workspace


def queued_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).where(deliveries.c.status == "queued")
            ).scalar_one()
        )


def wait_for_queued(engine: Engine, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while queued_count(engine) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{queued_count(engine)} deliveries queued, expected {count} within {timeout_s} s"
            )
        time.sleep(0.05)


def test_relay_survives_redis_restart(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        require_service("redis-server")
    server = PrivateRedis.create(tmp_path / "redis")
    # No worker runs, so a long grace keeps the sweeper from publishing anything twice.
    settings = dataclasses.replace(settings, broker_url=server.url, sweep_grace_s=600.0)
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    broker = make_broker(server.url)
    stop = threading.Event()
    relay = threading.Thread(target=Relay(engine, broker, settings).run, args=(stop,))
    relay.start()
    try:
        enqueue_handoffs(engine, seeded, settings, count=3)
        wait_for_queued(engine, 3, timeout_s=10)

        server.stop()
        enqueue_handoffs(engine, seeded, settings, count=3)
        # The relay's publish of these rows fails while Redis is down.
        time.sleep(1.0)
        assert relay.is_alive()
        assert 3 == queued_count(engine)

        server.start()
        wait_for_queued(engine, 6, timeout_s=20)
        assert relay.is_alive()
    finally:
        stop.set()
        relay.join(timeout=15)
        broker.close()
        server.stop()
