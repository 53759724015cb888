"""The test send endpoint: configuration errors, the rate limit and each reported outcome.

These tests play the worker's part by writing the attempt row from a thread and sending
NOTIFY on the attempt channel, as the worker does. test_api_pipeline.py checks the same
outcomes with the real relay and worker posting to a real receiver.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, text, update

from api.app import create_app
from handoff.settings import Settings
from outbox.events import TEST_EVENT
from schema.tables import ATTEMPT_CHANNEL, deliveries, delivery_attempts, integrations
from tests.seed import Seeded, seed_workspace

PATH = "/api/v1/integrations/webhook/test"
HOOK_URL = "http://127.0.0.1:9/hook"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class FakeAttempt:
    """The attempt row the simulated worker records."""

    outcome: str
    status_code: int | None
    error_class: str | None
    error_message: str | None
    duration_ms: int = 42
    response_headers: dict[str, str] | None = None


class SimulatedWorker:
    """Records one attempt for the first test delivery created after it started, then NOTIFY."""

    def __init__(self, engine: Engine, attempt: FakeAttempt, delay_s: float = 0.2) -> None:
        self.engine = engine
        self.since = datetime.now(UTC)
        self.attempt = attempt
        self.delay_s = delay_s
        self.notified_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SimulatedWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.engine.connect() as connection:
                delivery_id = connection.execute(
                    select(deliveries.c.id).where(
                        deliveries.c.event == TEST_EVENT, deliveries.c.created_at >= self.since
                    )
                ).scalar()
            if delivery_id is not None:
                break
            time.sleep(0.02)
        else:
            return
        time.sleep(self.delay_s)
        with self.engine.begin() as connection:
            connection.execute(
                insert(delivery_attempts).values(
                    delivery_id=delivery_id,
                    number=1,
                    trigger="scheduled",
                    started_at=datetime.now(UTC),
                    duration_ms=self.attempt.duration_ms,
                    status_code=self.attempt.status_code,
                    outcome=self.attempt.outcome,
                    error_class=self.attempt.error_class,
                    error_message=self.attempt.error_message,
                    response_headers=self.attempt.response_headers or {},
                )
            )
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": ATTEMPT_CHANNEL, "payload": str(delivery_id)},
            )
        self.notified_at = time.monotonic()


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url=HOOK_URL)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def send_test(client: TestClient, token: str) -> Any:
    return client.post(PATH, headers=bearer(token))


def test_not_configured_is_conflict(client: TestClient, engine: Engine) -> None:
    bare = seed_workspace(engine, workspace_id="initech")

    response = send_test(client, bare.owner_token)

    assert 409 == response.status_code
    assert "webhook_not_configured" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("Webhook handoff is not configured")


def test_disabled_is_conflict(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    with engine.begin() as connection:
        connection.execute(update(integrations).values(enabled=False))

    response = send_test(client, seeded.owner_token)

    assert 409 == response.status_code
    assert "webhook_disabled" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith(
        "Webhook handoff is configured but disabled"
    )


def test_member_is_not_permitted(client: TestClient, seeded: Seeded) -> None:
    response = send_test(client, seeded.member_token)

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]


def test_endpoint_error_outcome(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    attempt = FakeAttempt(
        outcome="failed",
        status_code=404,
        error_class="http_error",
        error_message="Webhook endpoint returned 404",
    )
    with SimulatedWorker(engine, attempt):
        response = send_test(client, seeded.owner_token)

    assert 200 == response.status_code
    body = response.json()
    assert {"deliveryId", "outcome", "statusCode", "durationMs", "message"} == set(body)
    assert "endpoint_error" == body["outcome"]
    assert 404 == body["statusCode"]
    assert 42 == body["durationMs"]
    assert "Webhook endpoint returned 404" == body["message"]


def test_timeout_outcome(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    attempt = FakeAttempt(
        outcome="failed",
        status_code=None,
        error_class="timeout",
        error_message="request timed out after 2.0 s",
        duration_ms=2001,
    )
    with SimulatedWorker(engine, attempt):
        response = send_test(client, seeded.owner_token)

    body = response.json()
    assert "timeout" == body["outcome"]
    assert body["statusCode"] is None
    assert body["message"].startswith("request timed out")


def test_delivered_outcome(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    attempt = FakeAttempt(
        outcome="delivered", status_code=200, error_class=None, error_message=None
    )
    with SimulatedWorker(engine, attempt):
        response = send_test(client, seeded.owner_token)

    body = response.json()
    assert "delivered" == body["outcome"]
    assert 200 == body["statusCode"]
    with engine.connect() as connection:
        event = connection.execute(
            select(deliveries.c.event).where(deliveries.c.id == body["deliveryId"])
        ).scalar_one()
    assert TEST_EVENT == event


def test_redirect_outcome_names_location(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    attempt = FakeAttempt(
        outcome="failed",
        status_code=301,
        error_class="redirect",
        error_message="Webhook endpoint returned 301: redirect not followed",
        response_headers={"location": "https://elsewhere.example/hook"},
    )
    with SimulatedWorker(engine, attempt):
        response = send_test(client, seeded.owner_token)

    assert "redirect" == response.json()["outcome"]
    assert "https://elsewhere.example/hook" in response.json()["message"]


def test_notification_ends_wait_early(
    client: TestClient, engine: Engine, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With polling slowed to 5 s, only the NOTIFY can end the wait this soon.
    monkeypatch.setattr("api.test_send.POLL_INTERVAL_S", 5.0)
    attempt = FakeAttempt(
        outcome="failed",
        status_code=None,
        error_class="connection_error",
        error_message="connection refused",
    )
    with SimulatedWorker(engine, attempt, delay_s=0.3) as worker:
        response = send_test(client, seeded.owner_token)
        answered_at = time.monotonic()

    assert "connection_error" == response.json()["outcome"]
    assert "connection refused" == response.json()["message"]
    assert worker.notified_at is not None
    assert answered_at - worker.notified_at < 1.0


def test_unfinished_attempt_is_pending(engine: Engine, settings: Settings, seeded: Seeded) -> None:
    # The wait is the delivery timeout plus 5 s, so a tiny timeout keeps this test short.
    quick = dataclasses.replace(settings, delivery_timeout_s=0.1)
    started = time.monotonic()
    with TestClient(create_app(quick, engine)) as client:
        response = send_test(client, seeded.owner_token)
    elapsed = time.monotonic() - started

    body = response.json()
    assert 200 == response.status_code
    assert "pending" == body["outcome"]
    assert body["statusCode"] is None
    assert f"/api/v1/deliveries/{body['deliveryId']}" in body["message"]
    assert 5.0 <= elapsed < 7.0


def test_eleventh_test_in_a_minute_is_rate_limited(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries),
            [
                {
                    "id": str(uuid.uuid4()),
                    "workspace_id": seeded.workspace_id,
                    "event": TEST_EVENT,
                    "body": b"{}",
                    "status": "delivered",
                    "provider": "generic",
                    "url_redacted": "http://127.0.0.1:9/…",
                    "max_automatic_attempts": 1,
                    # The oldest leaves the 60 s window in about 10 s.
                    "created_at": now - timedelta(seconds=50 - index),
                }
                for index in range(10)
            ],
        )

    response = send_test(client, seeded.owner_token)

    assert 429 == response.status_code
    assert "rate_limited" == response.json()["error"]["code"]
    assert 9 <= int(response.headers["Retry-After"]) <= 11
    with engine.connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.event == TEST_EVENT)
        ).scalar_one()
    assert 10 == count


def test_old_tests_do_not_count_toward_limit(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries),
            [
                {
                    "id": str(uuid.uuid4()),
                    "workspace_id": seeded.workspace_id,
                    "event": TEST_EVENT,
                    "body": b"{}",
                    "status": "delivered",
                    "provider": "generic",
                    "url_redacted": "http://127.0.0.1:9/…",
                    "max_automatic_attempts": 1,
                    "created_at": datetime.now(UTC) - timedelta(seconds=61),
                }
                for _ in range(10)
            ],
        )
    attempt = FakeAttempt(
        outcome="delivered", status_code=200, error_class=None, error_message=None
    )
    with SimulatedWorker(engine, attempt):
        response = send_test(client, seeded.owner_token)

    assert 200 == response.status_code
