"""The verifying receiver judges hand-built requests: signatures, timestamps, rotation, dedupe."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Iterator

import httpx
import pytest

from handoff.receiver import VerifyingReceiver, check_signature
from worker.signing import signature_header

NOW = 1_771_000_000
SECRET = "whsec_bmV3LXNlY3JldC1mb3ItdGhlLXJlY2VpdmVyLXRlc3Q="
OLD_SECRET = "old-secret-still-valid-during-rotation"


def _body(delivery_id: str = "0b6c7f2e-8d4a-4c3e-9f1a-2b3c4d5e6f70") -> bytes:
    return json.dumps(
        {"event": "solhelps.insight.handoff", "deliveryId": delivery_id, "theme": {"id": "t"}},
        separators=(",", ":"),
    ).encode()


def _sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def _headers(signature: str | None, timestamp: int = NOW) -> dict[str, str]:
    headers = {"x-sol-timestamp": str(timestamp), "x-sol-event": "solhelps.insight.handoff"}
    if signature is not None:
        headers["x-sol-signature"] = signature
    return headers


def _receiver(*secrets: str) -> tuple[VerifyingReceiver, io.StringIO]:
    out = io.StringIO()
    receiver = VerifyingReceiver(secrets, out=out, clock=lambda: float(NOW))
    return receiver, out


@pytest.fixture
def receiver() -> Iterator[VerifyingReceiver]:
    server, _ = _receiver(SECRET)
    yield server
    server.stop()


def test_good_signature_is_verified(receiver: VerifyingReceiver) -> None:
    body = _body()

    status = receiver.handle(_headers(_sign(SECRET, NOW, body)), body)

    assert 200 == status
    assert 1 == len(receiver.events)
    event = receiver.events[0]
    assert event.verified
    assert "signature verified" == event.reason
    assert "0b6c7f2e-8d4a-4c3e-9f1a-2b3c4d5e6f70" == event.delivery_id
    assert "solhelps.insight.handoff" == event.event
    assert body == event.body


def test_bad_signature_is_rejected(receiver: VerifyingReceiver) -> None:
    body = _body()

    status = receiver.handle(_headers(_sign("another-secret", NOW, body)), body)

    assert 401 == status
    assert not receiver.events[0].verified
    assert "signature mismatch" in receiver.events[0].reason


def test_altered_body_is_rejected(receiver: VerifyingReceiver) -> None:
    body = _body()
    signature = _sign(SECRET, NOW, body)

    status = receiver.handle(_headers(signature), body.replace(b'"t"', b'"u"'))

    assert 401 == status


@pytest.mark.parametrize("offset_s", [-301, 301, -3600])
def test_stale_timestamp_is_rejected(receiver: VerifyingReceiver, offset_s: int) -> None:
    body = _body()
    timestamp = NOW + offset_s

    status = receiver.handle(_headers(_sign(SECRET, timestamp, body), timestamp), body)

    assert 401 == status
    assert "more than 300 s" in receiver.events[0].reason


def test_timestamp_within_tolerance_is_accepted(receiver: VerifyingReceiver) -> None:
    body = _body()
    timestamp = NOW - 299

    assert 200 == receiver.handle(_headers(_sign(SECRET, timestamp, body), timestamp), body)


def test_rotation_header_with_two_entries_verifies() -> None:
    body = _body()
    header = f"{_sign(OLD_SECRET, NOW, body)} {_sign(SECRET, NOW, body)}"
    new_only, _ = _receiver(SECRET)
    old_only, _ = _receiver(OLD_SECRET)

    assert 200 == new_only.handle(_headers(header), body)
    assert 200 == old_only.handle(_headers(header), body)
    new_only.stop()
    old_only.stop()


def test_receiver_with_two_secrets_accepts_either() -> None:
    body = _body()
    receiver, _ = _receiver(OLD_SECRET, SECRET)

    assert 200 == receiver.handle(_headers(_sign(OLD_SECRET, NOW, body)), body)
    receiver.stop()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-sol-signature": "v1=00"}, "missing X-Sol-Timestamp"),
        ({"x-sol-timestamp": "soon", "x-sol-signature": "v1=00"}, "invalid X-Sol-Timestamp"),
        ({"x-sol-timestamp": str(NOW)}, "missing X-Sol-Signature"),
        ({"x-sol-timestamp": str(NOW), "x-sol-signature": "v2=abc"}, "no v1= entry"),
    ],
)
def test_malformed_headers_are_rejected(
    receiver: VerifyingReceiver, headers: dict[str, str], reason: str
) -> None:
    status = receiver.handle(headers, _body())

    assert 401 == status
    assert reason in receiver.events[0].reason


def test_no_secret_accepts_without_verifying() -> None:
    receiver, out = _receiver()

    status = receiver.handle(_headers(None), _body())

    assert 200 == status
    assert not receiver.events[0].verified
    assert "no signing secret configured" in out.getvalue()
    receiver.stop()


def test_secrets_set_after_start_are_used() -> None:
    body = _body()
    receiver, _ = _receiver()

    receiver.set_secrets([SECRET])

    assert 200 == receiver.handle(_headers(_sign(SECRET, NOW, body)), body)
    assert receiver.events[0].verified
    receiver.stop()


def test_duplicate_delivery_is_recorded_once() -> None:
    body = _body()
    receiver, out = _receiver(SECRET)
    headers = _headers(_sign(SECRET, NOW, body))

    first = receiver.handle(headers, body)
    second = receiver.handle(headers, body)

    assert (200, 200) == (first, second)
    assert 1 == len(receiver.events)
    assert "duplicate deliveryId" in out.getvalue().splitlines()[1]
    receiver.stop()


def test_signed_body_that_is_not_json_gets_400(receiver: VerifyingReceiver) -> None:
    body = b"not json"

    status = receiver.handle(_headers(_sign(SECRET, NOW, body)), body)

    assert 400 == status
    assert not receiver.events[0].verified


def test_one_line_printed_per_event() -> None:
    body = _body()
    receiver, out = _receiver(SECRET)

    receiver.handle(_headers(_sign(SECRET, NOW, body)), body)

    line = out.getvalue().strip()
    assert (
        "solhelps.insight.handoff  0b6c7f2e-8d4a-4c3e-9f1a-2b3c4d5e6f70  signature verified" == line
    )
    receiver.stop()


def test_sender_signature_header_verifies() -> None:
    body = _body()
    header = signature_header([OLD_SECRET, SECRET], NOW, body)

    assert header is not None
    assert None is check_signature([SECRET], str(NOW), header, body, float(NOW))


def test_wait_for_verified_times_out(receiver: VerifyingReceiver) -> None:
    assert not receiver.wait_for_verified(["missing"], timeout_s=0.05)


def test_http_post_gets_status_over_loopback() -> None:
    body = _body()
    receiver, _ = _receiver(SECRET)
    receiver.start()
    try:
        good = httpx.post(receiver.url, content=body, headers=_headers(_sign(SECRET, NOW, body)))
        bad = httpx.post(receiver.url, content=body, headers=_headers("v1=" + "0" * 64))
    finally:
        receiver.stop()

    assert receiver.url.startswith("http://127.0.0.1:")
    assert 200 == good.status_code
    assert 401 == bad.status_code
    assert [True, False] == [event.verified for event in receiver.events]
