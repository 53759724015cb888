"""API hardening: body size limit, Idempotency-Key expiry, tokens, rate limit, tenant isolation."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.errors import RateLimited
from api.rate_limit import TEST_SENDS_PER_WINDOW, check_test_send_rate
from api.routes import integration as integration_routes
from api.tokens import hash_token, new_token
from handoff.settings import Settings
from outbox import enqueue_handoff
from outbox.events import TEST_EVENT
from schema.tables import (
    deliveries,
    idempotency_keys,
    integrations,
    members,
    operator_tokens,
    themes,
    workspaces,
)
from tests.conftest import TEST_SECRET_KEY
from tests.seed import Seeded, seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"
BODY = {"assistantId": "asst_123", "range": {"preset": "30d"}}
HANDOFF_PATH = "/api/v1/insights/themes/permissions/handoff"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def age_keys(engine: Engine, age: timedelta) -> None:
    with engine.begin() as connection:
        connection.execute(update(idempotency_keys).values(created_at=datetime.now(UTC) - age))


def assert_error(response: Any, status: int, code: str) -> None:
    assert status == response.status_code
    body = response.json()
    assert {"error"} == set(body)
    assert code == body["error"]["code"]
    assert body["error"]["message"]


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url=HOOK_URL)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


# Request body limit.


def test_declared_large_body_is_payload_too_large(client: TestClient, seeded: Seeded) -> None:
    body = {**BODY, "sources": ["x" * 70_000]}
    response = client.post(HANDOFF_PATH, headers=bearer(seeded.member_token), json=body)
    assert_error(response, 413, "payload_too_large")
    assert 0 == count(client.app.state.engine, deliveries)  # type: ignore[attr-defined]


def test_chunked_large_body_is_payload_too_large(client: TestClient, seeded: Seeded) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"assistantId": "asst_123", "range": {"preset": "30d"}, "sources": ["'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"]}'

    response = client.post(
        HANDOFF_PATH,
        headers={**bearer(seeded.member_token), "Content-Type": "application/json"},
        content=chunks(),
    )

    assert_error(response, 413, "payload_too_large")


def test_large_integration_body_is_payload_too_large(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        "/api/v1/integrations/webhook",
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": HOOK_URL, "signingSecret": "s" * 70_000},
    )
    assert_error(response, 413, "payload_too_large")


def test_body_under_limit_is_accepted(client: TestClient, seeded: Seeded) -> None:
    body = {**BODY, "sources": ["x" * 100] * 50}
    response = client.post(HANDOFF_PATH, headers=bearer(seeded.member_token), json=body)
    assert 202 == response.status_code


# Idempotency-Key: kept 24 hours, scoped to workspace and endpoint.


def test_key_within_a_day_replays(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order-7"}
    first = client.post(HANDOFF_PATH, headers=headers, json=BODY)
    age_keys(engine, timedelta(hours=23, minutes=59))

    replay = client.post(HANDOFF_PATH, headers=headers, json=BODY)
    reused = client.post(HANDOFF_PATH, headers=headers, json={**BODY, "sources": ["chat"]})

    assert 202 == replay.status_code
    assert first.json()["deliveryId"] == replay.json()["deliveryId"]
    assert_error(reused, 422, "idempotency_key_reused")
    assert 1 == count(engine, deliveries)


def test_key_after_a_day_is_new(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order-8"}
    first = client.post(HANDOFF_PATH, headers=headers, json=BODY)
    age_keys(engine, timedelta(hours=24, seconds=1))

    same_body = client.post(HANDOFF_PATH, headers=headers, json=BODY)

    assert 202 == same_body.status_code
    assert first.json()["deliveryId"] != same_body.json()["deliveryId"]
    assert 2 == count(engine, deliveries)
    assert 1 == count(engine, idempotency_keys)


def test_key_with_lone_surrogate_body_replays(client: TestClient, seeded: Seeded) -> None:
    # JSON can escape a lone surrogate; strict UTF-8 cannot encode it for the request hash.
    content = b'{"assistantId": "asst_123", "range": {"preset": "7d"}, "sources": ["\\ud800"]}'
    headers = {
        **bearer(seeded.member_token),
        "Idempotency-Key": "surrogate-1",
        "Content-Type": "application/json",
    }

    first = client.post(HANDOFF_PATH, headers=headers, content=content)
    replay = client.post(HANDOFF_PATH, headers=headers, content=content)

    assert 202 == first.status_code
    assert 202 == replay.status_code
    assert first.json()["deliveryId"] == replay.json()["deliveryId"]


def test_key_with_control_character_is_invalid(client: TestClient, seeded: Seeded) -> None:
    # httpx refuses NUL in a header, but a tab reaches the app.
    headers = {**bearer(seeded.member_token), "Idempotency-Key": "order\t9"}
    response = client.post(HANDOFF_PATH, headers=headers, json=BODY)
    assert_error(response, 422, "validation_failed")
    assert response.json()["error"]["message"].startswith("Idempotency-Key: ")


# Inputs Postgres or datetime cannot take get a 4xx, never a 500.


def test_nul_in_theme_path_is_not_found(client: TestClient, seeded: Seeded) -> None:
    response = client.post(
        "/api/v1/insights/themes/perm%00issions/handoff",
        headers=bearer(seeded.member_token),
        json=BODY,
    )
    assert_error(response, 404, "not_found")


def test_nul_in_theme_filter_is_invalid(client: TestClient, seeded: Seeded) -> None:
    response = client.get("/api/v1/deliveries?themeId=a%00b", headers=bearer(seeded.owner_token))
    assert_error(response, 422, "validation_failed")
    assert response.json()["error"]["message"].startswith("themeId: ")


@pytest.mark.parametrize(
    "date_range",
    [
        {"from": "2020-01-01", "to": "9999-12-31T23:59:59-01:00"},
        {"from": "0001-01-01T00:00:00+01:00", "to": "2020-01-01"},
        {"to": "0001-01-02", "preset": "90d"},
    ],
)
def test_range_beyond_calendar_is_invalid(
    client: TestClient, seeded: Seeded, date_range: dict[str, str]
) -> None:
    body = {"assistantId": "asst_123", "range": date_range}
    response = client.post(HANDOFF_PATH, headers=bearer(seeded.member_token), json=body)
    assert_error(response, 422, "validation_failed")
    assert response.json()["error"]["message"].startswith("range.")


# Test sends: ten a minute per workspace.


def test_rate_limit_is_per_workspace(engine: Engine, seeded: Seeded) -> None:
    seed_workspace(engine, workspace_id="globex", url=HOOK_URL)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries),
            [
                {
                    "id": str(uuid.uuid4()),
                    "workspace_id": workspace_id,
                    "event": TEST_EVENT,
                    "body": b"{}",
                    "status": "delivered",
                    "provider": "generic",
                    "url_redacted": "http://127.0.0.1:9/…",
                    "max_automatic_attempts": 1,
                    "created_at": now - timedelta(seconds=30),
                }
                for workspace_id in ["acme"] * (TEST_SENDS_PER_WINDOW + 1) + ["globex"]
            ],
        )

    with Session(engine) as session, pytest.raises(RateLimited) as caught:
        check_test_send_rate(session, "acme", now)
    with Session(engine) as session:
        check_test_send_rate(session, "globex", now)

    assert 30 == caught.value.retry_after_s
    assert "30" == caught.value.headers["Retry-After"]


# Tokens: stored as SHA-256 only, compared in constant time.


def test_token_compared_in_constant_time(
    client: TestClient, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(stored: bytes, computed: bytes) -> bool:
        calls.append((bytes(stored), bytes(computed)))
        return real(stored, computed)

    monkeypatch.setattr("api.auth.hmac.compare_digest", spy)
    response = client.get("/api/v1/integrations/webhook", headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    digest = hashlib.sha256(seeded.owner_token.encode()).digest()
    assert [(digest, digest)] == calls


def test_cli_token_is_stored_only_as_hash(
    database_url: str, engine: Engine, seeded: Seeded
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "handoff.cli", "members", "add", "--workspace", "acme"]
        + ["--name", "Tara Token", "--role", "admin"],
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "HANDOFF_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = completed.stdout.split()[-1]

    with engine.connect() as connection:
        row = connection.execute(select(members).where(members.c.name == "Tara Token")).one()
        dump = connection.execute(text("SELECT row_to_json(m)::text FROM members m")).scalars()
        stored_text = "\n".join(dump)
    assert hash_token(token) == bytes(row.token_hash)
    assert hashlib.sha256(token.encode()).digest() == bytes(row.token_hash)
    assert token not in stored_text
    assert token.removeprefix("sh_") not in stored_text


# Tenant isolation: every operation of /openapi.json, with another workspace's ids.

OTHER_THEME = "billing"
OTHER_URL_PATH = "a-secret-hook-path-7f3c"
OTHER_SECRET = "whsec_b3RoZXItd29ya3NwYWNlLXNlY3JldA=="
# Endpoints anyone may call; they carry no workspace data.
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}
# Endpoints for operator tokens only; they show figures summed over all workspaces.
OPERATOR_PATHS = {"/api/v1/ops/queues"}


@dataclasses.dataclass(frozen=True)
class Tenants:
    """Workspace `acme` (the victim) and the callers of workspace `globex`."""

    victim: Seeded
    delivery_id: str
    owner_token: str
    member_token: str
    operator_token: str


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything of workspace acme that another workspace's caller must not change."""
    with engine.connect() as connection:
        integration = connection.execute(
            select(integrations).where(integrations.c.workspace_id == "acme")
        ).one()
        acme_deliveries = connection.execute(
            select(deliveries.c.id, deliveries.c.status, deliveries.c.attempt_count)
            .where(deliveries.c.workspace_id == "acme")
            .order_by(deliveries.c.id)
        ).all()
        acme_keys = connection.execute(
            select(idempotency_keys).where(idempotency_keys.c.workspace_id == "acme")
        ).all()
    return {
        "integration": tuple(integration),
        "deliveries": [tuple(row) for row in acme_deliveries],
        "keys": [tuple(row) for row in acme_keys],
    }


