"""Prometheus metrics of the relay process, served by `handoff relay` on its own port."""

from __future__ import annotations

from prometheus_client import Counter

SWEEPER_RECOVERED_TOTAL = Counter(
    "handoff_sweeper_recovered_total",
    "Deliveries the sweeper recovered, by kind: interrupted (an attempt's lease expired with "
    "no outcome) or republished (a queued or due message was lost).",
    ["kind"],
)
# Both series exist from the start, so a rate over them reads 0 rather than no data.
for _kind in ("interrupted", "republished"):
    SWEEPER_RECOVERED_TOTAL.labels(kind=_kind)
