"""Integration tests of one webhook attempt against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.receivers import Hang, Receiver, Reset, Respond, Trickle
from worker.errors import CREDENTIALS_MESSAGE, NOT_ALLOWED_MESSAGE
from worker.http_attempt import BODY_EXCERPT_BYTES, AttemptResult, send_attempt
from worker.resolver import HostsFileResolver
from worker.retry_policy import AttemptKind
from worker.transport import CheckedBackend, attempt_deadline, make_http_client

TIMEOUT_S = 1.0
BODY = '{"event":"solhelps.webhook.test","note":"café"}'.encode()
HEADERS = {"Content-Type": "application/json", "X-Sol-Delivery": "d-1"}
HOST_NAME = "receiver.test"

_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test instead of sending a DNS query for any name."""

    def literal_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise AssertionError(f"DNS query attempted for {text!r}") from None
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", literal_only)
    yield


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(f"127.0.0.1 {HOST_NAME}\n", encoding="utf-8")
    return path


@pytest.fixture
def client(hosts_file: Path) -> Iterator[httpx.Client]:
    with make_http_client(resolver=HostsFileResolver(hosts_file), allow_private=True) as value:
        yield value


@pytest.fixture
def strict_client(hosts_file: Path) -> Iterator[httpx.Client]:
    with make_http_client(resolver=HostsFileResolver(hosts_file), allow_private=False) as value:
        yield value


def post(client: httpx.Client, url: str, timeout_s: float = TIMEOUT_S) -> AttemptResult:
    return send_attempt(client, url=url, body=BODY, headers=HEADERS, timeout_s=timeout_s)


def port_of(receiver: Receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.parametrize("status", [200, 204])
def test_2xx_delivered(client: httpx.Client, receiver: Receiver, status: int) -> None:
    receiver.script(Respond(status=status, body=b"" if status == 204 else b"accepted"))
    result = post(client, receiver.url)
    assert AttemptKind.DELIVERED == result.kind
    assert status == result.status_code
    assert None is result.error_class
    assert None is result.error_message
    assert ("" if status == 204 else "accepted") == result.response_body_excerpt


def test_request_carries_exact_body_and_headers(client: httpx.Client, receiver: Receiver) -> None:
    post(client, receiver.url)
    [request] = receiver.wait_for(1)
    assert "POST" == request.method
    assert "/hook" == request.path
    assert BODY == request.body
    assert "application/json" == request.headers["content-type"]
    assert "d-1" == request.headers["x-sol-delivery"]
    assert "identity" == request.headers["accept-encoding"]


def test_response_headers_recorded(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Respond(headers={"X-Request-Id": "abc"}))
    result = post(client, receiver.url)
    assert "abc" == result.response_headers["x-request-id"]
    assert result.duration_ms >= 0


def test_redirect_is_never_followed(client: httpx.Client, receiver: Receiver) -> None:
    moved_to = receiver.url.replace("/hook", "/moved")
    receiver.script(Respond(status=301, headers={"Location": moved_to}))
    result = post(client, receiver.url)
    assert AttemptKind.REDIRECT == result.kind
    assert 301 == result.status_code
    assert "redirect" == result.error_class
    assert moved_to == result.location
    assert "Webhook endpoint returned 301: redirect not followed" == result.error_message
    time.sleep(0.1)
    assert 1 == len(receiver.requests)


@pytest.mark.parametrize("status", [302, 308])
def test_other_redirects_recorded(client: httpx.Client, receiver: Receiver, status: int) -> None:
    receiver.script(Respond(status=status, headers={"Location": "https://elsewhere.test/"}))
    result = post(client, receiver.url)
    assert AttemptKind.REDIRECT == result.kind
    assert "https://elsewhere.test/" == result.location


def test_gone(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Respond(status=410, body=b"gone"))
    result = post(client, receiver.url)
    assert AttemptKind.GONE == result.kind
    assert 410 == result.status_code
    assert "http_error" == result.error_class
    assert "Webhook endpoint returned 410" == result.error_message


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_retryable_statuses(client: httpx.Client, receiver: Receiver, status: int) -> None:
    receiver.script(Respond(status=status, body=b"busy"))
    result = post(client, receiver.url)
    assert AttemptKind.RETRYABLE == result.kind
    assert status == result.status_code
    assert "http_error" == result.error_class
    assert f"Webhook endpoint returned {status}" == result.error_message
    assert "busy" == result.response_body_excerpt
    assert None is result.retry_after_s


@pytest.mark.parametrize("status", [400, 404, 413])
def test_rejected_statuses(client: httpx.Client, receiver: Receiver, status: int) -> None:
    receiver.script(Respond(status=status, body=b"no"))
    result = post(client, receiver.url)
    assert AttemptKind.REJECTED == result.kind
    assert status == result.status_code
    assert "http_error" == result.error_class
    assert f"Webhook endpoint returned {status}" == result.error_message


def test_retry_after_seconds_parsed(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Respond(status=429, headers={"Retry-After": "120"}))
    result = post(client, receiver.url)
    assert 120.0 == result.retry_after_s


def test_retry_after_date_parsed(client: httpx.Client, receiver: Receiver) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=600)
    receiver.script(Respond(status=503, headers={"Retry-After": format_datetime(later, True)}))
    result = post(client, receiver.url)
    assert result.retry_after_s is not None
    assert 590 <= result.retry_after_s <= 600


