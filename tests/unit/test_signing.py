"""Unit tests of webhook signing: X-Sol-Signature and the Standard Webhooks headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import handoff
from worker.signing import (
    USER_AGENT,
    build_headers,
    generate_secret,
    is_standard_webhooks_secret,
    sign_v1,
    signature_header,
    standard_webhooks_headers,
)

BODY = b'{"event":"solhelps.insight.handoff","deliveryId":"d-1"}'
TIMESTAMP = 1_771_158_896
DELIVERY_ID = "0f8e6c1a-3b7d-4c55-9a0e-6f1f2b4d8c11"
PLAIN_SECRET = "my plain secret"
WHSEC_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def independent_hex(secret: str, timestamp: int, body: bytes) -> str:
    key = secret.encode("utf-8")
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def test_sign_v1_matches_independent_hmac() -> None:
    expected = "v1=" + independent_hex(PLAIN_SECRET, TIMESTAMP, BODY)
    assert expected == sign_v1(PLAIN_SECRET, TIMESTAMP, BODY)


def test_sign_v1_is_lowercase_hex() -> None:
    digest = sign_v1(PLAIN_SECRET, TIMESTAMP, BODY).removeprefix("v1=")
    assert 64 == len(digest)
    assert set() == set(digest) - set("0123456789abcdef")


def test_sign_v1_signs_exact_non_ascii_bytes() -> None:
    body = '{"snippet":"Ärger mit Rechten — ✓ 🙂"}'.encode()
    expected = "v1=" + independent_hex(PLAIN_SECRET, TIMESTAMP, body)
    assert expected == sign_v1(PLAIN_SECRET, TIMESTAMP, body)
    assert sign_v1(PLAIN_SECRET, TIMESTAMP, body) != sign_v1(
        PLAIN_SECRET, TIMESTAMP, body.decode().encode("utf-16")
    )


def test_sign_v1_keys_with_utf8_of_secret() -> None:
    secret = "clé secrète"
    expected = "v1=" + independent_hex(secret, TIMESTAMP, BODY)
    assert expected == sign_v1(secret, TIMESTAMP, BODY)


def test_sign_v1_changes_with_timestamp() -> None:
    assert sign_v1(PLAIN_SECRET, TIMESTAMP, BODY) != sign_v1(PLAIN_SECRET, TIMESTAMP + 1, BODY)


def test_signature_header_single_secret() -> None:
    expected = "v1=" + independent_hex(PLAIN_SECRET, TIMESTAMP, BODY)
    assert expected == signature_header([PLAIN_SECRET], TIMESTAMP, BODY)


def test_signature_header_rotation_gives_two_entries() -> None:
    header = signature_header(["new secret", "old secret"], TIMESTAMP, BODY)
    assert header is not None
    entries = header.split(" ")
    assert 2 == len(entries)
    assert "v1=" + independent_hex("new secret", TIMESTAMP, BODY) == entries[0]
    assert "v1=" + independent_hex("old secret", TIMESTAMP, BODY) == entries[1]
    assert "  " not in header


def test_signature_header_none_without_secrets() -> None:
    assert None is signature_header([], TIMESTAMP, BODY)


def test_signature_header_skips_empty_secret() -> None:
    assert None is signature_header([""], TIMESTAMP, BODY)
    expected = "v1=" + independent_hex(PLAIN_SECRET, TIMESTAMP, BODY)
    assert expected == signature_header(["", PLAIN_SECRET], TIMESTAMP, BODY)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (WHSEC_SECRET, True),
        ("whsec_" + base64.b64encode(b"abcde").decode(), True),
        ("whsec_" + base64.b64encode(b"abcde").decode().rstrip("="), True),
        ("whsec_", False),
        ("whsec_!!!notbase64", False),
        ("whsec_a", False),
        ("whsec_ YWJj", False),
        ("WHSEC_" + base64.b64encode(b"k" * 32).decode(), False),
        (base64.b64encode(b"k" * 32).decode(), False),
        (PLAIN_SECRET, False),
        ("", False),
    ],
)
def test_is_standard_webhooks_secret(secret: str, expected: bool) -> None:
    assert expected is is_standard_webhooks_secret(secret)


def test_standard_webhooks_headers_verify_with_library() -> None:
    now = int(time.time())
    body = '{"event":"solhelps.webhook.test","note":"naïve ☕"}'.encode()
    headers = standard_webhooks_headers(DELIVERY_ID, now, body, [WHSEC_SECRET])
    assert DELIVERY_ID == headers["webhook-id"]
    assert str(now) == headers["webhook-timestamp"]
    payload = Webhook(WHSEC_SECRET).verify(body, headers)
    assert "solhelps.webhook.test" == payload["event"]


def test_standard_webhooks_headers_match_independent_signature() -> None:
    key = b"k" * 32
    message = f"{DELIVERY_ID}.{TIMESTAMP}.".encode() + BODY
    expected = "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    headers = standard_webhooks_headers(DELIVERY_ID, TIMESTAMP, BODY, [WHSEC_SECRET])
    assert expected == headers["webhook-signature"]


def test_standard_webhooks_rotation_verifies_with_either_secret() -> None:
    now = int(time.time())
    old_secret = generate_secret()
    headers = standard_webhooks_headers(DELIVERY_ID, now, BODY, [WHSEC_SECRET, old_secret])
    assert 2 == len(headers["webhook-signature"].split(" "))
    Webhook(WHSEC_SECRET).verify(BODY, headers)
    Webhook(old_secret).verify(BODY, headers)


def test_standard_webhooks_library_rejects_other_body() -> None:
    now = int(time.time())
    headers = standard_webhooks_headers(DELIVERY_ID, now, BODY, [WHSEC_SECRET])
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC_SECRET).verify(BODY + b" ", headers)


def test_standard_webhooks_headers_empty_for_plain_secret() -> None:
    assert {} == standard_webhooks_headers(DELIVERY_ID, TIMESTAMP, BODY, [PLAIN_SECRET])
    assert {} == standard_webhooks_headers(DELIVERY_ID, TIMESTAMP, BODY, [])


def test_standard_webhooks_headers_skip_plain_secret_in_rotation() -> None:
    headers = standard_webhooks_headers(DELIVERY_ID, TIMESTAMP, BODY, [PLAIN_SECRET, WHSEC_SECRET])
    assert 1 == len(headers["webhook-signature"].split(" "))


def test_generate_secret_has_standard_webhooks_form() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert 32 == len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    assert is_standard_webhooks_secret(secret)


def test_generate_secret_is_random() -> None:
    assert 20 == len({generate_secret() for _ in range(20)})


def test_build_headers_with_whsec_secret() -> None:
    headers = build_headers(
        delivery_id=DELIVERY_ID,
        event="solhelps.insight.handoff",
        provider="zapier",
        timestamp=TIMESTAMP,
        body=BODY,
        secrets=[WHSEC_SECRET],
        user_agent=USER_AGENT,
    )
    assert "application/json" == headers["Content-Type"]
    assert f"SolHelps-Webhooks/{handoff.__version__}" == headers["User-Agent"]
    assert "solhelps.insight.handoff" == headers["X-Sol-Event"]
    assert DELIVERY_ID == headers["X-Sol-Delivery"]
    assert str(TIMESTAMP) == headers["X-Sol-Timestamp"]
    assert "zapier" == headers["X-Sol-Provider"]
    assert "v1=" + independent_hex(WHSEC_SECRET, TIMESTAMP, BODY) == headers["X-Sol-Signature"]
    assert headers["X-Sol-Delivery"] == headers["webhook-id"]
    assert headers["X-Sol-Timestamp"] == headers["webhook-timestamp"]
    assert headers["webhook-signature"].startswith("v1,")


def test_build_headers_plain_secret_has_no_webhook_headers() -> None:
    headers = build_headers(
        delivery_id=DELIVERY_ID,
        event="solhelps.webhook.test",
        provider="generic",
        timestamp=TIMESTAMP,
        body=BODY,
        secrets=[PLAIN_SECRET],
        user_agent=USER_AGENT,
    )
    assert "X-Sol-Signature" in headers
    assert [] == [name for name in headers if name.lower().startswith("webhook-")]


def test_build_headers_without_secret_has_no_signature() -> None:
    headers = build_headers(
        delivery_id=DELIVERY_ID,
        event="solhelps.webhook.test",
        provider="generic",
        timestamp=TIMESTAMP,
        body=BODY,
        secrets=[""],
        user_agent=USER_AGENT,
    )
    expected = {
        "Content-Type",
        "User-Agent",
        "X-Sol-Event",
        "X-Sol-Delivery",
        "X-Sol-Timestamp",
        "X-Sol-Provider",
    }
    assert expected == set(headers)
