"""The chaos suite's counts: lost, duplicated and leaked deliveries, and latency percentiles."""

from __future__ import annotations

from datetime import UTC, datetime

from chaos.accounting import latencies_s, percentile, tally


def test_percentile_uses_nearest_rank() -> None:
    values = [float(number) for number in range(1, 101)]

    assert 99.0 == percentile(values, 0.99)
    assert 50.0 == percentile(values, 0.5)
    assert 100.0 == percentile(values, 1.0)


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.99) is None


def test_percentile_of_few_values_is_the_largest() -> None:
    assert 3.0 == percentile([3.0, 1.0, 2.0], 0.99)


def test_tally_counts_lost_and_duplicates() -> None:
    receipts = {"a": [1.0], "b": [1.0, 2.0], "z": [3.0]}

    counts = tally(["a", "b", "c"], ["a"], receipts, [], [])

    assert 3 == counts.committed
    assert 2 == counts.delivered
    assert 1 == counts.lost
    assert 1 == counts.duplicates


def test_tally_counts_accepted_missing_from_postgres_as_lost() -> None:
    counts = tally(["a"], ["a", "ghost"], {"a": [1.0]}, [], [])

    assert 2 == counts.committed
    assert 1 == counts.lost


def test_tally_counts_rolled_back_received() -> None:
    counts = tally([], [], {"r1": [1.0]}, ["r1", "r2", "r3"], ["r3"])

    assert 3 == counts.rolled_back
    assert 2 == counts.rolled_back_sent


def test_tally_ignores_receipt_lists_that_are_empty() -> None:
    counts = tally(["a"], [], {"a": []}, ["a"], [])

    assert 0 == counts.delivered
    assert 0 == counts.rolled_back_sent


def test_latency_runs_from_creation_to_first_arrival() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    start = created.timestamp()

    values = latencies_s({"a": created, "b": created}, {"a": [start + 2.0, start + 0.5]})

    assert [0.5] == values
