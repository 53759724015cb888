"""Signing secrets: Standard Webhooks through the pipeline, secret rotation, key rotation."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from api.app import create_app
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from schema.tables import deliveries, integrations
from tests.conftest import TEST_SECRET_KEY
from tests.integration.harness import Pipeline
from tests.receivers import ReceivedRequest, Receiver
from tests.seed import Seeded, enqueue_handoffs, seed_workspace
from worker.delivery import DeliveryWorker
from worker.resolver import HostsFileResolver
from worker.signing import generate_secret
from worker.transport import make_http_client

PATH = "/api/v1/integrations/webhook"
OLD_KEY = "old-handoff-secret-key-0123456789-abcdefgh"
UNKNOWN_KEY = "unknown-handoff-secret-key-0123456789-abcd"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def independent_v1(secret: str, request: ReceivedRequest) -> str:
    message = request.headers["x-sol-timestamp"].encode() + b"." + request.body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_standard(secret: str, request: ReceivedRequest) -> Any:
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


@pytest.fixture
def pipeline(engine: Engine, settings: Settings, redis_broker_url: str) -> Iterator[Pipeline]:
    running = Pipeline(settings, engine, redis_broker_url).start()
    yield running
    running.close()


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def send_handoff(client: TestClient, seeded: Seeded) -> str:
    response = client.post(
        f"/api/v1/insights/themes/{seeded.theme_id}/handoff",
        headers=bearer(seeded.member_token),
        json={"assistantId": seeded.assistant_id, "range": {"preset": "30d"}},
    )
    assert 202 == response.status_code, response.text
    return str(response.json()["deliveryId"])


def test_standard_webhooks_verifies_both_secrets_during_rotation(
    engine: Engine, client: TestClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    old_secret = generate_secret()
    seeded = seed_workspace(engine, url=receiver.url, secret=old_secret, secret_key=TEST_SECRET_KEY)

    rotated = client.post(f"{PATH}/secret/rotate", headers=bearer(seeded.owner_token)).json()
    new_secret = rotated["signingSecret"]
    shown = client.get(PATH, headers=bearer(seeded.owner_token)).json()["signingSecret"]
    delivery_id = send_handoff(client, seeded)
    pipeline.wait_for_status(delivery_id, {"delivered"})
    request = receiver.wait_for(1)[0]

    assert new_secret != old_secret
    assert "whsec_…" + new_secret[-4:] == shown
    valid_until = datetime.fromisoformat(rotated["previousValidUntil"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < valid_until - datetime.now(UTC) <= timedelta(hours=24)
    assert delivery_id == request.headers["webhook-id"] == request.headers["x-sol-delivery"]
    assert request.headers["x-sol-timestamp"] == request.headers["webhook-timestamp"]
    assert 2 == len(request.headers["webhook-signature"].split(" "))
    assert verify_standard(new_secret, request)["deliveryId"] == delivery_id
    assert verify_standard(old_secret, request)["deliveryId"] == delivery_id
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify_standard(generate_secret(), request)
    expected = {independent_v1(new_secret, request), independent_v1(old_secret, request)}
    assert expected == set(request.headers["x-sol-signature"].split(" "))


def test_previous_secret_stops_signing_after_grace(
    engine: Engine, client: TestClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    old_secret = generate_secret()
    seeded = seed_workspace(engine, url=receiver.url, secret=old_secret, secret_key=TEST_SECRET_KEY)
    new_secret = client.post(f"{PATH}/secret/rotate", headers=bearer(seeded.owner_token)).json()[
        "signingSecret"
    ]
    with engine.begin() as connection:
        connection.execute(
            update(integrations).values(
                previous_secret_valid_until=datetime.now(UTC) - timedelta(seconds=1)
            )
        )

    delivery_id = send_handoff(client, seeded)
    pipeline.wait_for_status(delivery_id, {"delivered"})
    request = receiver.wait_for(1)[0]

    assert independent_v1(new_secret, request) == request.headers["x-sol-signature"]
    assert verify_standard(new_secret, request)["deliveryId"] == delivery_id
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify_standard(old_secret, request)


def test_blank_secret_sends_no_signature(
    engine: Engine, client: TestClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    seeded = seed_workspace(engine, workspace_id="initech")
    saved = client.put(
        PATH,
        headers=bearer(seeded.owner_token),
        json={"provider": "generic", "url": receiver.url, "signingSecret": " \n\t"},
    )
    delivery_id = send_handoff(client, seeded)
    pipeline.wait_for_status(delivery_id, {"delivered"})
    request = receiver.wait_for(1)[0]

    assert 200 == saved.status_code
    assert saved.json()["hasSecret"] is False
    signature_headers = {
        name for name in request.headers if "signature" in name or name.startswith("webhook-")
    }
    assert set() == signature_headers


# Rotation of HANDOFF_SECRET_KEY.


@pytest.fixture
def old_key_secrets(engine: Engine) -> tuple[Seeded, str, str]:
    """Workspace acme with a current and a previous signing secret, both under OLD_KEY."""
    current, previous = generate_secret(), generate_secret()
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    old_box = SecretBox(OLD_KEY)
    with engine.begin() as connection:
        connection.execute(
            update(integrations).values(
                secret_encrypted=old_box.encrypt(current),
                previous_secret_encrypted=old_box.encrypt(previous),
                previous_secret_valid_until=datetime.now(UTC) + timedelta(hours=1),
            )
        )
    return seeded, current, previous


def run_reencrypt(
    database_url: str, key: str, previous: str | None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": database_url,
        "HANDOFF_SECRET_KEY": key,
        "HANDOFF_LOG_FORMAT": "json",
    }
    if previous is not None:
        env["HANDOFF_SECRET_KEY_PREVIOUS"] = previous
    return subprocess.run(
        [sys.executable, "-m", "handoff.cli", "secrets", "reencrypt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_ciphertexts(engine: Engine) -> tuple[bytes, bytes]:
    with engine.connect() as connection:
        row = connection.execute(
            select(integrations.c.secret_encrypted, integrations.c.previous_secret_encrypted).where(
                integrations.c.workspace_id == "acme"
            )
        ).one()
    return bytes(row.secret_encrypted), bytes(row.previous_secret_encrypted)


def test_previous_key_reads_secret_in_api_and_worker(
    engine: Engine,
    settings: Settings,
    old_key_secrets: tuple[Seeded, str, str],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    seeded, current, previous = old_key_secrets
    rotated_settings = dataclasses.replace(settings, secret_key_previous=(OLD_KEY,))
    with engine.begin() as connection:
        connection.execute(update(integrations).values(url=receiver.url))
    [delivery_id] = enqueue_handoffs(engine, seeded, rotated_settings, actor_id=seeded.owner_id)
    with engine.begin() as connection:
        connection.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="queued")
        )

    with TestClient(create_app(rotated_settings, engine)) as client:
        shown = client.get(PATH, headers=bearer(seeded.owner_token))
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with make_http_client(resolver=HostsFileResolver(hosts), allow_private=True) as http:
        box = SecretBox.from_settings(rotated_settings)
        DeliveryWorker(engine, rotated_settings, http, box).deliver(delivery_id)
    request = receiver.wait_for(1)[0]

    assert 200 == shown.status_code
    assert "whsec_…" + current[-4:] == shown.json()["signingSecret"]
    assert verify_standard(current, request)["deliveryId"] == delivery_id
    assert verify_standard(previous, request)["deliveryId"] == delivery_id


def test_reencrypt_moves_every_secret_to_current_key(
    database_url: str, engine: Engine, old_key_secrets: tuple[Seeded, str, str]
) -> None:
    _, current, previous = old_key_secrets
    seed_workspace(engine, workspace_id="initech", url="http://127.0.0.1:9/hook")

    completed = run_reencrypt(database_url, TEST_SECRET_KEY, f"{UNKNOWN_KEY},{OLD_KEY}")

    assert 0 == completed.returncode, completed.stderr
    assert (
        "re-encrypted 2 signing secrets of 2 integrations with the current HANDOFF_SECRET_KEY "
        "(2 were under a previous key)"
    ) == completed.stdout.strip().splitlines()[-1]
    new_box = SecretBox(TEST_SECRET_KEY)
    stored_current, stored_previous = stored_ciphertexts(engine)
    assert current == new_box.decrypt(stored_current)
    assert previous == new_box.decrypt(stored_previous)


def test_reencrypt_without_the_old_key_changes_nothing(
    database_url: str, engine: Engine, old_key_secrets: tuple[Seeded, str, str]
) -> None:
    # Workspaces are rewritten in id order: acme succeeds before zeta fails.
    seed_workspace(
        engine,
        workspace_id="zeta",
        url="http://127.0.0.1:9/hook",
        secret=generate_secret(),
        secret_key=UNKNOWN_KEY,
    )
    before = stored_ciphertexts(engine)

    completed = run_reencrypt(database_url, TEST_SECRET_KEY, OLD_KEY)

    assert 1 == completed.returncode
    assert 1 == len(completed.stderr.strip().splitlines())
    assert "workspace 'zeta'" in completed.stderr
    assert "HANDOFF_SECRET_KEY_PREVIOUS" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert before == stored_ciphertexts(engine)


def test_reencrypt_rejects_short_previous_key(database_url: str) -> None:
    completed = run_reencrypt(database_url, TEST_SECRET_KEY, "too-short")

    assert 2 == completed.returncode
    assert completed.stderr.startswith("HANDOFF_SECRET_KEY_PREVIOUS: ")
    assert 1 == len(completed.stderr.strip().splitlines())


def test_worker_process_reads_secret_under_previous_key(
    database_url: str,
    redis_broker_url: str,
    engine: Engine,
    settings: Settings,
    old_key_secrets: tuple[Seeded, str, str],
    receiver: Receiver,
) -> None:
    seeded, current, _ = old_key_secrets
    with engine.begin() as connection:
        connection.execute(update(integrations).values(url=receiver.url))
    [delivery_id] = enqueue_handoffs(engine, seeded, settings, actor_id=seeded.owner_id)
    with engine.begin() as connection:
        connection.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="queued")
        )

    # The module `dramatiq worker.boot` imports, run as a worker process would.
    completed = subprocess.run(
        [sys.executable, "-c", f"from worker import boot; boot.deliver.fn({delivery_id!r})"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": database_url,
            "BROKER_URL": redis_broker_url,
            "HANDOFF_SECRET_KEY": TEST_SECRET_KEY,
            "HANDOFF_SECRET_KEY_PREVIOUS": OLD_KEY,
            "HANDOFF_ALLOW_PRIVATE_TARGETS": "true",
            "HANDOFF_LOG_FORMAT": "json",
            "HANDOFF_WORKER_METRICS_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    request = receiver.wait_for(1)[0]

    assert 0 == completed.returncode, completed.stderr
    assert verify_standard(current, request)["deliveryId"] == delivery_id
