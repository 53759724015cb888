"""Steady handoff load: API requests with a member token, and direct transactions rolled back."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from handoff.settings import Settings
from outbox import enqueue_handoff

REQUEST_TIMEOUT_S = 10.0
# One thread keeps up with about this many requests a second on a busy 2-core machine.
RATE_PER_THREAD = 8.0
# A thread that falls further behind than this skips the missed requests, never bursts.
MAX_LAG_S = 1.0


@dataclass(frozen=True)
class Stream:
    """Handoffs of one theme sent through `POST /api/v1/insights/themes/{id}/handoff`."""

    token: str
    theme_id: str
    assistant_id: str
    rate_per_s: float


@dataclass(frozen=True)
class RollbackStream:
    """Handoffs added by `outbox.enqueue_handoff` in transactions that are always rolled back."""

    engine: Engine
    settings: Settings
    workspace_id: str
    actor_id: str
    theme_id: str
    assistant_id: str
    rate_per_s: float


@dataclass
class LoadResult:
    """Outcome of one load run.

    Attributes:
        accepted: delivery ids the API accepted with 202, with the response time (Unix seconds).
        failures: failed requests by HTTP status or exception class.
        rolled_back: delivery ids that `enqueue_handoff` returned in rolled-back transactions.
        rollback_failures: rolled-back transactions that failed before `enqueue_handoff`
            returned (while Postgres was down), by exception class.
    """

    accepted: dict[str, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    rolled_back: list[str] = field(default_factory=list)
    rollback_failures: Counter[str] = field(default_factory=Counter)


class _Pacer:
    """Slots at a fixed rate; a caller that fell behind skips the missed slots."""

    def __init__(self, rate_per_s: float, offset: float) -> None:
        self._interval_s = 1.0 / rate_per_s
        self._next_at = time.monotonic() + offset * self._interval_s

    def delay(self) -> float:
        """Return the seconds to wait for the next slot, and take that slot."""
        now = time.monotonic()
        if now - self._next_at > MAX_LAG_S:
            self._next_at = now
        delay_s = max(0.0, self._next_at - now)
        self._next_at += self._interval_s
        return delay_s


class Load:
    """Sends the streams at their rates on background threads until stopped or bounded.

    Every loop is bounded twice: by `max_requests` in total and by `max_seconds`.
    """

    def __init__(
        self,
        api_url: str,
        streams: list[Stream],
        rollback: RollbackStream | None,
        *,
        max_requests: int,
        max_seconds: float,
    ) -> None:
        self._api_url = api_url
        self._streams = streams
        self._rollback = rollback
        self._max_requests = max_requests
        self._deadline = 0.0
        self._max_seconds = max_seconds
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.result = LoadResult()

    def start(self) -> Load:
        """Start sending; return self."""
        self._deadline = time.monotonic() + self._max_seconds
        for stream in self._streams:
            count = max(1, math.ceil(stream.rate_per_s / RATE_PER_THREAD))
            for index in range(count):
                self._spawn(self._send_stream, stream, stream.rate_per_s / count, index / count)
        if self._rollback is not None:
            self._spawn(self._send_rollbacks, self._rollback)
        return self

    def accepted(self) -> dict[str, float]:
        """Return a copy of the delivery ids accepted so far, with their response times."""
        with self._lock:
            return dict(self.result.accepted)

    def stop(self) -> LoadResult:
        """Stop sending, wait for requests in flight, and return the result."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
        return self.result

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _proceed(self, pacer: _Pacer) -> bool:
        """Wait for the pacer's next slot; False when the load must end instead."""
        if self._stop.wait(pacer.delay()) or time.monotonic() > self._deadline:
            return False
        with self._lock:
            if self._sent >= self._max_requests:
                return False
            self._sent += 1
        return True

    def _send_stream(self, stream: Stream, rate_per_s: float, phase: float) -> None:
        path = f"/api/v1/insights/themes/{stream.theme_id}/handoff"
        body = {"assistantId": stream.assistant_id, "range": {"preset": "30d"}}
        headers = {"Authorization": f"Bearer {stream.token}"}
        pacer = _Pacer(rate_per_s, phase)
        with httpx.Client(base_url=self._api_url, timeout=REQUEST_TIMEOUT_S) as client:
            while self._proceed(pacer):
                try:
                    response = client.post(path, json=body, headers=headers)
                except httpx.HTTPError as error:
                    self._fail(type(error).__name__)
                    continue
                if response.status_code != 202:
                    self._fail(f"HTTP {response.status_code}")
                    continue
                delivery_id = str(response.json()["deliveryId"])
                with self._lock:
                    self.result.accepted[delivery_id] = time.time()

    def _send_rollbacks(self, stream: RollbackStream) -> None:
        pacer = _Pacer(stream.rate_per_s, 0.5)
        while self._proceed(pacer):
            session = Session(stream.engine)
            try:
                session.begin()
                delivery_id = enqueue_handoff(
                    session,
                    workspace_id=stream.workspace_id,
                    actor_id=stream.actor_id,
                    theme_id=stream.theme_id,
                    assistant_id=stream.assistant_id,
                    range={"preset": "30d"},
                    settings=stream.settings,
                )
                # Recorded before the rollback: it must never reach the receiver either way.
                with self._lock:
                    self.result.rolled_back.append(delivery_id)
            except SQLAlchemyError as error:
                with self._lock:
                    self.result.rollback_failures[type(error).__name__] += 1
            finally:
                try:
                    session.rollback()
                    session.close()
                except SQLAlchemyError:
                    # Postgres went away: the server rolled the transaction back itself.
                    pass

    def _fail(self, reason: str) -> None:
        with self._lock:
            self.result.failures[reason] += 1
