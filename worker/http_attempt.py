"""One webhook POST and the classification of how it ended."""

from __future__ import annotations

import codecs
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from worker.errors import DeliveryError, DestinationNotAllowed, DestinationUnresolvable
from worker.retry_policy import AttemptKind, parse_retry_after
from worker.transport import ConnectFailed, attempt_deadline

BODY_EXCERPT_BYTES = 16 * 1024

# Statuses a receiver sends when it may accept the same event later.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})

_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True)
class AttemptResult:
    """Classified result of one attempt; no field contains a secret or a URL path."""

    kind: AttemptKind
    status_code: int | None
    # timeout | connection_error | dns_error | tls_error | http_error | redirect | blocked | None
    error_class: str | None
    error_message: str | None
    response_headers: dict[str, str]
    response_body_excerpt: str | None  # the first 16 KiB of the body, decoded as UTF-8
    duration_ms: int
    retry_after_s: float | None
    location: str | None  # the Location header of a 3xx response


def _causes(error: BaseException) -> Iterator[BaseException]:
    """Yield `error` and every exception behind it, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, ConnectFailed):
            current = current.reason
        else:
            current = current.__cause__ or current.__context__


def _find(error: BaseException, kind: type[_E]) -> _E | None:
    for cause in _causes(error):
        if isinstance(cause, kind):
            return cause
    return None


def _classify_error(error: Exception, timeout_s: float) -> tuple[AttemptKind, str, str]:
    """Return the kind, error class and message of an attempt that got no usable response.

    The messages are built here, never copied from httpx, whose texts can embed the URL.
    """
    not_allowed = _find(error, DestinationNotAllowed)
    if not_allowed is not None:
        # Its messages never name the resolved address, so they are safe to record.
        return AttemptKind.BLOCKED, "blocked", not_allowed.message
    if isinstance(error, httpx.InvalidURL):
        return AttemptKind.BLOCKED, "blocked", "destination not allowed: the URL is invalid"
    unresolvable = _find(error, DestinationUnresolvable)
    if unresolvable is not None:
        return AttemptKind.RETRYABLE, "dns_error", unresolvable.message
    if isinstance(error, httpx.TimeoutException):
        return AttemptKind.RETRYABLE, "timeout", f"request timed out after {float(timeout_s)} s"
    tls_error = _find(error, ssl.SSLError)
    if tls_error is not None:
        reason = tls_error.reason or type(tls_error).__name__
        return AttemptKind.RETRYABLE, "tls_error", f"TLS failed: {reason}"
    if _find(error, ConnectionRefusedError) is not None:
        return AttemptKind.RETRYABLE, "connection_error", "connection refused"
    if _find(error, ConnectionResetError) is not None:
        return AttemptKind.RETRYABLE, "connection_error", "connection reset"
    if isinstance(error, httpx.RemoteProtocolError):
        return (
            AttemptKind.RETRYABLE,
            "connection_error",
            "connection closed without a valid HTTP response",
        )
    if isinstance(error, httpx.UnsupportedProtocol):
        return AttemptKind.BLOCKED, "blocked", "destination not allowed: unsupported URL scheme"
    os_error = _find(error, OSError)
    if os_error is not None and os_error.strerror:
        return AttemptKind.RETRYABLE, "connection_error", f"connection failed: {os_error.strerror}"
    return AttemptKind.RETRYABLE, "connection_error", "connection failed"


def _classify_status(status: int) -> tuple[AttemptKind, str | None]:
    if 200 <= status < 300:
        return AttemptKind.DELIVERED, None
    if 300 <= status < 400:
        return AttemptKind.REDIRECT, "redirect"
    if status == 410:
        return AttemptKind.GONE, "http_error"
    if status in _RETRYABLE_STATUSES or 500 <= status < 600:
        return AttemptKind.RETRYABLE, "http_error"
    if 400 <= status < 500:
        return AttemptKind.REJECTED, "http_error"
    # 1xx cannot reach here (httpx reads past them) and >= 600 is outside HTTP: retry it.
    return AttemptKind.RETRYABLE, "http_error"


def _status_message(status: int, kind: AttemptKind) -> str | None:
    if kind is AttemptKind.DELIVERED:
        return None
    if kind is AttemptKind.REDIRECT:
        return f"Webhook endpoint returned {status}: redirect not followed"
    return f"Webhook endpoint returned {status}"


def _read_excerpt(response: httpx.Response) -> str:
    """Read at most `BODY_EXCERPT_BYTES` of the body and decode it as UTF-8."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_EXCERPT_BYTES:
            break
    truncated = size >= BODY_EXCERPT_BYTES
    data = b"".join(chunks)[:BODY_EXCERPT_BYTES]
    # A cut can fall inside a multi-byte character; the incremental decoder leaves that
    # partial tail out instead of turning it into U+FFFD.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Postgres text cannot hold NUL, so a receiver's NUL byte would make the record fail.
    return decoder.decode(data, final=not truncated).replace("\x00", "\ufffd")


def send_attempt(
    client: httpx.Client,
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> AttemptResult:
    """POST `body` to `url` once and classify the outcome.

    Everything from connecting to the last byte read ends within `timeout_s`. Redirects
    are recorded, never followed, and at most 16 KiB of the response body is read.

    Args:
        client: a client from `worker.transport.make_http_client`.
        url: the webhook URL.
        body: the request body bytes exactly as stored.
        headers: the request headers, signatures included.
        timeout_s: the total time the attempt may take, in seconds.

    Returns:
        The classified result. Nothing the receiver does (an error status, a hang, a reset,
        a refused or blocked connection, a DNS or TLS failure) makes this function raise.
    """
    started = time.monotonic()
    status_code: int | None = None
    response_headers: dict[str, str] = {}
    location: str | None = None
    retry_after_s: float | None = None

    try:
        with (
            attempt_deadline(timeout_s),
            client.stream(
                "POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout_s)
            ) as response,
        ):
            status_code = response.status_code
            response_headers = dict(response.headers.items())
            kind, error_class = _classify_status(status_code)
            if kind is AttemptKind.REDIRECT:
                location = response.headers.get("location")
            if kind is AttemptKind.RETRYABLE:
                retry_after_s = parse_retry_after(
                    response.headers.get("retry-after"), datetime.now(UTC)
                )
            excerpt = _read_excerpt(response)
    except (httpx.HTTPError, httpx.InvalidURL, DeliveryError) as error:
        # A failure while reading the body (a receiver that trickles it past the deadline)
        # keeps the status it sent, but the attempt still failed.
        kind, error_class, message = _classify_error(error, timeout_s)
        return AttemptResult(
            kind=kind,
            status_code=status_code,
            error_class=error_class,
            error_message=message,
            response_headers=response_headers,
            response_body_excerpt=None,
            duration_ms=_elapsed_ms(started),
            retry_after_s=None,
            location=location,
        )

    return AttemptResult(
        kind=kind,
        status_code=status_code,
        error_class=error_class,
        error_message=_status_message(status_code, kind),
        response_headers=response_headers,
        response_body_excerpt=excerpt,
        duration_ms=_elapsed_ms(started),
        retry_after_s=retry_after_s,
        location=location,
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
