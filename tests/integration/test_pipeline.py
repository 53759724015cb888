"""The whole pipeline in one process: enqueue in a transaction, relay, worker, real receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from handoff.settings import Settings
from outbox import enqueue_handoff, enqueue_test_event
from schema.tables import deliveries, integrations, outbox, workspaces
from tests.conftest import TEST_SECRET_KEY
from tests.integration.harness import Pipeline
from tests.receivers import Receiver, Respond
from tests.seed import Seeded, enqueue_handoffs, seed_workspace

SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXNpZ25pbmctMTIzNDU2"


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """An independent check of X-Sol-Signature: HMAC-SHA256 of "{timestamp}.{body}"."""
    timestamp = headers["x-sol-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    offered = headers["x-sol-signature"].split(" ")
    return any(hmac.compare_digest(f"v1={expected.hexdigest()}", entry) for entry in offered)


@pytest.fixture
def seeded(engine: Engine, receiver: Receiver) -> Seeded:
    return seed_workspace(engine, url=receiver.url, secret=SECRET, secret_key=TEST_SECRET_KEY)


@pytest.fixture
def pipeline(settings: Settings, engine: Engine, broker_url: str) -> Iterator[Pipeline]:
    running = Pipeline(settings, engine, broker_url)
    yield running
    running.close()


def send_handoff(engine: Engine, seeded: Seeded, settings: Settings) -> str:
    return enqueue_handoffs(engine, seeded, settings)[0]


def count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_rollback_sends_nothing(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.start()
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.execute(insert(workspaces).values(id="side", name="Side", plan_tier="FREE"))
        enqueue_handoff(
            session,
            workspace_id=seeded.workspace_id,
            actor_id=seeded.member_id,
            theme_id=seeded.theme_id,
            assistant_id=seeded.assistant_id,
            range={"preset": "7d"},
            settings=settings,
        )
        raise RuntimeError("the user's action failed after the handoff was added")

    time.sleep(1.0)
    assert 0 == count(engine, deliveries)
    assert 0 == count(engine, outbox)
    assert [] == receiver.requests


def test_commit_delivers_once_signed(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.start()
    delivery_id = send_handoff(engine, seeded, settings)

    assert "delivered" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    time.sleep(0.5)
    [request] = receiver.requests
    assert delivery_id == request.headers["x-sol-delivery"]
    assert "solhelps.insight.handoff" == request.headers["x-sol-event"]
    assert "generic" == request.headers["x-sol-provider"]
    assert "application/json" == request.headers["content-type"]
    assert request.headers["user-agent"].startswith("SolHelps-Webhooks/")
    assert verify_signature(SECRET, request.headers, request.body)
    assert delivery_id == request.headers["webhook-id"]
    payload = json.loads(request.body)
    assert delivery_id == payload["deliveryId"]
    assert "permissions" == payload["theme"]["id"]
    assert 1 == count(engine, deliveries)


def test_retries_until_delivered_with_same_bytes(
    engine: Engine, seeded: Seeded, settings: Settings, broker_url: str, receiver: Receiver
) -> None:
    # Delays just over a second, so that every attempt has a timestamp of its own.
    spaced = Settings(**{**settings.__dict__, "retry_schedule_s": (1.1, 1.1, 1.1)})
    pipeline = Pipeline(spaced, engine, broker_url).start()
    receiver.script(Respond(503), Respond(503), Respond(200))
    try:
        delivery_id = send_handoff(engine, seeded, spaced)
        assert "delivered" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    finally:
        pipeline.close()
    requests = receiver.wait_for(3)
    assert 3 == len(requests)
    assert 1 == len({request.body for request in requests})
    timestamps = [int(request.headers["x-sol-timestamp"]) for request in requests]
    assert sorted(set(timestamps)) == timestamps
    for request in requests:
        assert verify_signature(SECRET, request.headers, request.body)
        assert abs(time.time() - int(request.headers["x-sol-timestamp"])) < 30
    attempts = pipeline.attempts(delivery_id)
    assert ["will_retry", "will_retry", "delivered"] == [a["outcome"] for a in attempts]
    assert [503, 503, 200] == [a["status_code"] for a in attempts]
    assert ["scheduled"] * 3 == [a["trigger"] for a in attempts]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_delays_next_attempt(
    engine: Engine,
    seeded: Seeded,
    settings: Settings,
    pipeline: Pipeline,
    receiver: Receiver,
    form: str,
) -> None:
    retry_after = (
        "2"
        if form == "seconds"
        else format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    )
    receiver.script(Respond(429, headers={"Retry-After": retry_after}), Respond(200))
    pipeline.start()
    delivery_id = send_handoff(engine, seeded, settings)

    assert "delivered" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    first, second = receiver.wait_for(2)
    # The schedule says 0.2 s, but Retry-After asks for more; the cap is the longest step,
    # which these settings make 0.6 s, so the header wins only up to the cap.
    gap = second.received_at - first.received_at
    assert gap >= max(settings.retry_schedule_s) - 0.05


def test_retry_after_beyond_default_cap_is_honoured(
    engine: Engine, seeded: Seeded, settings: Settings, broker_url: str, receiver: Receiver
) -> None:
    longer = Settings(**{**settings.__dict__, "retry_schedule_s": (0.2, 5.0)})
    running = Pipeline(longer, engine, broker_url).start()
    try:
        receiver.script(Respond(503, headers={"Retry-After": "2"}), Respond(200))
        delivery_id = send_handoff(engine, seeded, longer)
        assert "delivered" == running.wait_for_status(delivery_id, {"delivered", "failed"})
        first, second = receiver.wait_for(2)
        assert second.received_at - first.received_at >= 1.9
    finally:
        running.close()


def test_test_event_gets_one_attempt(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.script(Respond(500))
    pipeline.start()
    with Session(engine) as session, session.begin():
        delivery_id = enqueue_test_event(
            session, workspace_id=seeded.workspace_id, actor_id=seeded.owner_id, settings=settings
        )

    assert "failed" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    time.sleep(1.0)
    assert 1 == len(receiver.requests)
    assert "solhelps.webhook.test" == json.loads(receiver.requests[0].body)["event"]


def test_gone_disables_integration_and_cancels(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.script(Respond(410))
    pipeline.start(worker=False)
    gone_id = send_handoff(engine, seeded, settings)
    waiting_id = send_handoff(engine, seeded, settings)
    pipeline.wait_for_status(waiting_id, {"queued"})
    pipeline.delivery_worker.deliver(gone_id)

    assert "failed" == pipeline.status(gone_id)
    assert "cancelled" == pipeline.status(waiting_id)
    with engine.connect() as connection:
        row = connection.execute(select(integrations)).one()
    assert False is row.enabled
    assert "410" in row.disabled_reason


def test_redirect_fails_without_following(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.script(Respond(301, headers={"Location": "https://elsewhere.example/new"}))
    pipeline.start()
    delivery_id = send_handoff(engine, seeded, settings)

    assert "failed" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    assert 1 == len(receiver.requests)
    with engine.connect() as connection:
        reason = connection.execute(
            select(deliveries.c.failure_reason).where(deliveries.c.id == delivery_id)
        ).scalar_one()
    assert "endpoint moved" in reason
    assert "https://elsewhere.example/new" in reason


def test_gives_up_after_schedule(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.default = Respond(500)
    pipeline.start()
    delivery_id = send_handoff(engine, seeded, settings)

    assert "failed" == pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
    expected_attempts = len(settings.retry_schedule_s) + 1
    assert expected_attempts == len(receiver.requests)
    attempts = pipeline.attempts(delivery_id)
    assert ["will_retry"] * (expected_attempts - 1) + ["failed"] == [a["outcome"] for a in attempts]


def test_disabled_integration_cancels_queued(
    engine: Engine, seeded: Seeded, settings: Settings, pipeline: Pipeline, receiver: Receiver
) -> None:
    from outbox.cancellation import cancel_open_deliveries

    pipeline.start(worker=False)
    delivery_id = send_handoff(engine, seeded, settings)
    pipeline.wait_for_status(delivery_id, {"queued"})
    with engine.begin() as connection:
        connection.execute(text("UPDATE integrations SET enabled = false"))
        assert 1 == cancel_open_deliveries(connection, seeded.workspace_id, "integration disabled")

    pipeline.delivery_worker.deliver(delivery_id)
    assert "cancelled" == pipeline.status(delivery_id)
    assert [] == receiver.requests
