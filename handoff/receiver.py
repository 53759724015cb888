"""A local webhook receiver that verifies Sol Helps signatures and prints each event it gets."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

# Receivers accept a timestamp this far from their own clock, either way.
TIMESTAMP_TOLERANCE_S = 300
# Webhook bodies are at most 64 KiB; the margin leaves room for a larger future budget.
MAX_BODY_BYTES = 1024 * 1024
HOOK_PATH = "/hook"


@dataclass(frozen=True)
class ReceivedEvent:
    """One POST as the receiver judged it.

    Attributes:
        delivery_id: `deliveryId` of the body, or `X-Sol-Delivery` when the body is unreadable.
        event: `event` of the body, or `X-Sol-Event` when the body is unreadable.
        verified: whether the signature and timestamp were checked and valid.
        reason: "signature verified", or why the request was not verified.
        body: the raw request body.
    """

    delivery_id: str | None
    event: str | None
    verified: bool
    reason: str
    body: bytes

    def json(self) -> dict[str, object] | None:
        """Return the parsed body, or None when it is not a JSON object."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Compute the hex HMAC-SHA256 of `{timestamp}.{body}` keyed with the UTF-8 `secret`.

    This is the receiver's own implementation, kept apart from the sender's signing code so
    that the demo checks one against the other.
    """
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_signature(
    secrets: Iterable[str],
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now_s: float,
    tolerance_s: float = TIMESTAMP_TOLERANCE_S,
) -> str | None:
    """Check the `X-Sol-Timestamp` and `X-Sol-Signature` headers of one request.

    A request is valid when its timestamp is within `tolerance_s` of `now_s` and any of the
    space-separated `v1=` entries matches any of `secrets`.

    Returns:
        None when the request is valid, otherwise the reason it is not.
    """
    if timestamp_header is None:
        return "missing X-Sol-Timestamp header"
    timestamp = timestamp_header.strip()
    if not timestamp.isascii() or not timestamp.isdigit():
        return f"invalid X-Sol-Timestamp {timestamp[:20]!r}: not integer Unix seconds"
    if abs(now_s - int(timestamp)) > tolerance_s:
        return f"timestamp {timestamp} is more than {tolerance_s:g} s from this machine's clock"
    if not signature_header:
        return "missing X-Sol-Signature header"

    offered = [
        entry[len("v1=") :] for entry in signature_header.split(" ") if entry.startswith("v1=")
    ]
    if not offered:
        return "X-Sol-Signature has no v1= entry"
    for secret in secrets:
        expected = expected_signature(secret, timestamp, body)
        # compare_digest on every pair keeps the time independent of where a mismatch starts.
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return None
    return "signature mismatch: no v1= entry matches the configured secret"


class VerifyingReceiver:
    """An HTTP server on loopback that verifies, deduplicates, records and prints webhook POSTs.

    It answers 200 to a verified request, and to every request while no secret is set
    (then nothing can be verified, and the event is recorded as unverified). Otherwise a
    request that fails verification gets 401, and a correctly signed body that is not a JSON
    object gets 400. A delivery already verified once is answered 200 again and not recorded
    twice, because delivery is at least once.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        out: IO[str] | None = None,
        label: str = "",
        clock: Callable[[], float] = time.time,
        tolerance_s: float = TIMESTAMP_TOLERANCE_S,
    ) -> None:
        """Bind the server; `start()` begins serving.

        Args:
            secrets: signing secrets to accept; more can be set later with `set_secrets`.
            host: address to listen on, 127.0.0.1 or ::1 for local use.
            port: TCP port, 0 for a free one.
            out: where the one-line summaries go; standard output when None.
            label: text put before each printed line, such as "receiver: ".
            clock: current time in Unix seconds, replaceable in tests.
            tolerance_s: accepted distance of `X-Sol-Timestamp` from `clock()`, in seconds.

        Raises:
            OSError: the address cannot be bound.
        """
        self.events: list[ReceivedEvent] = []
        self._secrets: tuple[str, ...] = tuple(secrets)
        self._verified_ids: set[str] = set()
        self._out = out
        self._label = label
        self._clock = clock
        self._tolerance_s = tolerance_s
        self._changed = threading.Condition()
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="handoff-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """The URL to configure as the webhook, such as http://127.0.0.1:9000/hook."""
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else address
        url_host = f"[{host}]" if ":" in host else host
        return f"http://{url_host}:{port}{HOOK_PATH}"

    def start(self) -> VerifyingReceiver:
        """Serve requests on a background thread; return self."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve requests on the calling thread until `stop()` is called from another one."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the accepted signing secrets (two during a rotation)."""
        with self._changed:
            self._secrets = tuple(secrets)

    def verified_events(self) -> list[ReceivedEvent]:
        """Return the verified events in arrival order."""
        with self._changed:
            return [event for event in self.events if event.verified]

    def wait_for_verified(self, delivery_ids: Iterable[str], timeout_s: float) -> bool:
        """Wait until every one of `delivery_ids` has been verified.

        Returns:
            True when all were verified within `timeout_s` seconds, otherwise False.
        """
        expected_ids = set(delivery_ids)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not expected_ids <= self._verified_ids:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        """Judge, record and print one POST; return the HTTP status to answer.

        Args:
            headers: request headers with lower-case names.
            body: the raw request body.
        """
        with self._changed:
            secrets = self._secrets
        problem: str | None
        status = 200
        if secrets:
            problem = check_signature(
                secrets,
                headers.get("x-sol-timestamp"),
                headers.get("x-sol-signature"),
                body,
                self._clock(),
                self._tolerance_s,
            )
            status = 200 if problem is None else 401
        else:
            problem = "not verified: no signing secret configured in this receiver"

        payload: object
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
            if problem is None:
                problem = "signature valid but the body is not a JSON object"
                status = 400
        delivery_id = _text_or_none(payload.get("deliveryId")) or headers.get("x-sol-delivery")
        event_name = _text_or_none(payload.get("event")) or headers.get("x-sol-event")

        reason = problem or "signature verified"
        with self._changed:
            duplicate = problem is None and delivery_id in self._verified_ids
            printed = reason + (" (duplicate deliveryId, already received)" if duplicate else "")
            # Printed before waiters wake, so a caller's own output follows this line.
            self._print(
                f"{event_name or '(no event)'}  {delivery_id or '(no deliveryId)'}  {printed}"
            )
            if not duplicate:
                self.events.append(
                    ReceivedEvent(
                        delivery_id=delivery_id,
                        event=event_name,
                        verified=problem is None,
                        reason=reason,
                        body=body,
                    )
                )
                if problem is None and delivery_id is not None:
                    self._verified_ids.add(delivery_id)
                self._changed.notify_all()
        return status

    def _print(self, line: str) -> None:
        print(self._label + line, file=self._out or sys.stdout, flush=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "handoff-receiver"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                # Every request already gets its own line from `handle`.
                return

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self._answer(413 if length > MAX_BODY_BYTES else 400)
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                self._answer(receiver.handle(headers, body))

            def _answer(self, status: int) -> None:
                text = b"ok\n" if status == 200 else b"rejected\n"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
