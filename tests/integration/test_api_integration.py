"""The integration endpoints against a real Postgres: read, save, remove and rotate the secret."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from api.app import create_app
from api.tokens import hash_token, new_token
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from schema.tables import deliveries, integrations, members, operator_tokens
from tests.conftest import TEST_SECRET_KEY
from tests.receivers import Receiver
from tests.seed import Seeded, seed_workspace

PATH = "/api/v1/integrations/webhook"
ZAPIER_URL = "https://hooks.zapier.com/hooks/catch/123456/abcdef/"
# Port 9 (discard) on loopback: nothing listens, and nothing here connects anyway.
HOOK_URL = "http://127.0.0.1:9/hook"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_member(engine: Engine, workspace_id: str, role: str) -> str:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(members).values(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                name=f"A {role}",
                role=role,
                token_hash=hash_token(token),
            )
        )
    return token


def stored_secrets(
    engine: Engine, workspace_id: str
) -> tuple[str | None, str | None, datetime | None]:
    box = SecretBox(TEST_SECRET_KEY)
    with engine.connect() as connection:
        row = connection.execute(
            select(integrations).where(integrations.c.workspace_id == workspace_id)
        ).one()
    current = box.decrypt(row.secret_encrypted) if row.secret_encrypted is not None else None
    previous = (
        box.decrypt(row.previous_secret_encrypted)
        if row.previous_secret_encrypted is not None
        else None
    )
    return current, previous, row.previous_secret_valid_until


def add_delivery(engine: Engine, workspace_id: str, status: str) -> str:
    delivery_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(deliveries).values(
                id=delivery_id,
                workspace_id=workspace_id,
                event="solhelps.insight.handoff",
                theme_id="permissions",
                body=b"{}",
                status=status,
                provider="generic",
                url_redacted="http://127.0.0.1/…",
                max_automatic_attempts=4,
            )
        )
    return delivery_id


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(select(deliveries.c.id, deliveries.c.status)).all()
    return {str(row.id): row.status for row in rows}


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    """A hosts file naming hooks.zapier.com, so saving a Zapier URL sends no DNS query."""
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 hooks.zapier.com\n")
    return path


@pytest.fixture
def app_settings(settings: Settings, hosts_file: Path) -> Settings:
    return dataclasses.replace(settings, resolver_hosts_path=hosts_file)


@pytest.fixture
def client(engine: Engine, app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url=HOOK_URL)


@pytest.fixture
def bare(engine: Engine) -> Seeded:
    """A workspace with no integration saved."""
    return seed_workspace(engine, workspace_id="initech")


def test_get_before_save_is_not_configured(client: TestClient, bare: Seeded) -> None:
    response = client.get(PATH, headers=bearer(bare.owner_token))

    assert 404 == response.status_code
    error = response.json()["error"]
    assert "webhook_not_configured" == error["code"]
    assert error["message"].startswith("Webhook handoff is not configured")


def test_get_answers_configuration(client: TestClient, seeded: Seeded) -> None:
    response = client.get(PATH, headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    body = response.json()
    assert {
        "provider",
        "url",
        "enabled",
        "signingSecret",
        "hasSecret",
        "disabledReason",
        "disabledAt",
        "updatedAt",
        "warnings",
    } == set(body)
    assert "http://127.0.0.1:9/…" == body["url"]
    assert body["enabled"] is True
    assert body["signingSecret"] is None
    assert body["hasSecret"] is False
    assert [] == body["warnings"]
    assert body["updatedAt"].endswith("Z")


def test_member_role_is_not_permitted(client: TestClient, seeded: Seeded) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(
            method,
            PATH,
            headers=bearer(seeded.member_token),
            json={"provider": "generic", "url": "not checked before the role"},
        )
        assert 403 == response.status_code, method
        assert "not_permitted" == response.json()["error"]["code"]
        assert response.json()["error"]["message"].startswith("not permitted")
    response = client.post(f"{PATH}/secret/rotate", headers=bearer(seeded.member_token))
    assert 403 == response.status_code


def test_admin_role_is_permitted(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    token = add_member(engine, seeded.workspace_id, "admin")

    response = client.get(PATH, headers=bearer(token))

    assert 200 == response.status_code


def test_operator_token_is_not_permitted(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    token = new_token()
    with engine.begin() as connection:
        connection.execute(
            insert(operator_tokens).values(id=str(uuid.uuid4()), token_hash=hash_token(token))
        )

    response = client.get(PATH, headers=bearer(token))

    assert 403 == response.status_code
    assert "not_permitted" == response.json()["error"]["code"]


def test_put_creates_integration(
    client: TestClient, engine: Engine, bare: Seeded, receiver: Receiver
) -> None:
    response = client.put(
        PATH, headers=bearer(bare.owner_token), json={"provider": "generic", "url": receiver.url}
    )

    assert 200 == response.status_code
    assert receiver.url.replace("/hook", "/…") == response.json()["url"]
    assert response.json()["enabled"] is True
    assert 200 == client.get(PATH, headers=bearer(bare.owner_token)).status_code
    assert [] == receiver.requests


def test_put_strips_pasted_secret(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={
            "provider": "generic",
            "url": HOOK_URL,
            "signingSecret": f"  {secret}\n",
        },
    )

    assert 200 == response.status_code
    assert "whsec_…LaSw" == response.json()["signingSecret"]
    assert response.json()["hasSecret"] is True
    assert secret == stored_secrets(engine, seeded.workspace_id)[0]


def test_put_without_secret_keeps_it(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = bearer(seeded.owner_token)
    url = HOOK_URL
    client.put(
        PATH,
        headers=headers,
        json={"provider": "generic", "url": url, "signingSecret": "s3cret-value-1234"},
    )

    response = client.put(PATH, headers=headers, json={"provider": "zapier", "url": url})

    assert 200 == response.status_code
    assert "whsec_…1234" == response.json()["signingSecret"]
    assert "s3cret-value-1234" == stored_secrets(engine, seeded.workspace_id)[0]


def test_put_null_secret_removes_it(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = bearer(seeded.owner_token)
    url = HOOK_URL
    client.put(
        PATH,
        headers=headers,
        json={"provider": "generic", "url": url, "signingSecret": "s3cret-value-1234"},
    )

    response = client.put(
        PATH, headers=headers, json={"provider": "generic", "url": url, "signingSecret": None}
    )

    assert response.json()["signingSecret"] is None
    assert response.json()["hasSecret"] is False
    assert (None, None, None) == stored_secrets(engine, seeded.workspace_id)


def test_put_blank_secret_means_none(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": HOOK_URL, "signingSecret": "  \n"},
    )

    assert response.json()["hasSecret"] is False
    assert stored_secrets(engine, seeded.workspace_id)[0] is None


def test_short_secret_is_masked_entirely(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": HOOK_URL, "signingSecret": "12345678"},
    )

    assert "••••" == response.json()["signingSecret"]
    assert "••••" == client.get(PATH, headers=bearer(seeded.owner_token)).json()["signingSecret"]


def test_generated_secret_is_shown_once(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    headers = bearer(seeded.owner_token)

    response = client.put(
        PATH,
        headers=headers,
        json={"provider": "generic", "url": HOOK_URL, "generateSecret": True},
    )

    secret = response.json()["signingSecret"]
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    assert secret == stored_secrets(engine, seeded.workspace_id)[0]
    assert f"whsec_…{secret[-4:]}" == client.get(PATH, headers=headers).json()["signingSecret"]


def test_generate_with_secret_is_invalid(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={
            "provider": "generic",
            "url": HOOK_URL,
            "generateSecret": True,
            "signingSecret": "mine-and-long-enough",
        },
    )

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("generateSecret")


def test_zapier_url_elsewhere_saves_with_warning(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "zapier", "url": HOOK_URL},
    )

    assert 200 == response.status_code
    assert 1 == len(response.json()["warnings"])
    assert "hooks.zapier.com/hooks/catch/" in response.json()["warnings"][0]


def test_zapier_catch_url_has_no_warning(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH, headers=bearer(seeded.owner_token), json={"provider": "zapier", "url": ZAPIER_URL}
    )

    assert 200 == response.status_code
    assert [] == response.json()["warnings"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "jira", "url": HOOK_URL}, "provider"),
        ({"provider": "generic"}, "url"),
        ({"provider": "generic", "url": HOOK_URL + "/" + "a" * 2048}, "url"),
        ({"provider": "generic", "url": HOOK_URL, "enabled": "yes"}, "enabled"),
        ({"provider": "generic", "url": HOOK_URL, "colour": "red"}, "colour"),
    ],
)
def test_invalid_body_names_field(
    client: TestClient, seeded: Seeded, body: dict[str, object], field: str
) -> None:
    response = client.put(PATH, headers=bearer(seeded.owner_token), json=body)

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith(f"{field}:")


def test_malformed_json_is_invalid(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers={**bearer(seeded.owner_token), "Content-Type": "application/json"},
        content=b'{"provider": ',
    )

    assert 422 == response.status_code
    assert "validation_failed" == response.json()["error"]["code"]
    assert response.json()["error"]["message"].startswith("body: invalid JSON")


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest/meta-data/", HOOK_URL])
def test_private_destination_is_not_allowed(
    engine: Engine, settings: Settings, seeded: Seeded, url: str
) -> None:
    # The egress check only resolves; nothing connects to these addresses.
    strict = dataclasses.replace(settings, allow_private_targets=False)
    with TestClient(create_app(strict, engine)) as client:
        response = client.put(
            PATH, headers=bearer(seeded.owner_token), json={"provider": "generic", "url": url}
        )

    assert 422 == response.status_code
    assert "destination_not_allowed" == response.json()["error"]["code"]
    assert "169.254" not in response.json()["error"]["message"]


def test_plain_http_needs_private_targets_allowed(
    engine: Engine, settings: Settings, seeded: Seeded, receiver: Receiver
) -> None:
    strict = dataclasses.replace(settings, allow_private_targets=False)
    with TestClient(create_app(strict, engine)) as client:
        response = client.put(
            PATH,
            headers=bearer(seeded.owner_token),
            json={"provider": "generic", "url": receiver.url},
        )

    assert 422 == response.status_code
    assert "destination_not_allowed" == response.json()["error"]["code"]
    assert [] == receiver.requests


def test_unknown_host_is_unresolvable(client: TestClient, seeded: Seeded) -> None:
    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": "https://receiver.invalid/hook"},
    )

    assert 422 == response.status_code
    assert "destination_unresolvable" == response.json()["error"]["code"]


def test_disable_cancels_open_deliveries(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    ids = {
        status: add_delivery(engine, seeded.workspace_id, status)
        for status in ("pending", "queued", "retrying", "sending", "delivered", "failed")
    }

    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": HOOK_URL, "enabled": False},
    )

    assert 200 == response.status_code
    assert response.json()["enabled"] is False
    assert response.json()["disabledReason"] is not None
    assert response.json()["disabledAt"] is not None
    after = statuses(engine)
    for status in ("pending", "queued", "retrying"):
        assert "cancelled" == after[ids[status]], status
    for status in ("sending", "delivered", "failed"):
        assert status == after[ids[status]], status


def test_enable_clears_disabled_reason(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(integrations).values(
                enabled=False,
                disabled_reason="endpoint answered 410 Gone",
                disabled_at=datetime.now(UTC),
            )
        )

    response = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": HOOK_URL, "enabled": True},
    )

    assert response.json()["enabled"] is True
    assert response.json()["disabledReason"] is None
    assert response.json()["disabledAt"] is None


def test_delete_cancels_and_removes(client: TestClient, engine: Engine, seeded: Seeded) -> None:
    queued = add_delivery(engine, seeded.workspace_id, "queued")
    delivered = add_delivery(engine, seeded.workspace_id, "delivered")
    headers = bearer(seeded.owner_token)

    response = client.delete(PATH, headers=headers)

    assert 204 == response.status_code
    assert b"" == response.content
    assert "cancelled" == statuses(engine)[queued]
    assert "delivered" == statuses(engine)[delivered]
    assert 404 == client.get(PATH, headers=headers).status_code
    assert 404 == client.delete(PATH, headers=headers).status_code


def test_rotate_keeps_previous_for_a_day(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    headers = bearer(seeded.owner_token)
    client.put(
        PATH,
        headers=headers,
        json={
            "provider": "generic",
            "url": HOOK_URL,
            "signingSecret": "whsec_b2xkLXNlY3JldC12YWx1ZQ==",
        },
    )
    before = datetime.now(UTC)

    response = client.post(f"{PATH}/secret/rotate", headers=headers)

    assert 200 == response.status_code
    body = response.json()
    assert {"signingSecret", "previousValidUntil"} == set(body)
    assert body["signingSecret"].startswith("whsec_")
    current, previous, valid_until = stored_secrets(engine, seeded.workspace_id)
    assert body["signingSecret"] == current
    assert "whsec_b2xkLXNlY3JldC12YWx1ZQ==" == previous
    assert valid_until is not None
    assert (
        timedelta(hours=24) - timedelta(seconds=5)
        < valid_until - before
        < timedelta(hours=24, seconds=5)
    )
    answered = datetime.fromisoformat(body["previousValidUntil"].replace("Z", "+00:00"))
    assert abs((answered - valid_until).total_seconds()) < 0.001
    assert f"whsec_…{current[-4:]}" == client.get(PATH, headers=headers).json()["signingSecret"]


def test_rotate_without_secret_creates_one(
    client: TestClient, engine: Engine, seeded: Seeded
) -> None:
    response = client.post(f"{PATH}/secret/rotate", headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    assert response.json()["previousValidUntil"] is None
    current, previous, _ = stored_secrets(engine, seeded.workspace_id)
    assert response.json()["signingSecret"] == current
    assert previous is None


def test_rotate_before_save_is_not_configured(client: TestClient, bare: Seeded) -> None:
    response = client.post(f"{PATH}/secret/rotate", headers=bearer(bare.owner_token))

    assert 404 == response.status_code
    assert "webhook_not_configured" == response.json()["error"]["code"]


def test_saved_url_and_secret_are_never_logged(client: TestClient, seeded: Seeded) -> None:
    with structlog.testing.capture_logs() as events:
        response = client.put(
            PATH,
            headers=bearer(seeded.owner_token),
            json={
                "provider": "zapier",
                "url": ZAPIER_URL,
                "signingSecret": "whsec_c2VjcmV0LWluLWxvZ3M=",
            },
        )
        client.post(f"{PATH}/secret/rotate", headers=bearer(seeded.owner_token))

    assert 200 == response.status_code
    assert any(event["event"] == "integration_saved" for event in events)
    logged = repr(events)
    assert "123456/abcdef" not in logged
    assert "c2VjcmV0LWluLWxvZ3M" not in logged
    assert "whsec_" not in logged
