"""The API's `/metrics`: Prometheus gauges computed from Postgres and the broker at scrape time.

The counters of attempts and their durations live in the worker processes, and the
sweeper's recoveries in the relay. Each of those serves its own `/metrics` (worker/metrics.py,
outbox/metrics.py). This endpoint reports the state stored in Postgres and the broker, so
every API replica reports the same values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from api.auth import CurrentEngine, CurrentSettings
from outbox.ops import queue_figures

router = APIRouter(tags=["health"])


class FiguresCollector(Collector):
    """Turns one reading of `outbox.ops.queue_figures` into gauges."""

    def __init__(self, engine: Engine, broker_url: str | None) -> None:
        self._engine = engine
        self._broker_url = broker_url

    def collect(self) -> Iterator[Metric]:
        figures = queue_figures(self._engine, self._broker_url)
        yield from figures_to_metrics(figures)


def figures_to_metrics(figures: dict[str, Any]) -> Iterator[Metric]:
    """Yield the gauges of one `queue_figures` result."""
    outbox = figures["outbox"]
    yield _gauge(
        "handoff_outbox_pending",
        "Committed outbox rows that are due and not yet published by a relay.",
        outbox["pending"],
    )
    yield _gauge(
        "handoff_outbox_oldest_pending_age_seconds",
        "Seconds the oldest pending outbox row has been due; 0 when none is pending.",
        outbox["oldestPendingAgeSeconds"] or 0.0,
    )

    deliveries = figures["deliveries"]
    yield _gauge(
        "handoff_retry_backlog",
        "Deliveries in status retrying, waiting for a later attempt.",
        deliveries["retrying"],
    )
    yield _gauge(
        "handoff_retries_due",
        "Retrying deliveries whose next attempt is due and not yet published.",
        figures["retries"]["dueNow"],
    )
    by_status = GaugeMetricFamily(
        "handoff_deliveries_by_status", "Deliveries in each status.", labels=["status"]
    )
    for status, count in deliveries.items():
        by_status.add_metric([status], count)
    yield by_status

    last_hour = figures["lastHour"]
    outcomes = GaugeMetricFamily(
        "handoff_deliveries_last_hour",
        "Deliveries delivered, or failed for good, within the last hour.",
        labels=["outcome"],
    )
    outcomes.add_metric(["delivered"], last_hour["delivered"])
    outcomes.add_metric(["failed"], last_hour["failed"])
    yield outcomes
    latency = GaugeMetricFamily(
        "handoff_delivery_latency_last_hour_seconds",
        "Commit-to-delivered latency of the last hour's deliveries, by quantile.",
        labels=["quantile"],
    )
    for quantile, key in (("0.5", "latencyP50Ms"), ("0.95", "latencyP95Ms")):
        if last_hour[key] is not None:
            latency.add_metric([quantile], last_hour[key] / 1000.0)
    yield latency

    broker = figures["broker"]
    yield _gauge(
        "handoff_broker_up",
        "1 when the broker's queue figures could be read, else 0.",
        0 if "error" in broker else 1,
    )
    messages = GaugeMetricFamily(
        "handoff_broker_messages",
        "Messages waiting on the broker, by queue kind (ready, delayed, dead-lettered).",
        labels=["queue", "kind"],
    )
    for kind, key in (("ready", "messages"), ("delayed", "delayed"), ("dead", "deadLettered")):
        if broker[key] is not None:
            messages.add_metric([broker["queue"], kind], broker[key])
    yield messages


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}
    },
    summary="Prometheus metrics: backlog, retry and broker gauges read at scrape time",
)
def metrics(engine: CurrentEngine, settings: CurrentSettings) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(engine, settings.broker_url))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
