"""API errors and the handlers that give every error the body `{"error": {"code", "message"}}`.

ApiError
 ├── Unauthenticated          401 unauthenticated: missing or unknown bearer token
 ├── Forbidden                403 not_permitted: role, scope or token kind lacks access
 ├── NotFound                 404 not_found: no such id in the caller's workspace
 ├── IntegrationMissing       404 webhook_not_configured: nothing saved to read or change
 ├── ValidationFailed         422 validation_failed: malformed JSON, a bad field or parameter
 ├── IdempotencyKeyReused     422 idempotency_key_reused: same key, different request
 ├── DestinationRejected      422 destination_not_allowed or destination_unresolvable
 └── RateLimited              429 rate_limited, with a Retry-After header

Errors of the product code (`outbox.errors.HandoffError`) carry their own code and status
and get the same body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from outbox.errors import HandoffError, WebhookNotConfigured

log = structlog.get_logger(__name__)

UNHANDLED_ERROR_EVENT = "api_unhandled_error"

# Codes for the statuses the framework itself returns (unknown route, wrong method, …).
_FRAMEWORK_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "not_permitted",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


class ApiError(Exception):
    """Root of the errors the API responds with; `code`, `status` and `message` form the body."""

    code = "error"
    status = 400

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class Unauthenticated(ApiError):
    """Raised when the bearer token is missing, malformed or unknown."""

    code = "unauthenticated"
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    """Raised when the caller's role, scope or kind of token does not allow the endpoint."""

    code = "not_permitted"
    status = 403


class NotFound(ApiError):
    """Raised when an id names nothing in the caller's workspace (another workspace's too)."""

    code = "not_found"
    status = 404


class IntegrationMissing(ApiError):
    """Raised when the integration is read, rotated or removed before it was ever saved."""

    code = "webhook_not_configured"
    status = 404

    def __init__(self) -> None:
        super().__init__(WebhookNotConfigured().message)


class ValidationFailed(ApiError):
    """Raised when the body or a parameter is invalid; the message starts with the field."""

    code = "validation_failed"
    status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class IdempotencyKeyReused(ApiError):
    """Raised when an Idempotency-Key comes back with a different request."""

    code = "idempotency_key_reused"
    status = 422

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key was already used with a different request in the last 24 hours; "
            "send a new key for a new request"
        )


class DestinationRejected(ApiError):
    """Raised when a webhook URL fails the egress check at save; `code` names the reason."""

    status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RateLimited(ApiError):
    """Raised when a workspace sent too many test webhooks; `retry_after_s` is seconds to wait."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Build the JSON response every error uses."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Turn pydantic's error list into one line that starts with the first field's path.

    The `body`, `query` or `path` prefix FastAPI adds is dropped, so the field reads as the
    client wrote it (`range.from`, `limit`).
    """
    if not errors:
        return "request: invalid"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ())]
    if location and location[0] in ("body", "query", "path", "header"):
        location = location[1:]
    field = ".".join(location) or "body"
    if first.get("type") == "json_invalid":
        return "body: invalid JSON; send a JSON object"
    message = str(first.get("msg", "invalid"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {message}{more}"


def validation_failed_from(error: ValidationError) -> ValidationFailed:
    """Translate a pydantic error raised by a handler's own validation."""
    message = describe_validation_errors(error.errors(include_url=False))
    field, _, problem = message.partition(": ")
    return ValidationFailed(field, problem)


async def _handle_api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message, error.headers)


async def _handle_handoff_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HandoffError)
    return error_response(error.status, error.code, error.message)


async def _handle_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _FRAMEWORK_CODES.get(error.status_code, "error")
    if error.status_code == 404:
        message = f"not found: no route {request.method} {request.url.path}"
    elif error.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = str(error.detail)
    return error_response(error.status_code, code, message, error.headers)


async def _handle_request_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(422, "validation_failed", describe_validation_errors(error.errors()))


async def _handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    # The message names no detail: exception text can carry URLs, SQL or secrets.
    log.error(
        UNHANDLED_ERROR_EVENT,
        method=request.method,
        path=request.url.path,
        error_type=type(error).__name__,
        exc_info=error,
    )
    return error_response(
        500, "internal_error", "internal error: the request failed on the server; see its logs"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error, framework errors too, the API's body.

    Starlette sends the `Exception` handler's response and then re-raises the exception,
    so the server also logs it.
    """
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(HandoffError, _handle_handoff_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_request_validation)
    app.add_exception_handler(Exception, _handle_unexpected)
