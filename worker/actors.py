"""The Dramatiq actor that runs one delivery attempt per message."""

from __future__ import annotations

import dramatiq

from handoff.broker import DELIVER_ACTOR, DELIVERY_QUEUE
from worker.delivery import DeliveryWorker


def declare_deliver_actor(broker: dramatiq.Broker, worker: DeliveryWorker) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Declare the `deliver` actor on `broker`, running attempts with `worker`.

    `max_retries=0` matters even without the Retries middleware: if someone adds it back,
    Dramatiq must still never re-run an attempt by itself, because Postgres owns retries.
    """

    def deliver(delivery_id: str) -> None:
        worker.deliver(delivery_id)

    return dramatiq.Actor(
        deliver,
        broker=broker,
        actor_name=DELIVER_ACTOR,
        queue_name=DELIVERY_QUEUE,
        priority=0,
        options={"max_retries": 0},
    )
