"""An in-process pipeline for integration tests: a real relay thread and a real Dramatiq worker."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable

import dramatiq
from sqlalchemy import Engine, select

from handoff.broker import make_broker
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox.relay import Relay
from schema.tables import deliveries, delivery_attempts
from worker.actors import declare_deliver_actor
from worker.delivery import DeliveryWorker
from worker.resolver import resolver_from_settings
from worker.transport import make_http_client


class Pipeline:
    """Relay, sweeper and worker threads over one test database and one broker."""

    def __init__(
        self, settings: Settings, engine: Engine, broker_url: str, worker_threads: int = 4
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = make_broker(broker_url)
        self.client = make_http_client(
            resolver=resolver_from_settings(settings), allow_private=settings.allow_private_targets
        )
        self.delivery_worker = DeliveryWorker(
            engine, settings, self.client, SecretBox.from_settings(settings), random.Random(7)
        )
        declare_deliver_actor(self.broker, self.delivery_worker)
        self.relay = Relay(engine, self.broker, settings)
        self._stop = threading.Event()
        self._relay_thread = threading.Thread(target=self.relay.run, args=(self._stop,))
        self._worker = dramatiq.Worker(
            self.broker, worker_threads=worker_threads, worker_timeout=100
        )
        self._worker_running = False

    def start(self, *, relay: bool = True, worker: bool = True) -> Pipeline:
        if relay:
            self._relay_thread.start()
        if worker:
            self._worker.start()
            self._worker_running = True
        return self

    def close(self) -> None:
        self._stop.set()
        if self._relay_thread.is_alive():
            self._relay_thread.join(timeout=10)
        if self._worker_running:
            self._worker.stop()
        self.client.close()
        self.broker.close()

    def status(self, delivery_id: str) -> str:
        with self.engine.connect() as connection:
            return str(
                connection.execute(
                    select(deliveries.c.status).where(deliveries.c.id == delivery_id)
                ).scalar_one()
            )

    def wait_for_status(
        self, delivery_id: str, statuses: Iterable[str], timeout_s: float = 15.0
    ) -> str:
        """Wait until the delivery reaches one of `statuses`; return it."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout_s
        status = self.status(delivery_id)
        while status not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"delivery {delivery_id} is {status}, expected {wanted}")
            time.sleep(0.05)
            status = self.status(delivery_id)
        return status

    def attempts(self, delivery_id: str) -> list[dict[str, object]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.delivery_id == delivery_id)
                .order_by(delivery_attempts.c.number)
            ).mappings()
            return [dict(row) for row in rows]
