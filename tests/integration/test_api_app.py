"""Application-wide behaviour: the OpenAPI document and the error body of every failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from handoff.settings import Settings
from tests.seed import Seeded, seed_workspace

ROUTES = {
    ("get", "/api/v1/integrations/webhook"),
    ("put", "/api/v1/integrations/webhook"),
    ("delete", "/api/v1/integrations/webhook"),
    ("post", "/api/v1/integrations/webhook/secret/rotate"),
    ("post", "/api/v1/integrations/webhook/test"),
    ("post", "/api/v1/insights/themes/{themeId}/handoff"),
    ("get", "/api/v1/deliveries"),
    ("get", "/api/v1/deliveries/{deliveryId}"),
    ("post", "/api/v1/deliveries/{deliveryId}/redeliver"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine, url="http://127.0.0.1:9/hook")


def assert_error_body(response: object, code: str) -> None:
    body = response.json()  # type: ignore[attr-defined]
    assert {"error"} == set(body)
    assert {"code", "message"} == set(body["error"])
    assert code == body["error"]["code"]
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_openapi_lists_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    listed = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert ROUTES <= listed


def test_openapi_documents_parsed_bodies(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    handoff = document["paths"]["/api/v1/insights/themes/{themeId}/handoff"]["post"]
    reference = handoff["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "#/components/schemas/HandoffRequest" == reference
    assert {"assistantId", "range", "sources"} == set(schemas["HandoffRequest"]["properties"])
    assert {"from", "to", "preset"} == set(schemas["HandoffRange"]["properties"])
    save = document["paths"]["/api/v1/integrations/webhook"]["put"]
    assert (
        "IntegrationUpdate" in save["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert "signingSecret" in schemas["IntegrationUpdate"]["properties"]
    errors = handoff["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert errors.endswith("/ErrorResponse")


def test_unknown_route_has_error_body(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")

    assert 404 == response.status_code
    assert_error_body(response, "not_found")


def test_wrong_method_has_error_body(client: TestClient) -> None:
    response = client.patch("/api/v1/integrations/webhook")

    assert 405 == response.status_code
    assert_error_body(response, "method_not_allowed")


@pytest.mark.parametrize(
    ("method", "path"),
    sorted(route for route in ROUTES if route[1].startswith("/api/")),
)
def test_every_workspace_route_needs_token(client: TestClient, method: str, path: str) -> None:
    url = path.replace("{themeId}", "permissions").replace(
        "{deliveryId}", "8d3c2b0e-0000-4000-8000-000000000000"
    )

    response = client.request(method, url)

    assert 401 == response.status_code
    assert_error_body(response, "unauthenticated")


def test_unexpected_error_hides_detail(engine: Engine, settings: Settings) -> None:
    app = create_app(settings, engine)

    def explode() -> None:
        raise RuntimeError("password=hunter2 leaked")

    app.add_api_route("/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode")

    assert 500 == response.status_code
    assert_error_body(response, "internal_error")
    assert "hunter2" not in response.text


def test_validation_error_of_framework_has_error_body(engine: Engine, settings: Settings) -> None:
    app = create_app(settings, engine)

    def typed(count: int) -> dict[str, int]:
        return {"count": count}

    app.add_api_route("/typed", typed)
    with TestClient(app) as client:
        response = client.get("/typed", params={"count": "many"})

    assert 422 == response.status_code
    assert_error_body(response, "validation_failed")
    assert response.json()["error"]["message"].startswith("count:")
