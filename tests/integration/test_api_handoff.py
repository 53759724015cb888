"""The handoff endpoint: the order of its checks, its errors and Idempotency-Key."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, insert, select, text, update

from api.app import create_app
from api.idempotency import request_hash
from api.tokens import hash_token, new_token
from handoff.settings import Settings
from schema.tables import deliveries, idempotency_keys, integrations, members, operator_tokens
from schema.tables import outbox as outbox_table
from tests.seed import Seeded, seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"
BODY = {"assistantId": "asst_123", "range": {"preset": "30d"}}


def path(theme_id: str = "permissions") -> str:
    return f"/api/v1/insights/themes/{theme_id}/handoff"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_member(
    engine: Engine,
    workspace_id: str,
    role: str,
    permissions: list[str] | None = None,
    assistants: list[str] | None = None,
) -> str:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(members).values(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                name=f"A {role}",
                role=role,
                permissions=permissions or [],
                assistant_ids=assistants or [],
                token_hash=hash_token(token),
            )
        )
    return token


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url=HOOK_URL)


@pytest.fixture
def other(engine: Engine) -> Seeded:
    """Another workspace, whose only theme is `billing`."""
    seeded = seed_workspace(engine, workspace_id="globex", url=HOOK_URL)
    with engine.begin() as connection:
        connection.execute(text("UPDATE themes SET id = 'billing' WHERE workspace_id = 'globex'"))
    return seeded


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def test_handoff_is_accepted(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    response = client.post(path(), headers=bearer(seeded.member_token), json=BODY)

    assert 202 == response.status_code
    body = response.json()
    assert {"deliveryId", "status"} == set(body)
    assert "pending" == body["status"]
    with engine.connect() as connection:
        row = connection.execute(
            select(deliveries.c.status, deliveries.c.theme_id).where(
                deliveries.c.id == body["deliveryId"]
            )
        ).one()
    assert ("pending", "permissions") == (row.status, row.theme_id)
    assert 1 == count(engine, outbox_table)


def test_missing_token_is_unauthenticated(client: TestClient, seeded: Seeded) -> None:
    response = client.post(path(), json=BODY)

    assert 401 == response.status_code
    assert {
        "error": {"code": "unauthenticated", "message": response.json()["error"]["message"]}
    } == response.json()
    assert "Bearer" == response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header", ["Bearer sh_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer", "sh_token"]
)
def test_invalid_token_is_unauthenticated(client: TestClient, seeded: Seeded, header: str) -> None:
    response = client.post(path(), headers={"Authorization": header}, json=BODY)

    assert 401 == response.status_code
    assert "unauthenticated" == response.json()["error"]["code"]


def test_unauthenticated_comes_before_malformed_body(client: TestClient, seeded: Seeded) -> None:
    response = client.post(path(), headers={"Content-Type": "application/json"}, content=b"{oops")

    assert 401 == response.status_code


def test_role_without_export_is_not_permitted(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    token = add_member(engine, seeded.workspace_id, "member", assistants=["asst_123"])

    response = client.post(path(), headers=bearer(token), json=BODY)

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("not permitted")
    assert 0 == count(engine, deliveries)


def test_assistant_outside_scope_is_not_permitted(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    token = add_member(
        engine,
        seeded.workspace_id,
        "member",
        permissions=["insights.export"],
        assistants=["asst_9"],
    )

    response = client.post(path(), headers=bearer(token), json=BODY)

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]


def test_operator_token_is_not_permitted(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(operator_tokens).values(id=str(uuid.uuid4()), token_hash=hash_token(token))
        )

    response = client.post(path(), headers=bearer(token), json=BODY)

    assert 403 == response.status_code


def test_not_permitted_comes_before_invalid_body(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    token = add_member(engine, seeded.workspace_id, "member")

    response = client.post(
        path(),
        headers={**bearer(token), "Content-Type": "application/json"},
        content=b"{oops",
    )

    assert 403 == response.status_code


def test_other_workspace_theme_is_not_found(
    client: TestClient, engine: Engine, seeded: Seeded, other: Seeded
) -> None:
    # Even a member who may not export gets 404: the id is not in its workspace.
    token = add_member(engine, seeded.workspace_id, "member")

    for caller in (seeded.owner_token, token):
        response = client.post(path("billing"), headers=bearer(caller), json=BODY)
        assert 404 == response.status_code
        assert "not_found" == response.json()["error"]["code"]


def test_unknown_theme_is_not_found(client: TestClient, seeded: Seeded) -> None:
    response = client.post(path("nope"), headers=bearer(seeded.owner_token), json=BODY)

    assert 404 == response.status_code


def test_other_assistant_of_theme_is_not_found(client: TestClient, seeded: Seeded) -> None:
    response = client.post(
        path(),
        headers=bearer(seeded.owner_token),
        json={"assistantId": "asst_other", "range": {"preset": "7d"}},
    )

    assert 404 == response.status_code
    assert "not_found" == response.json()["error"]["code"]


def test_not_configured_is_conflict(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    with engine.begin() as connection:
        connection.execute(delete(integrations))

    response = client.post(path(), headers=bearer(seeded.member_token), json=BODY)

    assert 409 == response.status_code
    assert "webhook_not_configured" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("Webhook handoff is not configured")


def test_disabled_is_conflict(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    with engine.begin() as connection:
        connection.execute(update(integrations).values(enabled=False))

    response = client.post(path(), headers=bearer(seeded.member_token), json=BODY)

    assert 409 == response.status_code
    assert "webhook_disabled" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith(
        "Webhook handoff is configured but disabled"
    )
    assert 0 == count(engine, deliveries)


def test_invalid_range_comes_before_configuration(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    with engine.begin() as connection:
        connection.execute(update(integrations).values(enabled=False))

    response = client.post(
        path(),
        headers=bearer(seeded.owner_token),
        json={"assistantId": "asst_123", "range": {"from": "last tuesday", "to": "2026-02-01"}},
    )

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("range.from")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"assistantId": "asst_123"}, "range"),
        ({"assistantId": "asst_123", "range": {"preset": "365d"}}, "range.preset"),
        ({"assistantId": "asst_123", "range": {"from": "2026-02-01"}}, "range"),
        (
            {"assistantId": "asst_123", "range": {"from": "2026-03-01", "to": "2026-02-01"}},
            "range",
        ),
        ({"assistantId": "asst_123", "range": {"preset": "7d"}, "sources": "chat"}, "sources"),
        ({"range": {"preset": "7d"}}, "assistantId"),
        ({"assistantId": 7, "range": {"preset": "7d"}}, "assistantId"),
    ],
)
def test_invalid_body_names_field(
    client: TestClient, seeded: Seeded, body: dict[str, Any], field: str
) -> None:
    response = client.post(path(), headers=bearer(seeded.owner_token), json=body)

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith(f"{field}:")


@pytest.mark.parametrize("content", [b"{oops", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_body_is_invalid(client: TestClient, seeded: Seeded, content: bytes) -> None:
    response = client.post(
        path(),
        headers={**bearer(seeded.owner_token), "Content-Type": "application/json"},
        content=content,
    )

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("body:")


def test_idempotent_replay_returns_same_delivery(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order-42"}
    first = client.post(path(), headers=headers, json=BODY)

    # The same JSON with its keys in another order is the same request.
    reordered = json.dumps({"range": {"preset": "30d"}, "assistantId": "asst_123"})
    second = client.post(
        path(), headers={**headers, "Content-Type": "application/json"}, content=reordered
    )

    assert 202 == first.status_code
    assert 202 == second.status_code
    assert first.json() == second.json()
    assert 1 == count(engine, deliveries)
    assert 1 == count(engine, outbox_table)


def test_key_reused_with_other_body_is_rejected(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order-42"}
    client.post(path(), headers=headers, json=BODY)

    response = client.post(
        path(), headers=headers, json={"assistantId": "asst_123", "range": {"preset": "7d"}}
    )

    assert 422 == response.status_code
    assert "idempotency_key_reused" == response.json()["error"]["code"]
    assert 1 == count(engine, deliveries)


def test_keys_are_scoped_to_workspace(
    client: TestClient, engine: Engine, seeded: Seeded, other: Seeded
) -> None:
    first = client.post(
        path(), headers={**bearer(seeded.owner_token), "Idempotency-Key": "k"}, json=BODY
    )
    second = client.post(
        path("billing"), headers={**bearer(other.owner_token), "Idempotency-Key": "k"}, json=BODY
    )

    assert 202 == second.status_code
    assert first.json()["deliveryId"] != second.json()["deliveryId"]


def test_expired_key_makes_new_delivery(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order-42"}
    first = client.post(path(), headers=headers, json=BODY)
    with engine.begin() as connection:
        connection.execute(
            update(idempotency_keys).values(
                created_at=datetime.now(UTC) - timedelta(hours=24, seconds=1)
            )
        )

    second = client.post(path(), headers=headers, json={**BODY, "sources": ["chat"]})

    assert 202 == second.status_code
    assert first.json()["deliveryId"] != second.json()["deliveryId"]
    assert 2 == count(engine, deliveries)
    assert 1 == count(engine, idempotency_keys)


def test_long_key_is_invalid(client: TestClient, seeded: Seeded) -> None:
    response = client.post(
        path(), headers={**bearer(seeded.member_token), "Idempotency-Key": "k" * 256}, json=BODY
    )

    assert 422 == response.status_code
    assert response.json()["error"]["message"].startswith("Idempotency-Key")


def test_concurrent_key_answers_as_replay(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    # Another request holds the key, uncommitted; this one inserts the key too, waits on its
    # lock, hits the unique violation once it commits, and must respond with its delivery.
    winner = str(uuid.uuid4())
    answers: list[Any] = []
    with engine.connect() as holder:
        holder.execute(
            insert(idempotency_keys).values(
                workspace_id=seeded.workspace_id,
                endpoint="handoff",
                key="race",
                request_hash=request_hash({"themeId": "permissions"}, BODY),
                delivery_id=winner,
                created_at=datetime.now(UTC),
            )
        )
        thread = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    path(),
                    headers={**bearer(seeded.member_token), "Idempotency-Key": "race"},
                    json=BODY,
                )
            )
        )
        thread.start()
        waiting = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as probe:
                waiting = probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar_one()
            if waiting:
                break
            time.sleep(0.02)
        holder.commit()
        thread.join(timeout=10)

    assert 1 == waiting
    assert 202 == answers[0].status_code
    assert winner == answers[0].json()["deliveryId"]
    assert 0 == count(engine, deliveries)
