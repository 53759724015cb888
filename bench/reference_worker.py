"""The reference pipeline's worker, loaded by `dramatiq bench.reference_worker`.

One Dramatiq actor that POSTs the body it was sent with a shared httpx client: no outbox,
no claim, no signature and no attempt history. It is what "send a message after commit"
costs, the yardstick for the outbox pipeline's figures.
"""

from __future__ import annotations

import logging
import os

import dramatiq
import httpx

from bench.producers import REFERENCE_ACTOR, REFERENCE_QUEUE
from handoff.broker import make_broker

# The same limits and keep-alive as the product's client, so connection reuse is alike.
MAX_CONNECTIONS = 100
KEEPALIVE_EXPIRY_S = 5.0
TIMEOUT_S = 15.0

# httpx logs every request at INFO, which the product's workers turn off too.
logging.getLogger("httpx").setLevel(logging.WARNING)
broker = make_broker(os.environ["BROKER_URL"])
broker.declare_queue(REFERENCE_QUEUE)
_client = httpx.Client(
    limits=httpx.Limits(
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_CONNECTIONS,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    ),
    timeout=TIMEOUT_S,
    trust_env=False,
)
_url = os.environ["BENCH_WEBHOOK_URL"]


def post(delivery_id: str, body: str) -> None:
    """POST `body` to the receiver; a non-2xx response raises, and is not retried."""
    response = _client.post(
        _url,
        content=body.encode(),
        headers={"Content-Type": "application/json", "X-Sol-Delivery": delivery_id},
    )
    response.raise_for_status()


deliver = dramatiq.Actor(
    post,
    broker=broker,
    actor_name=REFERENCE_ACTOR,
    queue_name=REFERENCE_QUEUE,
    priority=0,
    options={"max_retries": 0},
)
