"""`make bench`: measures the outbox pipeline against its limits and a reference, and reports.

Run it from the repository root: `.venv/bin/python -m bench.run` (`--soak` for the worker
memory run of `make bench-soak`). It prints a table and writes the JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.environment import PRODUCERS, BenchEnvironment
from bench.limits import CLIENT_SHAPES, measure_shape
from bench.machine import describe_machine
from bench.phases import Burst, Latency, burst, commit_rate, soak, steady_latency, warm_up
from bench.processes import Service
from bench.producers import Kind, sample_body
from bench.report import Row, format_table, median, write_json
from bench.seed import clear_handoffs

# CPU groups charged to each pipeline in (d); each includes every Postgres backend of the
# benchmark database, the producers' too, because their outbox writes are handoff work.
OUTBOX_CPU_GROUPS = [
    "relay",
    "workers",
    "postgres (relay)",
    "postgres (workers)",
    "postgres (producers)",
]
REFERENCE_CPU_GROUPS = ["reference-workers", "postgres (workers)", "postgres (producers)"]
P99_TARGET_MS = 25.0
CPU_TARGET_S = 2.0


@dataclass(frozen=True)
class RunConfig:
    """The sizes of one run; the defaults are what `make bench` measures."""

    repetitions: int = 3
    handoffs: int = 5000
    rate_per_s: float = 200.0
    latency_seconds: float = 10.0
    commit_seconds: float = 3.0
    client_seconds: float = 2.0
    worker_processes: int = 2
    worker_threads: int = 4
    soak_deliveries: int = 50_000
    soak_warm_up: int = 5000
    soak_chunk: int = 5000


@dataclass
class Repetition:
    """The raw figures of one repetition."""

    client_rates: dict[str, float] = field(default_factory=dict)
    action_commits_per_s: float = 0.0
    handoff_commits_per_s: float = 0.0
    outbox: Burst | None = None
    outbox_latency: Latency | None = None
    reference: Burst | None = None
    reference_latency: Latency | None = None

    @property
    def best_client_rate(self) -> float:
        """L1 of this repetition: the best of the client shapes."""
        return max(self.client_rates.values())


@contextmanager
def running(*services: Service) -> Iterator[list[Service]]:
    """Stop `services` on the way out; on an error, print the end of each one's log."""
    try:
        yield list(services)
    except BaseException:
        for service in services:
            print(f"--- last lines of {service.name} ({service.log_path}):", file=sys.stderr)
            print(service.tail(), file=sys.stderr)
        raise
    finally:
        for service in services:
            service.stop()


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_repetition(env: BenchEnvironment, config: RunConfig, body: bytes) -> Repetition:
    """Measure every figure once: limits, commit rates, then each pipeline in turn."""
    repetition = Repetition()
    for shape in CLIENT_SHAPES:
        rate = measure_shape(env.pool, shape, env.nginx.url, body, config.client_seconds)
        repetition.client_rates[shape.name] = rate
        _log(f"L1 {shape.name}: {rate:,.0f} POST/s")

    repetition.action_commits_per_s = commit_rate(env, Kind.ACTION, config.commit_seconds)
    repetition.handoff_commits_per_s = commit_rate(env, Kind.HANDOFF, config.commit_seconds)
    clear_handoffs(env.engine)
    _log(
        f"commits/s: action alone {repetition.action_commits_per_s:,.0f}, "
        f"with handoff {repetition.handoff_commits_per_s:,.0f}"
    )

    relay = env.start_relay()
    workers = env.start_workers(config.worker_processes, config.worker_threads)
    with running(relay, workers) as services:
        warm_up(env, Kind.HANDOFF)
        repetition.outbox = burst(env, Kind.HANDOFF, config.handoffs, services)
        _log(f"outbox: {repetition.outbox.deliveries_per_s:,.0f} deliveries/s")
        repetition.outbox_latency = steady_latency(
            env, Kind.HANDOFF, config.rate_per_s, config.latency_seconds
        )
        _log(f"outbox latency p99 {repetition.outbox_latency.p99_ms:,.1f} ms")

    reference = env.start_reference_workers(config.worker_processes, config.worker_threads)
    with running(reference) as services:
        warm_up(env, Kind.REFERENCE)
        repetition.reference = burst(env, Kind.REFERENCE, config.handoffs, services)
        _log(f"reference: {repetition.reference.deliveries_per_s:,.0f} deliveries/s")
        repetition.reference_latency = steady_latency(
            env, Kind.REFERENCE, config.rate_per_s, config.latency_seconds
        )
        _log(f"reference latency p99 {repetition.reference_latency.p99_ms:,.1f} ms")

    clear_handoffs(env.engine)
    env.redis.clear_queues()
    return repetition


def _present(value: Any) -> Any:
    if value is None:
        raise RuntimeError("a repetition ended without all of its figures")
    return value


