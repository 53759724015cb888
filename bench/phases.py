"""The measurements: commit rates, a burst of deliveries, steady-rate latency, worker memory."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from bench.cpu import CpuMeter, Finder, process_tree_finder
from bench.environment import PRODUCERS, BenchEnvironment
from bench.processes import Service
from bench.producers import Kind, ProducerJob, ProducerResult, run_producer

RECEIVE_TIMEOUT_S = 120.0
POLL_S = 0.05


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _run_producers(env: BenchEnvironment, jobs: list[ProducerJob]) -> list[ProducerResult]:
    futures = [env.pool.submit(run_producer, job) for job in jobs]
    return [future.result() for future in futures]


def commit_rate(env: BenchEnvironment, kind: Kind, duration_s: float) -> float:
    """Return commits per second of `kind` by 4 producers running flat out for `duration_s`."""
    start_at = time.time() + 1.0
    jobs = [
        ProducerJob(
            kind=kind,
            database_url=env.producer_url,
            broker_url=env.redis.url,
            seeded=env.seeded,
            start_at=start_at,
            duration_s=duration_s,
        )
        for _ in range(PRODUCERS)
    ]
    results = _run_producers(env, jobs)
    return sum(result.commits for result in results) / duration_s


def wait_received(
    env: BenchEnvironment, expected: set[str], timeout_s: float = RECEIVE_TIMEOUT_S
) -> dict[str, float]:
    """Wait until every id in `expected` appears in the receiver's log.

    Returns:
        The first receipt time (Unix seconds, millisecond resolution) of each expected id.

    Raises:
        TimeoutError: some ids had not arrived after `timeout_s`.
    """
    received: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for moment, delivery_id in env.nginx.log.read_new():
            if delivery_id in expected and delivery_id not in received:
                received[delivery_id] = moment
        if len(received) == len(expected):
            return received
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"receiver got {len(received)} of {len(expected)} deliveries in {timeout_s} s"
            )
        time.sleep(POLL_S)


@dataclass
class Burst:
    """N handoffs committed by 4 producers as fast as they can, until all are received."""

    handoffs: int
    seconds: float  # from the first commit until the last delivery was received
    commit_seconds: float  # from the first commit until the last one
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def deliveries_per_s(self) -> float:
        """End-to-end throughput."""
        return self.handoffs / self.seconds

    def cpu_per_thousand(self, groups: list[str]) -> float:
        """CPU seconds of `groups` per 1,000 handoffs."""
        return sum(self.cpu_seconds.get(group, 0.0) for group in groups) * 1000 / self.handoffs


def burst(env: BenchEnvironment, kind: Kind, handoffs: int, services: list[Service]) -> Burst:
    """Commit `handoffs` with 4 producers flat out; time them until the receiver has them all."""
    env.nginx.log.read_new()
    backends = env.postgres_backends()
    finders: list[Finder] = [
        process_tree_finder(service.name, service.processes) for service in services
    ]
    finders += [
        backends,
        process_tree_finder("producers", env.producer_processes),
        process_tree_finder("redis", env.redis_processes),
        process_tree_finder("nginx", env.nginx_processes),
    ]
    meter = CpuMeter(finders).start()
    try:
        start_at = time.time() + 0.5
        jobs = [
            ProducerJob(
                kind=kind,
                database_url=env.producer_url,
                broker_url=env.redis.url,
                seeded=env.seeded,
                start_at=start_at,
                count=count,
            )
            for count in _split(handoffs, PRODUCERS)
        ]
        results = _run_producers(env, jobs)
        commits = {key: value for result in results for key, value in result.commit_times.items()}
        received = wait_received(env, set(commits))
    finally:
        cpu = meter.stop()
        backends.close()
    first_commit = min(result.first_commit_at for result in results)
    last_commit = max(result.last_commit_at for result in results)
    return Burst(
        handoffs=handoffs,
        seconds=max(received.values()) - first_commit,
        commit_seconds=last_commit - first_commit,
        cpu_seconds=cpu,
    )


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values` (`fraction` 0.99 for p99)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Latency:
    """Commit-to-received latency at a steady rate, in milliseconds."""

    rate_per_s: float
    seconds: float
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def steady_latency(env: BenchEnvironment, kind: Kind, rate_per_s: float, seconds: float) -> Latency:
    """Commit `rate_per_s` handoffs a second for `seconds`, spread evenly over 4 producers."""
    env.nginx.log.read_new()
    total = round(rate_per_s * seconds)
    start_at = time.time() + 1.0
    jobs = [
        ProducerJob(
            kind=kind,
            database_url=env.producer_url,
            broker_url=env.redis.url,
            seeded=env.seeded,
            start_at=start_at,
            count=count,
            rate_per_s=rate_per_s / PRODUCERS,
            # Producer k commits at k/rate after producer 0, so the commits interleave evenly.
            offset_s=index / rate_per_s,
        )
        for index, count in enumerate(_split(total, PRODUCERS))
    ]
    results = _run_producers(env, jobs)
    commits = {key: value for result in results for key, value in result.commit_times.items()}
    received = wait_received(env, set(commits))
    latencies = [(received[key] - commits[key]) * 1000 for key in commits]
    return Latency(
        rate_per_s=rate_per_s,
        seconds=seconds,
        samples=len(latencies),
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
    )


def warm_up(env: BenchEnvironment, kind: Kind, handoffs: int = 200) -> None:
    """Send a few handoffs through and wait for them: connections open, code paths compiled."""
    burst(env, kind, handoffs, [])


@dataclass
class Soak:
    """Resident memory of each worker process over a long run of deliveries."""

    deliveries: int
    warm_rss_mb: list[float]
    final_rss_mb: list[float]
    samples_mb: list[list[float]]

    @property
    def max_growth(self) -> float:
        """The largest relative growth of one worker process after warm-up (0.05 is 5 %)."""
        return max(
            (final - warm) / warm
            for warm, final in zip(self.warm_rss_mb, self.final_rss_mb, strict=True)
        )


def worker_rss_mb(workers: Service) -> list[float]:
    """Return the RSS of each Dramatiq worker process (the children of the master), in MiB."""
    return [process.memory_info().rss / 2**20 for process in workers.processes()[1:]]


def soak(
    env: BenchEnvironment, workers: Service, deliveries: int, warm_up_deliveries: int, chunk: int
) -> Soak:
    """Deliver `warm_up_deliveries`, then `deliveries` more in chunks, sampling RSS after each."""
    for count in _split(warm_up_deliveries, max(1, warm_up_deliveries // chunk)):
        burst(env, Kind.HANDOFF, count, [])
    warm = worker_rss_mb(workers)
    samples = [warm]
    done = 0
    while done < deliveries:
        count = min(chunk, deliveries - done)
        burst(env, Kind.HANDOFF, count, [])
        done += count
        samples.append(worker_rss_mb(workers))
    return Soak(deliveries=done, warm_rss_mb=warm, final_rss_mb=samples[-1], samples_mb=samples)