@pytest.fixture
def tenants(engine: Engine, settings: Settings) -> Tenants:
    victim = seed_workspace(
        engine,
        url=f"http://127.0.0.1:9/hooks/{OTHER_URL_PATH}",
        secret=OTHER_SECRET,
        secret_key=TEST_SECRET_KEY,
    )
    with engine.begin() as connection:
        connection.execute(
            update(workspaces).where(workspaces.c.id == "acme").values(name="Victim Corp")
        )
        connection.execute(
            insert(themes).values(
                workspace_id="acme",
                id=OTHER_THEME,
                assistant_id="asst_123",
                label="Billing surprise",
                conversation_count=5,
                impact_tier="High",
                confidence="High",
                recommendation_title="Explain the invoice",
                recommendation_next_step="Add a line-item breakdown.",
                evidence=["why was I charged twice"],
            )
        )
    with Session(engine) as session, session.begin():
        delivery_id = enqueue_handoff(
            session,
            workspace_id="acme",
            actor_id=victim.owner_id,
            theme_id=OTHER_THEME,
            assistant_id="asst_123",
            range={"preset": "7d"},
            settings=settings,
        )

    caller = seed_workspace(engine, workspace_id="globex", url="http://127.0.0.1:9/globex")
    operator_token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(operator_tokens).values(
                id=str(uuid.uuid4()), token_hash=hash_token(operator_token)
            )
        )
    return Tenants(
        victim=victim,
        delivery_id=delivery_id,
        owner_token=caller.owner_token,
        member_token=caller.member_token,
        operator_token=operator_token,
    )