def summarize(repetitions: list[Repetition]) -> list[Row]:
    """Return the table's rows: medians over the repetitions, with limits and reference."""
    outbox = [_present(r.outbox) for r in repetitions]
    reference = [_present(r.reference) for r in repetitions]
    outbox_latency = [_present(r.outbox_latency) for r in repetitions]
    reference_latency = [_present(r.reference_latency) for r in repetitions]

    l1 = median([r.best_client_rate for r in repetitions])
    l2 = median([r.action_commits_per_s for r in repetitions])
    commits = median([r.handoff_commits_per_s for r in repetitions])
    throughput = median([b.deliveries_per_s for b in outbox])
    reference_throughput = median([b.deliveries_per_s for b in reference])
    cpu = median([b.cpu_per_thousand(OUTBOX_CPU_GROUPS) for b in outbox])
    reference_cpu = median([b.cpu_per_thousand(REFERENCE_CPU_GROUPS) for b in reference])

    rows = [
        Row(
            "(a) commits with handoff",
            "commits/s",
            commits,
            limit=l2,
            target=">= 0.7 x action alone",
            met=commits >= 0.7 * l2,
        ),
        Row(
            "(b) end-to-end deliveries",
            "deliveries/s",
            throughput,
            limit=l1,
            reference=reference_throughput,
            target=">= 0.6 x L1, >= 1.0 x reference",
            met=throughput >= 0.6 * l1 and throughput >= reference_throughput,
        ),
    ]
    for name in ("p50", "p95", "p99"):
        value = median([getattr(lat, f"{name}_ms") for lat in outbox_latency])
        rows.append(
            Row(
                f"(c) commit-to-received {name}",
                "ms",
                value,
                reference=median([getattr(lat, f"{name}_ms") for lat in reference_latency]),
                target=f"<= {P99_TARGET_MS:g} ms" if name == "p99" else "",
                met=value <= P99_TARGET_MS if name == "p99" else None,
            )
        )
    rows += [
        Row(
            "(d) CPU per 1,000 handoffs",
            "CPU s",
            cpu,
            reference=reference_cpu,
            target=f"<= {CPU_TARGET_S:g} CPU s",
            met=cpu <= CPU_TARGET_S,
        ),
        Row("L1 bare client POST rate", "POST/s", l1),
        Row("L2 action alone", "commits/s", l2),
        Row("reference deliveries", "deliveries/s", reference_throughput, limit=l1),
    ]
    return rows


def _document(
    config: RunConfig, machine: dict[str, Any], rows: list[Row], raw: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "command": "make bench",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": asdict(config) | {"producers": PRODUCERS},
        "figures": [row.as_dict() for row in rows],
        "repetitions": raw,
        "load_average_after": describe_machine()["load_average"],
    }


def run_bench(env: BenchEnvironment, config: RunConfig) -> dict[str, Any]:
    """Run every repetition, print the table and return the JSON document."""
    machine = describe_machine()
    body = sample_body(env.engine, env.seeded)
    repetitions = []
    for index in range(config.repetitions):
        _log(f"repetition {index + 1} of {config.repetitions}")
        repetitions.append(run_repetition(env, config, body))
    rows = summarize(repetitions)
    print(format_table(rows))
    raw = [asdict(repetition) for repetition in repetitions]
    return _document(config, machine, rows, raw)


def run_soak(env: BenchEnvironment, config: RunConfig) -> dict[str, Any]:
    """Measure worker RSS over `soak_deliveries` deliveries after a warm-up; print the result."""
    machine = describe_machine()
    relay = env.start_relay()
    workers = env.start_workers(config.worker_processes, config.worker_threads)
    with running(relay, workers):
        result = soak(env, workers, config.soak_deliveries, config.soak_warm_up, config.soak_chunk)
    growth = result.max_growth
    rows = [
        Row(
            "worker RSS growth after warm-up",
            "%",
            growth * 100,
            target="< 10 %",
            met=growth < 0.10,
        )
    ]
    print(format_table(rows))
    print(f"RSS per worker process (MiB): warm {result.warm_rss_mb}, final {result.final_rss_mb}")
    return {
        "command": "make bench-soak",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "config": asdict(config),
        "figures": [row.as_dict() for row in rows],
        "soak": asdict(result),
    }


def parse_args(argv: list[str] | None) -> tuple[RunConfig, argparse.Namespace]:
    """Parse the command line into a config and the other options."""
    defaults = RunConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--soak", action="store_true", help="measure worker memory instead")
    parser.add_argument("--repetitions", type=int, default=defaults.repetitions)
    parser.add_argument(
        "--handoffs", type=int, default=defaults.handoffs, help="handoffs per burst (b)"
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate_per_s, help="handoffs per second in (c)"
    )
    parser.add_argument("--worker-processes", type=int, default=defaults.worker_processes)
    parser.add_argument("--worker-threads", type=int, default=defaults.worker_threads)
    parser.add_argument("--soak-deliveries", type=int, default=defaults.soak_deliveries)
    parser.add_argument(
        "--output-dir", type=Path, default=Path("bench-results"), help="where the JSON goes"
    )
    parser.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Postgres URL where the run may create and drop its database",
    )
    args = parser.parse_args(argv)
    config = RunConfig(
        repetitions=args.repetitions,
        handoffs=args.handoffs,
        rate_per_s=args.rate,
        worker_processes=args.worker_processes,
        worker_threads=args.worker_threads,
        soak_deliveries=args.soak_deliveries,
    )
    return config, args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code (1 when a server could not be started)."""
    config, args = parse_args(argv)
    started = time.monotonic()
    try:
        env = BenchEnvironment.open(args.admin_url)
    except RuntimeError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    try:
        document = run_soak(env, config) if args.soak else run_bench(env, config)
    finally:
        env.close()
    document["duration_s"] = round(time.monotonic() - started, 1)
    path = write_json(document, args.output_dir)
    print(f"results written to {path} ({document['duration_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
