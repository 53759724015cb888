"""Pure arithmetic of a fault's result: lost and duplicated deliveries, latency percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of `values` (0.99 for p99), or None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Tally:
    """Delivery counts of one fault.

    Attributes:
        committed: handoffs committed in Postgres, plus any the API accepted (202) that are
            missing there.
        delivered: of those, how many the receiver responded 200 to at least once.
        lost: committed and never received.
        duplicates: received more than once.
        rolled_back: handoffs enqueued in transactions that were rolled back.
        rolled_back_sent: of those, how many reached the receiver or a committed row.
    """

    committed: int
    delivered: int
    lost: int
    duplicates: int
    rolled_back: int
    rolled_back_sent: int


def tally(
    committed_ids: Iterable[str],
    accepted_ids: Iterable[str],
    receipts: Mapping[str, list[float]],
    rolled_back_ids: Iterable[str],
    leaked_ids: Iterable[str],
) -> Tally:
    """Count one fault's deliveries.

    Args:
        committed_ids: delivery ids found in Postgres for the fault's themes.
        accepted_ids: delivery ids the API accepted with 202.
        receipts: arrival times by delivery id, for every request the receiver responded 200 to.
        rolled_back_ids: ids `enqueue_handoff` returned inside rolled-back transactions.
        leaked_ids: ids of rolled-back handoffs seen anywhere: at the receiver (even when it
            did not respond 200) or committed in Postgres.
    """
    expected = set(committed_ids) | set(accepted_ids)
    received = {delivery_id for delivery_id in expected if receipts.get(delivery_id)}
    duplicates = sum(1 for delivery_id in received if len(receipts[delivery_id]) > 1)
    rolled_back = set(rolled_back_ids)
    sent = rolled_back & (set(leaked_ids) | {key for key, times in receipts.items() if times})
    return Tally(
        committed=len(expected),
        delivered=len(received),
        lost=len(expected - received),
        duplicates=duplicates,
        rolled_back=len(rolled_back),
        rolled_back_sent=len(sent),
    )


def latencies_s(
    created_at: Mapping[str, datetime], receipts: Mapping[str, list[float]]
) -> list[float]:
    """Return, for each received delivery, seconds from its commit to its first arrival.

    `created_at` is taken inside the committing transaction, just before COMMIT, so each
    latency slightly overstates the time from commit to arrival.
    """
    values = []
    for delivery_id, moment in created_at.items():
        times = receipts.get(delivery_id)
        if times:
            values.append(min(times) - moment.timestamp())
    return values
