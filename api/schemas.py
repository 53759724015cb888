"""Pydantic models of the API's request and response bodies, as /openapi.json documents them."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from api.errors import ValidationFailed

MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 1024

# Timestamps are UTC with milliseconds and `Z`, such as 2026-02-15T12:34:56.000Z.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

DeliveryStatus = Literal[
    "pending", "queued", "sending", "retrying", "delivered", "failed", "cancelled"
]
TestOutcome = Literal[
    "delivered",
    "endpoint_error",
    "timeout",
    "connection_error",
    "dns_error",
    "tls_error",
    "redirect",
    "blocked",
    "pending",
]


class ErrorDetail(BaseModel):
    """The code and message of an error."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class IntegrationUpdate(BaseModel):
    """The body of `PUT /api/v1/integrations/webhook`.

    Leaving out `signingSecret` keeps the stored secret, `null` removes it, and a string is
    stored without its surrounding whitespace (empty means no secret). `generateSecret`
    makes the server generate one and return it once.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: Literal["zapier", "generic"]
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    signingSecret: str | None = Field(default=None, max_length=MAX_SECRET_LENGTH)
    generateSecret: bool = False
    enabled: bool | None = Field(
        default=None, description="Omitted keeps the current value; a new integration is enabled."
    )


class Integration(BaseModel):
    """The saved integration; `signingSecret` is masked except in the response that generated it."""

    provider: Literal["zapier", "generic"]
    url: str
    enabled: bool
    signingSecret: str | None
    hasSecret: bool
    disabledReason: str | None
    disabledAt: Timestamp | None
    updatedAt: Timestamp
    warnings: list[str]


class SecretRotated(BaseModel):
    """A new signing secret, shown only in this response, and the previous secret's expiry."""

    signingSecret: str
    previousValidUntil: Timestamp | None


class WebhookTestResult(BaseModel):
    """The outcome of the test webhook's single attempt, or `pending` when none finished in time."""

    deliveryId: str
    outcome: TestOutcome
    statusCode: int | None
    durationMs: int | None
    message: str


class HandoffRange(BaseModel):
    """The range of a handoff: ISO 8601 dates or date-times, required unless `preset` is set."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    preset: Literal["7d", "30d", "90d"] | None = None


class HandoffRequest(BaseModel):
    """The body of `POST /api/v1/insights/themes/{themeId}/handoff`; `sources` omitted means all."""

    assistantId: str
    range: HandoffRange
    sources: list[str] | None = None


class HandoffAccepted(BaseModel):
    """A handoff committed to the outbox."""

    deliveryId: str
    status: Literal["pending"]


class RedeliveryAccepted(BaseModel):
    """A delivery queued for one more attempt."""

    deliveryId: str
    status: Literal["queued"]


class Attempt(BaseModel):
    """One attempt of a delivery; `outcome` is null while it is in flight."""

    number: int
    trigger: Literal["scheduled", "manual", "recovered"]
    startedAt: Timestamp
    durationMs: int | None
    statusCode: int | None
    outcome: Literal["delivered", "will_retry", "failed", "interrupted"] | None
    errorClass: str | None
    errorMessage: str | None
    requestHeaders: dict[str, Any] | None
    bodySize: int | None
    responseHeaders: dict[str, Any] | None
    responseBodyExcerpt: str | None
    nextAttemptAt: Timestamp | None


class DeliverySummary(BaseModel):
    """A delivery as the history list shows it; `url` is redacted."""

    deliveryId: str
    event: str
    themeId: str | None
    status: DeliveryStatus
    provider: str
    url: str
    createdAt: Timestamp
    deliveredAt: Timestamp | None
    nextAttemptAt: Timestamp | None
    attemptCount: int
    failureReason: str | None


class Delivery(DeliverySummary):
    """A delivery with all its attempts, oldest first."""

    attempts: list[Attempt]


class DeliveryPage(BaseModel):
    """One page of history, newest first; `nextCursor` is null on the last page."""

    items: list[DeliverySummary]
    nextCursor: str | None


class Health(BaseModel):
    """The liveness response."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """The readiness response: each dependency checked and found reachable."""

    status: Literal["ok"]
    checks: dict[str, str]


# Bodies that handlers parse themselves, after authentication and permission checks, so
# FastAPI must not validate them first; they are still published in the OpenAPI document.
DOCUMENTED_REQUEST_BODIES: tuple[type[BaseModel], ...] = (IntegrationUpdate, HandoffRequest)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """Return the `openapi_extra` that documents `model` as a route's JSON request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def documented_body_schemas() -> dict[str, Any]:
    """Return the JSON schemas of the parsed-by-hand bodies, keyed by their component names."""
    _, top = models_json_schema(
        [(model, "validation") for model in DOCUMENTED_REQUEST_BODIES],
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = top.get("$defs", {})
    return definitions


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return the `responses` entry that documents these error statuses with the error body."""
    return {status: {"model": ErrorResponse} for status in statuses}


async def read_body(request: Request) -> bytes:
    """Return the raw request body; handlers parse it after their permission checks."""
    return await request.body()


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object.

    Raises:
        ValidationFailed: the body is empty, not JSON, or not an object.
    """
    if not body.strip():
        raise ValidationFailed("body", "missing; send a JSON object")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationFailed("body", f"invalid JSON ({_json_problem(error)})") from None
    if not isinstance(value, dict):
        raise ValidationFailed("body", "must be a JSON object")
    return value


def _json_problem(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return "not UTF-8"
