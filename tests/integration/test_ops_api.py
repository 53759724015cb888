"""The operations endpoint for operator tokens, and the API's Prometheus `/metrics`."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert

from api.app import create_app
from api.tokens import hash_token, new_token
from handoff.settings import Settings
from schema.tables import DELIVERY_STATUSES, operator_tokens
from tests.integration.ops_rows import add_delivery, add_outbox_row, ago
from tests.seed import Seeded, seed_workspace

QUEUES = "/api/v1/ops/queues"


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url="http://127.0.0.1:9/hook")


@pytest.fixture
def operator_token(engine: Engine) -> str:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(operator_tokens).values(id=str(uuid.uuid4()), token_hash=hash_token(token))
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_operator_reads_every_figure(
    client: TestClient, engine: Engine, seeded: Seeded, operator_token: str
) -> None:
    seed_workspace(engine, workspace_id="globex", url="http://127.0.0.1:9/hook")
    add_outbox_row(
        engine, add_delivery(engine, "acme", status="pending"), available_at=ago(seconds=2)
    )
    add_delivery(engine, "globex", status="failed", updated_at=ago(minutes=1))

    response = client.get(QUEUES, headers=bearer(operator_token))

    assert 200 == response.status_code
    body = response.json()
    assert {"outbox", "deliveries", "retries", "broker", "lastHour"} == set(body)
    assert {"pending", "oldestPendingAgeSeconds"} == set(body["outbox"])
    assert set(DELIVERY_STATUSES) == set(body["deliveries"])
    assert {"dueNow", "nextDueAt"} == set(body["retries"])
    assert {"queue", "messages", "delayed", "deadLettered"} == set(body["broker"])
    assert {"delivered", "failed", "latencyP50Ms", "latencyP95Ms"} == set(body["lastHour"])
    assert 1 == body["outbox"]["pending"]
    assert 1 == body["deliveries"]["pending"]
    assert 1 == body["deliveries"]["failed"]
    assert 1 == body["lastHour"]["failed"]
    assert 0 == body["broker"]["messages"]


@pytest.mark.parametrize("role", ["owner", "member"])
def test_member_token_is_not_permitted(client: TestClient, seeded: Seeded, role: str) -> None:
    token = seeded.owner_token if role == "owner" else seeded.member_token

    response = client.get(QUEUES, headers=bearer(token))

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]


def test_missing_token_is_unauthenticated(client: TestClient) -> None:
    response = client.get(QUEUES)

    assert 401 == response.status_code
    assert "unauthenticated" == response.json()["error"]["code"]


def test_broker_outage_is_reported_not_raised(
    engine: Engine, settings: Settings, operator_token: str
) -> None:
    broken = dataclasses.replace(settings, broker_url="redis://:hunter2@127.0.0.1:1/0")
    with TestClient(create_app(broken, engine)) as client:
        response = client.get(QUEUES, headers=bearer(operator_token))

    assert 200 == response.status_code
    broker = response.json()["broker"]
    assert None is broker["messages"]
    assert "broker unavailable (ConnectionError)" == broker["error"]
    assert "hunter2" not in response.text


def test_openapi_lists_ops_and_metrics(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert "get" in paths[QUEUES]
    assert "get" in paths["/metrics"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text into {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_need_no_token_and_read_postgres(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(engine, "acme", status="retrying", next_attempt_at=ago(seconds=3))
    add_outbox_row(engine, delivery_id, available_at=ago(seconds=40))
    add_outbox_row(engine, delivery_id, available_at=ago(seconds=1))

    response = client.get("/metrics")

    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)
    assert 2.0 == values[("handoff_outbox_pending", ())]
    assert 40.0 <= values[("handoff_outbox_oldest_pending_age_seconds", ())] < 70.0
    assert 1.0 == values[("handoff_retry_backlog", ())]
    assert 1.0 == values[("handoff_retries_due", ())]
    assert 1.0 == values[("handoff_deliveries_by_status", (("status", "retrying"),))]
    assert 0.0 == values[("handoff_deliveries_by_status", (("status", "delivered"),))]
    assert 1.0 == values[("handoff_broker_up", ())]
    assert 0.0 == values[("handoff_broker_messages", (("kind", "ready"), ("queue", "handoff")))]


def test_metrics_mark_broker_down(engine: Engine, settings: Settings) -> None:
    broken = dataclasses.replace(settings, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(broken, engine)) as client:
        values = samples(client.get("/metrics").text)

    assert 0.0 == values[("handoff_broker_up", ())]
    assert not [key for key in values if key[0] == "handoff_broker_messages"]
    assert 0.0 == values[("handoff_outbox_pending", ())]
