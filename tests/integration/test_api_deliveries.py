"""Delivery history and redeliver endpoints: layout, order, filters, pagination and conflicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert, select, update

from api.app import create_app
from api.tokens import hash_token, new_token
from handoff.settings import Settings
from schema.tables import deliveries, delivery_attempts, integrations, members
from schema.tables import outbox as outbox_table
from tests.seed import Seeded, seed_workspace

LIST = "/api/v1/deliveries"
HOOK_URL = "http://127.0.0.1:9/hook"
T0 = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_delivery(
    engine: Engine,
    workspace_id: str,
    *,
    created_at: datetime = T0,
    status: str = "delivered",
    event: str = "solhelps.insight.handoff",
    theme_id: str | None = "permissions",
    delivery_id: str | None = None,
    lease_until: datetime | None = None,
) -> str:
    delivery_id = delivery_id or str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries).values(
                id=delivery_id,
                workspace_id=workspace_id,
                event=event,
                theme_id=theme_id,
                body=b"{}",
                status=status,
                provider="generic",
                url_redacted="http://127.0.0.1:9/…",
                created_at=created_at,
                lease_until=lease_until,
                max_automatic_attempts=4,
            )
        )
    return delivery_id


def delivery_row(engine: Engine, delivery_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one()


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url=HOOK_URL)


@pytest.fixture
def other(engine: Engine) -> Seeded:
    return seed_workspace(engine, workspace_id="globex", url=HOOK_URL)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def test_list_is_newest_first_and_paginates(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    # Two deliveries share a creation time, so the id decides their order.
    times = [T0 + timedelta(minutes=minute) for minute in (0, 1, 2, 3, 3, 4, 5)]
    ids = [add_delivery(engine, seeded.workspace_id, created_at=moment) for moment in times]
    expected = [
        delivery_id
        for _, delivery_id in sorted(
            zip(times, [uuid.UUID(i) for i in ids], strict=True), reverse=True
        )
    ]
    headers = bearer(seeded.owner_token)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = client.get(LIST, headers=headers, params=params)
        assert 200 == response.status_code
        pages.append([item["deliveryId"] for item in response.json()["items"]])
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break

    assert [3, 3, 1] == [len(page) for page in pages]
    assert [str(delivery_id) for delivery_id in expected] == [i for page in pages for i in page]


def test_list_items_have_no_attempts(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id)

    response = client.get(LIST, headers=bearer(seeded.owner_token))

    item = response.json()["items"][0]
    assert {
        "deliveryId",
        "event",
        "themeId",
        "status",
        "provider",
        "url",
        "createdAt",
        "deliveredAt",
        "nextAttemptAt",
        "attemptCount",
        "failureReason",
    } == set(item)
    assert delivery_id == item["deliveryId"]
    assert "2026-02-15T12:00:00.000Z" == item["createdAt"]
    assert "http://127.0.0.1:9/…" == item["url"]
    assert response.json()["nextCursor"] is None


def test_list_includes_test_events(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    add_delivery(engine, seeded.workspace_id, event="solhelps.webhook.test", theme_id=None)

    items = client.get(LIST, headers=bearer(seeded.owner_token)).json()["items"]

    assert ["solhelps.webhook.test"] == [item["event"] for item in items]


def test_list_filters(client: TestClient, engine: Engine, seeded: Seeded, other: Seeded) -> None:
    failed = add_delivery(engine, seeded.workspace_id, status="failed", created_at=T0)
    test = add_delivery(
        engine,
        seeded.workspace_id,
        event="solhelps.webhook.test",
        theme_id=None,
        created_at=T0 + timedelta(days=1),
    )
    later = add_delivery(
        engine, seeded.workspace_id, theme_id="billing", created_at=T0 + timedelta(days=2)
    )
    add_delivery(engine, other.workspace_id, status="failed")
    headers = bearer(seeded.owner_token)

    def ids(params: dict[str, str]) -> list[str]:
        response = client.get(LIST, headers=headers, params=params)
        assert 200 == response.status_code, response.json()
        return [item["deliveryId"] for item in response.json()["items"]]

    assert [failed] == ids({"status": "failed"})
    assert [test] == ids({"event": "solhelps.webhook.test"})
    assert [later] == ids({"themeId": "billing"})
    assert [later, test] == ids({"from": "2026-02-16T00:00:00Z"})
    assert [test, failed] == ids({"to": "2026-02-16"})
    assert [test] == ids({"from": "2026-02-16", "to": "2026-02-16T23:59:59+00:00"})
    assert [later, test, failed] == ids({})


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "MjAyNnxub3QtYS11dWlk"}, "cursor"),
        ({"status": "lost"}, "status"),
        ({"event": "solhelps.other"}, "event"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-02-02", "to": "2026-02-01"}, "from"),
    ],
)
def test_invalid_query_names_parameter(
    client: TestClient, seeded: Seeded, params: dict[str, str], field: str
) -> None:
    response = client.get(LIST, headers=bearer(seeded.owner_token), params=params)

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith(f"{field}:")


def test_limit_bounds_are_accepted(client: TestClient, seeded: Seeded) -> None:
    for limit in ("1", "200"):
        response = client.get(LIST, headers=bearer(seeded.owner_token), params={"limit": limit})
        assert 200 == response.status_code


def test_member_role_cannot_list(client: TestClient, seeded: Seeded) -> None:
    response = client.get(LIST, headers=bearer(seeded.member_token), params={"limit": "0"})

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]


def test_delivery_has_attempts(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id, status="sending")
    with engine.begin() as connection:
        connection.execute(
            insert(delivery_attempts).values(
                delivery_id=delivery_id,
                number=1,
                trigger="scheduled",
                started_at=T0,
                duration_ms=120,
                url_redacted="http://127.0.0.1:9/…",
                request_headers={"X-Sol-Event": "solhelps.insight.handoff"},
                body_size=2,
                status_code=503,
                response_headers={"retry-after": "5"},
                response_body_excerpt="busy",
                outcome="will_retry",
                error_class="http_error",
                error_message="Webhook endpoint returned 503",
                next_attempt_at=T0 + timedelta(seconds=5),
            )
        )
        # The second attempt is still in flight: only its start is recorded.
        connection.execute(
            insert(delivery_attempts).values(
                delivery_id=delivery_id,
                number=2,
                trigger="scheduled",
                started_at=T0 + timedelta(seconds=6),
            )
        )

    response = client.get(f"{LIST}/{delivery_id}", headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    body = response.json()
    assert delivery_id == body["deliveryId"]
    assert [1, 2] == [attempt["number"] for attempt in body["attempts"]]
    first, second = body["attempts"]
    assert {
        "number": 1,
        "trigger": "scheduled",
        "startedAt": "2026-02-15T12:00:00.000Z",
        "durationMs": 120,
        "statusCode": 503,
        "outcome": "will_retry",
        "errorClass": "http_error",
        "errorMessage": "Webhook endpoint returned 503",
        "requestHeaders": {"X-Sol-Event": "solhelps.insight.handoff"},
        "bodySize": 2,
        "responseHeaders": {"retry-after": "5"},
        "responseBodyExcerpt": "busy",
        "nextAttemptAt": "2026-02-15T12:00:05.000Z",
    } == first
    assert second["outcome"] is None
    assert second["statusCode"] is None


def test_other_workspace_delivery_is_not_found(
    client: TestClient, seeded: Seeded, other: Seeded, engine: Engine
) -> None:
    foreign = add_delivery(engine, other.workspace_id)

    # The member role would get 403 on its own workspace; here the id decides first.
    for token in (seeded.owner_token, seeded.member_token):
        for method, url in (("GET", f"{LIST}/{foreign}"), ("POST", f"{LIST}/{foreign}/redeliver")):
            response = client.request(method, url, headers=bearer(token))
            assert 404 == response.status_code, (method, token)
            assert "not_found" == response.json()["error"]["code"]
    assert "delivered" == delivery_row(engine, foreign).status


def test_non_uuid_delivery_is_not_found(client: TestClient, seeded: Seeded) -> None:
    response = client.get(f"{LIST}/not-a-uuid", headers=bearer(seeded.owner_token))

    assert 404 == response.status_code
    assert "not_found" == response.json()["error"]["code"]


def test_member_role_cannot_read_own_delivery(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id)

    response = client.get(f"{LIST}/{delivery_id}", headers=bearer(seeded.member_token))

    assert 403 == response.status_code


@pytest.mark.parametrize("status", ["delivered", "failed", "cancelled", "retrying"])
def test_redeliver_queues_manual_attempt(
    client: TestClient, engine: Engine, seeded: Seeded, status: str
) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id, status=status)

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.owner_token))

    assert 202 == response.status_code
    assert {"deliveryId": delivery_id, "status": "queued"} == response.json()
    row = delivery_row(engine, delivery_id)
    assert "queued" == row.status
    assert "manual" == row.next_trigger
    assert row.queued_at is not None
    with engine.connect() as connection:
        triggers = connection.execute(
            select(outbox_table.c.trigger).where(outbox_table.c.delivery_id == delivery_id)
        ).all()
    assert [("manual",)] == [tuple(row) for row in triggers]


def test_redeliver_in_flight_is_conflict(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(
        engine,
        seeded.workspace_id,
        status="sending",
        lease_until=datetime.now(UTC) + timedelta(seconds=30),
    )

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.owner_token))

    assert 409 == response.status_code
    assert "delivery_in_progress" == response.json()["error"]["code"]
    assert "sending" == delivery_row(engine, delivery_id).status


def test_redeliver_after_expired_lease_interrupts_attempt(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(
        engine,
        seeded.workspace_id,
        status="sending",
        lease_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    with engine.begin() as connection:
        connection.execute(
            insert(delivery_attempts).values(
                delivery_id=delivery_id, number=1, trigger="scheduled", started_at=T0
            )
        )

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.owner_token))

    assert 202 == response.status_code
    with engine.connect() as connection:
        outcome = connection.execute(select(delivery_attempts.c.outcome)).scalar_one()
    assert "interrupted" == outcome


def test_redeliver_when_disabled_is_conflict(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id, status="cancelled")
    with engine.begin() as connection:
        connection.execute(update(integrations).values(enabled=False))

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.owner_token))

    assert 409 == response.status_code
    assert "webhook_disabled" == response.json()["error"]["code"]
    assert "cancelled" == delivery_row(engine, delivery_id).status


def test_redeliver_when_removed_is_conflict(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id, status="failed")
    with engine.begin() as connection:
        connection.execute(delete(integrations))

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.owner_token))

    assert 409 == response.status_code
    assert "webhook_not_configured" == response.json()["error"]["code"]


def test_member_role_cannot_redeliver(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    delivery_id = add_delivery(engine, seeded.workspace_id, status="failed")

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(seeded.member_token))

    assert 403 == response.status_code
    assert "failed" == delivery_row(engine, delivery_id).status


def test_admin_role_can_redeliver(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(members).values(
                id=str(uuid.uuid4()),
                workspace_id=seeded.workspace_id,
                name="Ada Admin",
                role="admin",
                token_hash=hash_token(token),
            )
        )
    delivery_id = add_delivery(engine, seeded.workspace_id, status="failed")

    response = client.post(f"{LIST}/{delivery_id}/redeliver", headers=bearer(token))

    assert 202 == response.status_code
