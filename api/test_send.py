"""Waiting for the test webhook's single attempt and describing its outcome to the admin."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from schema.tables import ATTEMPT_CHANNEL

POLL_INTERVAL_S = 0.1

_FINISHED_ATTEMPT = """
    SELECT a.status_code, a.duration_ms, a.outcome, a.error_class, a.error_message,
           a.response_headers, d.provider
    FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
    WHERE a.delivery_id = %s AND a.outcome IS NOT NULL
    ORDER BY a.number DESC
    LIMIT 1
"""

# Error classes whose name is also the test outcome the API reports.
_OUTCOME_OF_ERROR_CLASS = {
    "timeout": "timeout",
    "connection_error": "connection_error",
    "dns_error": "dns_error",
    "tls_error": "tls_error",
    "redirect": "redirect",
    "blocked": "blocked",
    "http_error": "endpoint_error",
}

_DEFAULT_MESSAGES = {
    "connection_error": "connection failed: the endpoint refused or dropped the connection",
    "dns_error": "DNS lookup failed: the webhook host did not resolve",
    "tls_error": "TLS handshake failed: check the endpoint's certificate",
    "blocked": "destination not allowed: the URL must be https and resolve only to public "
    "addresses",
}


@dataclass(frozen=True)
class WebhookTestResult:
    """The test send endpoint's response; `outcome` is `pending` when no attempt finished."""

    delivery_id: str
    outcome: str
    status_code: int | None
    duration_ms: int | None
    message: str

    def as_json(self) -> dict[str, Any]:
        """Return the result in the API layout."""
        return {
            "deliveryId": self.delivery_id,
            "outcome": self.outcome,
            "statusCode": self.status_code,
            "durationMs": self.duration_ms,
            "message": self.message,
        }


def wait_for_attempt(libpq_url: str, delivery_id: str, timeout_s: float) -> dict[str, Any] | None:
    """Block until the delivery has an attempt with an outcome, or `timeout_s` passes.

    The worker sends NOTIFY on the attempt channel with the delivery id once it records an
    attempt. The notification wakes this wait early, and a query every 100 ms catches an
    attempt whose notification was missed. The connection listens before the first query,
    so an attempt recorded in between still sends a notification that arrives here.

    Args:
        libpq_url: a `postgresql://` URL of the service's database.
        delivery_id: the test delivery to wait for.
        timeout_s: seconds to wait at most.

    Returns:
        The finished attempt's row (with the delivery's `provider`), or None on timeout.
    """
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(libpq_url, autocommit=True, row_factory=dict_row) as connection:
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ATTEMPT_CHANNEL)))
        while True:
            row = connection.execute(_FINISHED_ATTEMPT, (delivery_id,)).fetchone()
            if row is not None:
                return row
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Any notification, for this delivery or another, ends the pause early; the
            # query above then decides.
            for _ in connection.notifies(timeout=min(POLL_INTERVAL_S, remaining), stop_after=1):
                pass


def describe_attempt(delivery_id: str, attempt: dict[str, Any]) -> WebhookTestResult:
    """Turn a finished attempt into the outcome and message shown to the admin."""
    status_code: int | None = attempt["status_code"]
    error_class: str | None = attempt["error_class"]
    error_message: str | None = attempt["error_message"]

    if attempt["outcome"] == "delivered":
        outcome = "delivered"
        if attempt["provider"] == "zapier":
            message = f"accepted by Zapier: the hook returned {status_code}"
        else:
            message = f"your receiver is connected: it answered {status_code}"
    elif error_class is None and status_code is not None:
        outcome = "endpoint_error"
        message = f"Webhook endpoint returned {status_code}"
    else:
        # NOTE: an `interrupted` attempt (its worker died) has no outcome of its own in the
        # API's list, so it is reported as a connection error with the worker's message.
        outcome = _OUTCOME_OF_ERROR_CLASS.get(error_class or "", "connection_error")
        message = _message(outcome, status_code, error_message, attempt["response_headers"])
    return WebhookTestResult(
        delivery_id=delivery_id,
        outcome=outcome,
        status_code=status_code,
        duration_ms=attempt["duration_ms"],
        message=message,
    )


def _message(
    outcome: str,
    status_code: int | None,
    error_message: str | None,
    response_headers: dict[str, Any] | None,
) -> str:
    if outcome == "endpoint_error":
        return f"Webhook endpoint returned {status_code}"
    if outcome == "timeout":
        if error_message and error_message.startswith("request timed out"):
            return error_message
        return "request timed out: the receiver took too long; reduce its work or respond sooner"
    if outcome == "redirect":
        location = _header(response_headers, "location")
        moved = f"Webhook endpoint returned {status_code}: endpoint moved, update the URL"
        return f"{moved} (Location: {location})" if location else moved
    return error_message or _DEFAULT_MESSAGES.get(outcome, "the attempt failed")


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def pending_result(delivery_id: str, waited_s: float) -> WebhookTestResult:
    """Return the response for a test whose attempt did not finish within the wait."""
    return WebhookTestResult(
        delivery_id=delivery_id,
        outcome="pending",
        status_code=None,
        duration_ms=None,
        message=(
            f"the attempt is still running after {waited_s:g} s; see its outcome in the "
            f"delivery history at GET /api/v1/deliveries/{delivery_id}"
        ),
    )
