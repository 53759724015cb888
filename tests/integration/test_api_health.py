"""Liveness and readiness endpoints against the real Postgres and Redis."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from handoff.settings import Settings


def test_healthz_needs_no_token(engine: Engine, settings: Settings) -> None:
    with TestClient(create_app(settings, engine)) as client:
        response = client.get("/healthz")

    assert 200 == response.status_code
    assert {"status": "ok"} == response.json()


def test_readyz_checks_postgres_and_broker(engine: Engine, settings: Settings) -> None:
    with TestClient(create_app(settings, engine)) as client:
        response = client.get("/readyz")

    assert 200 == response.status_code
    assert {"status": "ok", "checks": {"postgres": "ok", "broker": "ok"}} == response.json()


def test_readyz_without_broker_is_unavailable(engine: Engine, settings: Settings) -> None:
    # Port 1 on loopback has no listener, so the PING fails at once.
    broken = dataclasses.replace(settings, broker_url="redis://:hunter2@127.0.0.1:1/0")
    with TestClient(create_app(broken, engine)) as client:
        response = client.get("/readyz")

    assert 503 == response.status_code
    error = response.json()["error"]
    assert "not_ready" == error["code"]
    assert error["message"].startswith("not ready: broker unavailable")
    assert "hunter2" not in response.text


def test_readyz_without_postgres_is_unavailable(engine: Engine, settings: Settings) -> None:
    missing = dataclasses.replace(
        settings, database_url="postgresql://postgres@127.0.0.1:1/postgres"
    )
    with TestClient(create_app(missing)) as client:
        response = client.get("/readyz")

    assert 503 == response.status_code
    assert "postgres unavailable" in response.json()["error"]["message"]
