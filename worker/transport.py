"""The webhook HTTP client: one total deadline per attempt, connecting only to checked addresses."""

from __future__ import annotations

import ipaddress
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from worker.egress import check_addresses, check_url, resolve_addresses
from worker.errors import DeliveryError
from worker.resolver import Resolver

DEFAULT_TIMEOUT_S = 15.0
KEEPALIVE_EXPIRY_S = 5.0

_state = threading.local()


class ConnectFailed(httpcore.ConnectError):
    """Raised when connecting failed; `reason` is the error behind it.

    httpcore's connection pool re-raises errors `from None`, which drops `__cause__`, so the
    reason (a `DeliveryError` or an `OSError`) travels in this attribute instead.
    """

    def __init__(self, reason: BaseException) -> None:
        super().__init__(str(reason))
        self.reason = reason


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Bound every network call of this thread to end within `seconds` from now.

    httpx's timeouts apply to each read or write on its own, so a receiver that sends one
    byte per second never trips them. This deadline bounds the total. The client's
    connections are pooled and shared between threads, so each call looks the deadline up
    here instead of keeping it in the connection.
    """
    previous = getattr(_state, "deadline", None)
    _state.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _state.deadline = previous


def _clamp(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """Return `timeout` cut to the time left before this thread's deadline.

    Raises:
        httpcore.TimeoutException: of class `expired`, when the deadline has passed.
    """
    deadline: float | None = getattr(_state, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt deadline passed")
    return left if timeout is None else min(timeout, left)


def _is_readable(sock: socket.socket) -> bool:
    # A pooled keep-alive socket that is readable while idle was closed by the server.
    if sock.fileno() == -1:
        return True
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(0))


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._sock.settimeout(_clamp(timeout, httpcore.ReadTimeout))
        try:
            return self._sock.recv(max_bytes)
        except TimeoutError as error:
            raise httpcore.ReadTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.ReadError(str(error)) from error

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Clamp before every send: a receiver that reads slowly makes many partial sends.
        while buffer:
            self._sock.settimeout(_clamp(timeout, httpcore.WriteTimeout))
            try:
                sent = self._sock.send(buffer)
            except TimeoutError as error:
                raise httpcore.WriteTimeout(str(error)) from error
            except OSError as error:
                raise httpcore.WriteError(str(error)) from error
            buffer = buffer[sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # httpcore passes the URL's host as server_hostname, so SNI and the certificate
        # check use the name even though the socket was connected to an IP address.
        try:
            self._sock.settimeout(_clamp(timeout, httpcore.ConnectTimeout))
            tls_sock = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        except TimeoutError as error:
            self.close()
            raise httpcore.ConnectTimeout(str(error)) from error
        except (OSError, ValueError) as error:
            # ssl raises ValueError for a server_hostname it cannot use, such as ".x.com".
            self.close()
            raise httpcore.ConnectError(str(error)) from error
        except httpcore.TimeoutException:
            self.close()
            raise
        return _DeadlineStream(tls_sock)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._sock, ssl.SSLSocket):
            # SSLSocket offers the SSLObject methods httpcore calls (selected_alpn_protocol).
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            return _is_readable(self._sock)
        return None


class CheckedBackend(httpcore.SyncBackend):
    """An httpcore network backend that checks the host's addresses and connects by address.

    The host is resolved here, at connect time, and the socket connects to an address that
    passed the check, never to the name. So a DNS record that changes between the check and
    the connection (DNS rebinding) cannot send the request to an internal address.
    """

    def __init__(self, *, resolver: Resolver, allow_private: bool) -> None:
        self._resolver = resolver
        self._allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_addresses(host, port, self._resolver)
            if not self._allow_private:
                check_addresses(addresses)
        except DeliveryError as error:
            raise ConnectFailed(error) from error

        # Every address passed the check, so falling back to the next one on a refused or
        # unreachable address is safe. A timeout ends the attempt, because the deadline is
        # shared by all addresses.
        last_error: OSError = OSError("no address to connect to")
        for address in addresses:
            try:
                sock = self._connect(address, port, timeout, local_address)
            except OSError as error:
                last_error = error
                continue
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _DeadlineStream(sock)
        raise ConnectFailed(last_error) from last_error

    def _connect(
        self, address: str, port: int, timeout: float | None, local_address: str | None
    ) -> socket.socket:
        # A socket of the address's own family, so no getaddrinfo call is ever made here.
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if local_address is not None:
                sock.bind((local_address, 0))
            sock.settimeout(_clamp(timeout, httpcore.ConnectTimeout))
            sock.connect((address, port))
        except TimeoutError as error:
            sock.close()
            raise httpcore.ConnectTimeout(str(error)) from error
        except BaseException:
            sock.close()
            raise
        return sock


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport with the checked backend underneath and the URL form checked first."""

    def __init__(self, *, resolver: Resolver, allow_private: bool, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False, retries=0)
        self._allow_private = allow_private
        # httpx.HTTPTransport takes no network backend, so its pool is replaced by one built
        # with the same settings and ours. If httpx renamed `_pool`, this assignment would
        # stop working silently. tests/integration/test_http_attempt.py fails in that case,
        # because it checks that a private address is blocked before any connection.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=CheckedBackend(resolver=resolver, allow_private=allow_private),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            check_url(request.url, allow_private=self._allow_private)
        except DeliveryError as error:
            raise httpx.ConnectError(str(error), request=request) from ConnectFailed(error)
        return super().handle_request(request)


def make_http_client(
    *, resolver: Resolver, allow_private: bool, max_connections: int = 100
) -> httpx.Client:
    """Build the client that sends webhooks; one client is shared by every worker thread.

    Redirects are never followed, the scheme, credentials and resolved addresses of every
    request are checked before it connects, and `attempt_deadline` bounds each attempt.
    Blocked requests raise `httpx.ConnectError` caused by `DestinationNotAllowed` (or
    `DestinationUnresolvable` when the host does not resolve).

    Args:
        resolver: resolves webhook hosts; IP literals never reach it.
        allow_private: accept `http` and non-public addresses (development only).
        max_connections: the limit of open connections across all threads.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return httpx.Client(
        transport=_CheckedTransport(resolver=resolver, allow_private=allow_private, limits=limits),
        follow_redirects=False,
        trust_env=False,
        timeout=DEFAULT_TIMEOUT_S,
        # Ask for an uncompressed response body: only its first 16 KiB is kept, and
        # decompressing a small gzip body can take far more memory than that.
        headers={"Accept-Encoding": "identity"},
    )