def request_for(path: str, method: str, ids: dict[str, str], tenants: Tenants) -> dict[str, Any]:
    """Build the request of one operation, with `ids` wherever an id goes."""
    names = re.findall(r"{(\w+)}", path)
    unknown = [name for name in names if name not in ids]
    if unknown:
        pytest.fail(f"{method.upper()} {path}: add a victim id for {unknown} to this walk")
    request: dict[str, Any] = {"url": path.format(**ids)}
    if method == "get" and path == "/api/v1/deliveries":
        request["params"] = {"themeId": OTHER_THEME}
    if method == "put" and path == "/api/v1/integrations/webhook":
        request["json"] = {"provider": "generic", "url": "http://127.0.0.1:9/globex"}
    elif path.endswith("/handoff"):
        request["json"] = {"assistantId": "asst_123", "range": {"preset": "7d"}}
    elif method in ("post", "put", "patch"):
        request["json"] = {}
    return request


def test_other_workspace_ids_answer_not_found(
    engine: Engine, settings: Settings, tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No worker runs, so a test send waits the whole delivery timeout plus this margin.
    monkeypatch.setattr(integration_routes, "TEST_WAIT_MARGIN_S", 0.0)
    app_settings = dataclasses.replace(settings, delivery_timeout_s=1.0)
    before = snapshot(engine)
    # The victim's ids are not among them: an error may repeat the id the caller sent.
    markers = [OTHER_URL_PATH, OTHER_SECRET, "Victim Corp", "Billing surprise"]
    victim_ids = {"themeId": OTHER_THEME, "deliveryId": tenants.delivery_id}
    unknown_ids = {"themeId": "no-such-theme", "deliveryId": str(uuid.uuid4())}
    walked: list[str] = []

    with TestClient(create_app(app_settings, engine)) as client:
        document = client.get("/openapi.json").json()
        for path, operations in document["paths"].items():
            for method in operations:
                walked.append(f"{method.upper()} {path}")
                request = request_for(path, method, victim_ids, tenants)
                unknown_request = request_for(path, method, unknown_ids, tenants)
                has_ids = "{" in path
                callers = {
                    "owner": tenants.owner_token,
                    "member": tenants.member_token,
                    "operator": tenants.operator_token,
                }
                for role, token in callers.items():
                    response = client.request(method.upper(), headers=bearer(token), **request)
                    where = f"{method.upper()} {path} as {role}"
                    for marker in markers:
                        assert marker not in response.text, where
                    if path in PUBLIC_PATHS:
                        continue
                    if path in OPERATOR_PATHS:
                        expected = {200} if role == "operator" else {403}
                    elif role == "operator":
                        expected = {403, 404}
                    elif has_ids:
                        expected = {404}
                    elif role == "member":
                        expected = {403}
                    else:
                        expected = set(range(200, 500)) - {401, 403}
                    assert response.status_code in expected, f"{where}: {response.text}"
                    if has_ids and role != "operator":
                        assert "not_found" == response.json()["error"]["code"], where
                    if has_ids:
                        # The same response as for an id that exists nowhere.
                        unknown = client.request(
                            method.upper(), headers=bearer(token), **unknown_request
                        )
                        expected_text = unknown.text
                        for name, value in unknown_ids.items():
                            expected_text = expected_text.replace(value, victim_ids[name])
                        assert unknown.status_code == response.status_code, where
                        assert expected_text == response.text, where

    assert before == snapshot(engine)
    assert "POST /api/v1/deliveries/{deliveryId}/redeliver" in walked
    assert "GET /api/v1/deliveries/{deliveryId}" in walked
    assert "POST /api/v1/insights/themes/{themeId}/handoff" in walked
    assert len(walked) >= 12


def test_history_filter_hides_other_workspace(
    client: TestClient, engine: Engine, tenants: Tenants
) -> None:
    response = client.get(
        "/api/v1/deliveries",
        params={"themeId": OTHER_THEME},
        headers=bearer(tenants.owner_token),
    )
    assert 200 == response.status_code
    assert [] == response.json()["items"]
