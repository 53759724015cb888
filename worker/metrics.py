"""Prometheus metrics of the delivery workers, and the server that exports them.

`handoff worker` runs several worker processes under one Dramatiq parent. The metrics use
prometheus-client's multiprocess mode: `handoff worker` points `PROMETHEUS_MULTIPROC_DIR`
at a fresh folder before any process imports prometheus-client, each worker process writes
its samples there, and one extra process (a Dramatiq fork function, `serve_worker_metrics`)
adds them up and serves `/metrics` on `HANDOFF_WORKER_METRICS_PORT`. Without that variable
(tests, a worker run in-process) the metrics are ordinary in-process ones.
"""

from __future__ import annotations

import os
import sys

from prometheus_client import CollectorRegistry, Counter, Histogram

from handoff.logging import configure_logging
from handoff.metrics_server import start_metrics_server
from handoff.settings import SettingError, load_settings

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES_TOTAL = Counter(
    "handoff_deliveries_total",
    "Delivery attempts finished, by event and attempt outcome (delivered, will_retry, failed, "
    "or interrupted when the lease ran out before the outcome was recorded).",
    ["event", "outcome"],
)
ATTEMPT_DURATION = Histogram(
    "handoff_attempt_duration_seconds",
    "Duration of one delivery attempt, from connecting to the last byte of the answer.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
)


def record_attempt(event: str, outcome: str, duration_ms: int | None) -> None:
    """Count one finished attempt and observe its duration."""
    DELIVERIES_TOTAL.labels(event=event, outcome=outcome).inc()
    if duration_ms is not None:
        ATTEMPT_DURATION.observe(duration_ms / 1000.0)


def serve_worker_metrics() -> int:
    """Serve the worker processes' summed metrics until the process is stopped.

    Dramatiq runs this in a process of its own (`--fork-function`), which it stops with
    SIGTERM together with the worker processes.

    Returns:
        The exit code: 0 when stopped, 1 when the server could not start.
    """
    from prometheus_client import multiprocess

    try:
        settings = load_settings()
    except SettingError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.log_format)

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
        registry, path=os.environ.get(MULTIPROC_DIR_VARIABLE)
    )
    thread = start_metrics_server(
        settings.metrics_host, settings.worker_metrics_port, "worker", registry
    )
    if thread is None:
        return 1
    thread.join()
    return 0
