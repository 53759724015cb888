"""A Prometheus `/metrics` HTTP server for the relay and worker processes."""

from __future__ import annotations

import threading

import structlog
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

METRICS_SERVER_STARTED = "metrics_server_started"
METRICS_SERVER_FAILED = "metrics_server_failed"


def start_metrics_server(
    host: str, port: int, process: str, registry: Collector = REGISTRY
) -> threading.Thread | None:
    """Serve `registry` on http://host:port/metrics from a daemon thread.

    A port that is taken or an address that cannot be bound is logged and skipped: the
    process keeps doing its work without metrics rather than failing.

    Args:
        host: the address to listen on (127.0.0.1 by default; 0.0.0.0 in a container).
        port: the TCP port; 0 starts nothing.
        process: "relay" or "worker", for the log lines.
        registry: the metrics to serve.

    Returns:
        The serving thread, or None when nothing was started.
    """
    if port == 0:
        return None
    try:
        _server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        log.error(METRICS_SERVER_FAILED, process=process, host=host, port=port, error=str(error))
        return None
    log.info(METRICS_SERVER_STARTED, process=process, host=host, port=port)
    return thread
