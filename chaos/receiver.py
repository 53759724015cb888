"""The suite's webhook receiver on 127.0.0.1: records every deliveryId; can hold, hang, go down."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A request body is at most 64 KiB; anything larger is not the product's.
MAX_BODY_BYTES = 1024 * 1024
# A hanging request is released after this long at most, by then the sender gave up.
MAX_HANG_S = 30.0


class RecordingReceiver:
    """A threaded HTTP server that responds 200 and records the delivery of each such request.

    Each workspace gets its own path (`url_for("a")` is http://127.0.0.1:PORT/hook/a), so
    one path can hang while another stays healthy. Only a request whose 200 response was
    written in full counts as received. A body whose theme is `rollback_theme_id` is
    recorded as a leak whatever the response, because a rolled-back handoff must never be
    sent at all.
    """

    def __init__(self, rollback_theme_id: str) -> None:
        self._rollback_theme_id = rollback_theme_id
        self._lock = threading.Lock()
        self._receipts: dict[str, list[float]] = defaultdict(list)
        self._leaks: list[str] = []
        self._hold_s = 0.0
        self._hanging_paths: set[str] = set()
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        self._release = threading.Event()
        self._down = True
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # Serving.

    def start(self) -> None:
        """Listen on the port of the previous start (a free one the first time)."""
        server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._release.clear()
        with self._lock:
            self._down = False
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="chaos-receiver",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every open connection: senders now get refused."""
        with self._lock:
            self._down = True
            connections = list(self._connections)
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Keep-alive connections would otherwise go on being served by their threads.
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue

    def url_for(self, path: str) -> str:
        """Return the webhook URL of one workspace's path."""
        return f"http://127.0.0.1:{self._port}/hook/{path}"

    # Behaviour.

    def hold(self, seconds: float) -> None:
        """Delay each response by `seconds`, so that requests are in flight."""
        with self._lock:
            self._hold_s = seconds

    def hang(self, path: str, hanging: bool) -> None:
        """Make requests to `path` hang with no response, or respond to them again."""
        with self._lock:
            if hanging:
                self._hanging_paths.add(path)
            else:
                self._hanging_paths.discard(path)

    def in_flight(self) -> int:
        """Return how many requests have arrived and not been responded to yet."""
        with self._lock:
            return self._in_flight

    # Results.

    def receipts(self) -> dict[str, list[float]]:
        """Return, for each delivery id received, the arrival times of its requests."""
        with self._lock:
            return {delivery_id: list(times) for delivery_id, times in self._receipts.items()}

    def received_ids(self) -> set[str]:
        """Return the delivery ids received (responded 200 to) at least once."""
        with self._lock:
            return set(self._receipts)

    def leaks(self) -> list[str]:
        """Return the delivery ids of rolled-back handoffs that reached the receiver."""
        with self._lock:
            return list(self._leaks)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0") or "0")
        if not 0 <= length <= MAX_BODY_BYTES:
            handler.close_connection = True
            return
        body = handler.rfile.read(length)
        arrived_at = time.time()
        delivery_id = handler.headers.get("X-Sol-Delivery", "")
        path = handler.path.rsplit("/", 1)[-1]
        if self._is_rollback(body):
            with self._lock:
                self._leaks.append(delivery_id)

        with self._lock:
            if self._down:
                handler.close_connection = True
                return
            hold_s = self._hold_s
            hanging = path in self._hanging_paths
            self._in_flight += 1
        try:
            if hanging:
                self._wait_while_hanging(path)
                handler.close_connection = True
                return
            if hold_s > 0:
                self._release.wait(hold_s)
            with self._lock:
                if self._down:
                    handler.close_connection = True
                    return
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", "3")
            handler.end_headers()
            handler.wfile.write(b"ok\n")
            handler.wfile.flush()
            with self._lock:
                self._receipts[delivery_id].append(arrived_at)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _wait_while_hanging(self, path: str) -> None:
        deadline = time.monotonic() + MAX_HANG_S
        while time.monotonic() < deadline:
            with self._lock:
                if self._down or path not in self._hanging_paths:
                    return
            time.sleep(0.1)

    def _is_rollback(self, body: bytes) -> bool:
        try:
            payload = json.loads(body)
        except ValueError:
            return False
        theme = payload.get("theme") if isinstance(payload, dict) else None
        return isinstance(theme, dict) and theme.get("id") == self._rollback_theme_id

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                receiver._track(self.connection, opened=True)

            def finish(self) -> None:
                receiver._track(self.connection, opened=False)
                try:
                    super().finish()
                except OSError:
                    return

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_POST(self) -> None:
                try:
                    receiver._handle(self)
                except OSError:
                    # The sender went away mid-request: a killed worker or its timeout.
                    self.close_connection = True

        return Handler