def test_retry_after_garbage_ignored(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Respond(status=503, headers={"Retry-After": "whenever"}))
    assert None is post(client, receiver.url).retry_after_s


def test_hang_times_out_at_deadline(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Hang())
    started = time.monotonic()
    result = post(client, receiver.url)
    elapsed = time.monotonic() - started
    assert AttemptKind.RETRYABLE == result.kind
    assert "timeout" == result.error_class
    assert "request timed out after 1.0 s" == result.error_message
    assert None is result.status_code
    assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + 0.5


def test_trickle_times_out_at_total_deadline(client: httpx.Client, receiver: Receiver) -> None:
    # One byte every 0.3 s never trips a per-read timeout; only the total deadline ends it.
    receiver.script(Trickle(interval_s=0.3, total_bytes=10_000))
    started = time.monotonic()
    result = post(client, receiver.url)
    elapsed = time.monotonic() - started
    assert AttemptKind.RETRYABLE == result.kind
    assert "timeout" == result.error_class
    assert 200 == result.status_code
    assert elapsed < TIMEOUT_S + 0.5


def test_reset_is_connection_error(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Reset())
    result = post(client, receiver.url)
    assert AttemptKind.RETRYABLE == result.kind
    assert "connection_error" == result.error_class
    assert None is result.status_code


def test_closed_port_is_connection_refused(client: httpx.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = post(client, f"http://127.0.0.1:{port}/hook")
    assert AttemptKind.RETRYABLE == result.kind
    assert "connection_error" == result.error_class
    assert "connection refused" == result.error_message


def test_tls_to_plain_server_is_tls_error(client: httpx.Client, receiver: Receiver) -> None:
    result = post(client, receiver.url.replace("http://", "https://"))
    assert AttemptKind.RETRYABLE == result.kind
    assert "tls_error" == result.error_class
    assert result.error_message is not None
    assert result.error_message.startswith("TLS failed: ")


class HugeBodyServer:
    """Server that sends a 20 MB body to one request and counts the bytes it could send."""

    def __init__(self, size: int = 20 * 1024 * 1024) -> None:
        self.size = size
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.settimeout(5)
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\n\r\n".encode()
            chunk = b"a" * 65536
            try:
                connection.sendall(head)
                while self.sent < self.size:
                    self.sent += connection.send(chunk[: self.size - self.sent])
            except OSError:
                return

    def close(self) -> None:
        self._thread.join(timeout=5)
        self._listener.close()


def test_huge_body_keeps_only_excerpt(client: httpx.Client) -> None:
    server = HugeBodyServer()
    started = time.monotonic()
    result = post(client, server.url, timeout_s=5.0)
    elapsed = time.monotonic() - started
    server.close()
    assert AttemptKind.DELIVERED == result.kind
    assert "a" * BODY_EXCERPT_BYTES == result.response_body_excerpt
    assert elapsed < 1.0
    assert server.sent < server.size


def test_excerpt_cut_leaves_out_partial_character(client: httpx.Client, receiver: Receiver) -> None:
    body = b"a" * (BODY_EXCERPT_BYTES - 1) + "é and more".encode()
    receiver.script(Respond(body=body))
    result = post(client, receiver.url)
    assert "a" * (BODY_EXCERPT_BYTES - 1) == result.response_body_excerpt


def test_invalid_utf8_body_replaced(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Respond(status=500, body=b"broken \xff\xfe body"))
    result = post(client, receiver.url)
    assert "broken \ufffd\ufffd body" == result.response_body_excerpt


def test_hosts_file_name_reaches_receiver(client: httpx.Client, receiver: Receiver) -> None:
    port = port_of(receiver)
    result = post(client, f"http://{HOST_NAME}:{port}/hook")
    assert AttemptKind.DELIVERED == result.kind
    [request] = receiver.wait_for(1)
    assert f"{HOST_NAME}:{port}" == request.headers["host"]


def test_name_missing_from_hosts_file_is_dns_error(client: httpx.Client) -> None:
    result = post(client, "http://missing.test/hook")
    assert AttemptKind.RETRYABLE == result.kind
    assert "dns_error" == result.error_class
    assert "destination unresolvable: host missing.test did not resolve" == result.error_message


def test_next_address_tried_when_first_refuses(tmp_path: Path, receiver: Receiver) -> None:
    # The receiver listens on 127.0.0.1 only, so ::1 refuses (or is unavailable).
    hosts = tmp_path / "hosts-dual"
    hosts.write_text(f"::1 {HOST_NAME}\n127.0.0.1 {HOST_NAME}\n", encoding="utf-8")
    with make_http_client(resolver=HostsFileResolver(hosts), allow_private=True) as client:
        result = post(client, f"http://{HOST_NAME}:{port_of(receiver)}/hook")
    assert AttemptKind.DELIVERED == result.kind


def test_private_address_blocked_before_connecting(strict_client: httpx.Client) -> None:
    # This also checks the backend injection: with httpx's own backend the client would
    # connect to the listener and fail TLS instead of being blocked.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = post(strict_client, f"https://127.0.0.1:{port}/hook")
        time.sleep(0.1)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert AttemptKind.BLOCKED == result.kind
    assert "blocked" == result.error_class
    assert NOT_ALLOWED_MESSAGE == result.error_message


def test_private_name_blocked_before_connecting(
    strict_client: httpx.Client, receiver: Receiver
) -> None:
    result = post(strict_client, f"https://{HOST_NAME}:{port_of(receiver)}/hook")
    assert AttemptKind.BLOCKED == result.kind
    assert NOT_ALLOWED_MESSAGE == result.error_message
    assert "127.0.0.1" not in str(result.error_message)
    time.sleep(0.1)
    assert [] == receiver.requests


def test_plain_http_blocked_without_allow_private(
    strict_client: httpx.Client, receiver: Receiver
) -> None:
    result = post(strict_client, receiver.url)
    assert AttemptKind.BLOCKED == result.kind
    time.sleep(0.1)
    assert [] == receiver.requests


def test_credentials_in_url_blocked(client: httpx.Client, receiver: Receiver) -> None:
    result = post(client, receiver.url.replace("http://", "http://alice:hunter2@"))
    assert AttemptKind.BLOCKED == result.kind
    assert "blocked" == result.error_class
    assert CREDENTIALS_MESSAGE == result.error_message
    assert "hunter2" not in str(result.error_message)
    assert [] == receiver.requests


def test_invalid_url_blocked(client: httpx.Client) -> None:
    result = post(client, "https://0177.0.0.1/hook")
    assert AttemptKind.BLOCKED == result.kind
    assert "blocked" == result.error_class


def test_client_uses_checked_backend(client: httpx.Client) -> None:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, CheckedBackend)


