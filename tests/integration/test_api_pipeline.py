"""The API over the real pipeline: test sends, handoffs and redeliveries reach a real receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from handoff.settings import Settings
from tests.integration.harness import Pipeline
from tests.receivers import Hang, Receiver, Respond
from tests.seed import Seeded, seed_workspace

TEST_SEND = "/api/v1/integrations/webhook/test"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def seeded(engine: Engine, receiver: Receiver) -> Seeded:
    return seed_workspace(engine, url=receiver.url)


@pytest.fixture
def client(engine: Engine, settings: Settings, broker_url: str) -> Iterator[TestClient]:
    pipeline = Pipeline(settings, engine, broker_url).start()
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client
    pipeline.close()


def test_test_send_reports_delivered(
    client: TestClient, seeded: Seeded, receiver: Receiver
) -> None:
    response = client.post(TEST_SEND, headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    result = response.json()
    assert "delivered" == result["outcome"]
    assert 200 == result["statusCode"]
    assert result["durationMs"] >= 0
    [request] = receiver.requests
    assert result["deliveryId"] == request.headers["x-sol-delivery"]
    assert "solhelps.webhook.test" == json.loads(request.body)["event"]


def test_test_send_reports_endpoint_error(
    client: TestClient, seeded: Seeded, receiver: Receiver
) -> None:
    receiver.script(Respond(404))
    result = client.post(TEST_SEND, headers=bearer(seeded.owner_token)).json()

    assert "endpoint_error" == result["outcome"]
    assert 404 == result["statusCode"]
    assert result["message"].startswith("Webhook endpoint returned 404")
    time.sleep(0.5)
    assert 1 == len(receiver.requests)


def test_test_send_reports_timeout(
    client: TestClient, seeded: Seeded, receiver: Receiver, settings: Settings
) -> None:
    receiver.script(Hang(seconds=30))
    started = time.monotonic()
    result = client.post(TEST_SEND, headers=bearer(seeded.owner_token)).json()

    assert "timeout" == result["outcome"]
    assert result["message"].startswith("request timed out")
    assert time.monotonic() - started < settings.delivery_timeout_s + 3


def test_handoff_then_redeliver_reaches_receiver(
    client: TestClient, seeded: Seeded, receiver: Receiver
) -> None:
    accepted = client.post(
        "/api/v1/insights/themes/permissions/handoff",
        headers=bearer(seeded.member_token),
        json={"assistantId": "asst_123", "range": {"preset": "7d"}},
    )
    assert 202 == accepted.status_code
    delivery_id = accepted.json()["deliveryId"]
    receiver.wait_for(1)

    show = f"/api/v1/deliveries/{delivery_id}"
    deadline = time.monotonic() + 10
    while client.get(show, headers=bearer(seeded.owner_token)).json()["status"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    redelivered = client.post(f"{show}/redeliver", headers=bearer(seeded.owner_token))
    assert 202 == redelivered.status_code
    first, second = receiver.wait_for(2)
    assert first.body == second.body
    assert delivery_id == second.headers["x-sol-delivery"]

    deadline = time.monotonic() + 10
    while True:
        delivery = client.get(show, headers=bearer(seeded.owner_token)).json()
        if len(delivery["attempts"]) == 2 and delivery["attempts"][1]["outcome"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ["scheduled", "manual"] == [attempt["trigger"] for attempt in delivery["attempts"]]
    assert "delivered" == delivery["status"]
    assert 2 == delivery["attemptCount"]
