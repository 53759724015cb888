"""A real HTTP receiver on 127.0.0.1 whose responses each test scripts, recording every request."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver read it; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass(frozen=True)
class Respond:
    """Answer with this status, headers and body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass(frozen=True)
class Hang:
    """Read the request, then send nothing for this many seconds (or until the server stops)."""

    seconds: float = 600.0


@dataclass(frozen=True)
class Trickle:
    """Send a 200 with a large Content-Length, then one byte every `interval_s`."""

    interval_s: float = 0.3
    total_bytes: int = 10_000


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP reset instead of answering."""


Behaviour = Respond | Hang | Trickle | Reset


class Receiver:
    """A threaded HTTP server; `script()` queues answers, later requests get `default`."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self.requests: list[ReceivedRequest] = []
        self.default: Behaviour = default or Respond()
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._arrived = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least `count` requests arrived; return all of them."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"receiver got {len(self.requests)} requests, expected {count} "
                        f"within {timeout_s} s"
                    )
                self._arrived.wait(remaining)
            return list(self.requests)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _record(self, request: ReceivedRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver._record(
                    ReceivedRequest(
                        method="POST",
                        path=self.path,
                        headers={name.lower(): value for name, value in self.headers.items()},
                        body=body,
                        received_at=time.time(),
                    )
                )
                behaviour = receiver._next_behaviour()
                if isinstance(behaviour, Respond):
                    self.send_response(behaviour.status)
                    for name, value in behaviour.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(behaviour.body)))
                    self.end_headers()
                    self.wfile.write(behaviour.body)
                elif isinstance(behaviour, Hang):
                    receiver._stopping.wait(behaviour.seconds)
                    self.close_connection = True
                elif isinstance(behaviour, Trickle):
                    self.send_response(200)
                    self.send_header("Content-Length", str(behaviour.total_bytes))
                    self.end_headers()
                    for _ in range(behaviour.total_bytes):
                        if receiver._stopping.wait(behaviour.interval_s):
                            break
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            break
                    self.close_connection = True
                else:
                    # SO_LINGER with a zero timeout makes close() send RST.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True

        return Handler