def test_expired_deadline_fails_before_connecting(client: httpx.Client, receiver: Receiver) -> None:
    with attempt_deadline(0.0):
        with pytest.raises(httpx.ConnectTimeout):
            client.post(receiver.url, content=BODY)
    time.sleep(0.1)
    assert [] == receiver.requests


def test_deadline_restored_after_attempt(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Hang())
    assert "timeout" == post(client, receiver.url, timeout_s=0.5).error_class
    # Outside any attempt the pooled connection has no deadline left over.
    response = client.post(receiver.url, content=BODY, timeout=5.0)
    assert 200 == response.status_code


def test_keep_alive_connection_reused_with_fresh_deadline(
    client: httpx.Client, receiver: Receiver
) -> None:
    results = [post(client, receiver.url) for _ in range(5)]
    assert [AttemptKind.DELIVERED] * 5 == [result.kind for result in results]
    assert 5 == len(receiver.wait_for(5))


def test_hang_frees_worker_thread(client: httpx.Client, receiver: Receiver) -> None:
    receiver.script(Hang())
    results: list[AttemptResult] = []
    worker = threading.Thread(target=lambda: results.append(post(client, receiver.url)))
    worker.start()
    worker.join(timeout=TIMEOUT_S + 1.0)
    assert not worker.is_alive()
    assert "timeout" == results[0].error_class


def test_hang_does_not_block_other_threads(client: httpx.Client, receiver: Receiver) -> None:
    hanging = Receiver(default=Hang()).start()
    try:
        slow: list[AttemptResult] = []
        worker = threading.Thread(
            target=lambda: slow.append(post(client, hanging.url, timeout_s=2.0))
        )
        worker.start()
        hanging.wait_for(1)
        started = time.monotonic()
        fast = post(client, receiver.url)
        assert AttemptKind.DELIVERED == fast.kind
        assert time.monotonic() - started < 0.5
        worker.join(timeout=3.0)
        assert not worker.is_alive()
        assert "timeout" == slow[0].error_class
    finally:
        hanging.stop()


def _self_signed_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_uses_host_name_for_sni_and_verification(tmp_path: Path, client: httpx.Client) -> None:
    cert_path, key_path = _self_signed_cert(tmp_path, HOST_NAME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server_names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: server_names.append(name)

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    result = post(client, f"https://{HOST_NAME}:{port}/hook")
    thread.join(timeout=5)
    listener.close()

    # The socket went to 127.0.0.1, but the handshake named the host, and the self-signed
    # certificate failed verification.
    assert [HOST_NAME] == server_names
    assert "tls_error" == result.error_class
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" == result.error_message
