"""The Dramatiq actor that runs one delivery attempt for each delivery id of a message."""

from __future__ import annotations

import dramatiq

from handoff.broker import DELIVER_ACTOR, DELIVERY_QUEUE
from worker.delivery import DeliveryWorker


def declare_deliver_actor(broker: dramatiq.Broker, worker: DeliveryWorker) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Declare the `deliver` actor on `broker`, running attempts with `worker`.

    `max_retries=0` matters even without the Retries middleware: if someone adds it back,
    Dramatiq must still never re-run an attempt by itself, because Postgres owns retries.
    """

    def deliver(delivery_ids: list[str] | str) -> None:
        # A message carries a list of ids; one bare id is still accepted, because that is
        # what messages published before lists were introduced carry.
        worker.deliver_many([delivery_ids] if isinstance(delivery_ids, str) else delivery_ids)

    return dramatiq.Actor(
        deliver,
        broker=broker,
        actor_name=DELIVER_ACTOR,
        queue_name=DELIVERY_QUEUE,
        priority=0,
        options={"max_retries": 0},
    )
