"""The request body limit middleware, driven in memory with a bare ASGI application."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from api.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware

LIMIT = 1024


class BodyEcho:
    """An ASGI app that reads the whole body and returns its length; it counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.fixture
def echo() -> BodyEcho:
    return BodyEcho()


@pytest.fixture
def client(echo: BodyEcho) -> TestClient:
    # Used without `with`, so no lifespan events reach the bare app.
    return TestClient(BodyLimitMiddleware(echo, max_body_bytes=LIMIT))


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


def assert_too_large(response: Any) -> None:
    assert 413 == response.status_code
    assert "application/json" == response.headers["content-type"]
    assert "close" == response.headers["connection"]
    error = response.json()["error"]
    assert "payload_too_large" == error["code"]
    assert error["message"].startswith(f"request body too large: the limit is {LIMIT} bytes")


def test_default_limit_is_64_kib() -> None:
    assert 65536 == MAX_BODY_BYTES


def test_body_at_limit_passes(client: TestClient) -> None:
    response = client.post("/", content=b"x" * LIMIT)
    assert 200 == response.status_code
    assert str(LIMIT) == response.text


def test_declared_length_over_limit_rejected_unread(client: TestClient, echo: BodyEcho) -> None:
    response = client.post("/", content=b"x" * (LIMIT + 1))
    assert_too_large(response)
    assert 0 == echo.calls


def test_chunked_body_over_limit_rejected(client: TestClient, echo: BodyEcho) -> None:
    response = client.post("/", content=chunks(LIMIT + 1))
    assert_too_large(response)
    assert 1 == echo.calls


def test_chunked_body_under_limit_passes(client: TestClient) -> None:
    response = client.post("/", content=chunks(LIMIT - 1))
    assert 200 == response.status_code
    assert str(LIMIT - 1) == response.text


def test_body_longer_than_declared_is_counted() -> None:
    # A lying Content-Length reaches the app only from a broken server, but the count holds.
    echo = BodyEcho()
    middleware = BodyLimitMiddleware(echo, max_body_bytes=LIMIT)
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", b"10")],
    }
    parts = [b"x" * 600, b"x" * 600]
    sent: list[Message] = []

    async def receive() -> Message:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))

    assert 413 == sent[0]["status"]
    assert "payload_too_large" == json.loads(sent[1]["body"])["error"]["code"]


def test_non_http_scope_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    asyncio.run(BodyLimitMiddleware(app)({"type": "lifespan"}, receive, send))
    assert ["lifespan"] == seen
