"""Operations commands: `handoff ops status` (queue figures) and `handoff ops prune` (retention)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from handoff.commands import database, start_command
from handoff.commands.output import format_table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ops command group."""
    group = commands.add_parser("ops", help="operations: queue figures and retention")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)

    status = actions.add_parser(
        "status", help="backlog, deliveries per status, retries, broker queue and last hour"
    )
    status.add_argument("--json", action="store_true", help="print the API's JSON layout")
    status.set_defaults(handler=status_command)

    prune = actions.add_parser(
        "prune",
        help="delete published outbox rows and finished delivery history older than "
        "HANDOFF_RETENTION_DAYS (the relay also does this hourly)",
    )
    prune.add_argument(
        "--days",
        type=_days,
        help="retention period in days for this run (default HANDOFF_RETENTION_DAYS, 30)",
    )
    prune.set_defaults(handler=prune_command)


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"invalid number of days {value!r}; use an integer >= 1")
    return days


def status_command(args: argparse.Namespace) -> int:
    """Print the operations figures of every workspace."""
    from outbox.ops import queue_figures

    settings = start_command("database_url")
    with database(settings) as engine:
        figures = queue_figures(engine, settings.broker_url)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(format_table(("FIGURE", "VALUE"), figure_rows(figures)))
    return 0


def figure_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the figures as (name, value) rows for a terminal."""
    outbox = figures["outbox"]
    retries = figures["retries"]
    broker = figures["broker"]
    last_hour = figures["lastHour"]
    rows = [
        ("outbox pending", str(outbox["pending"])),
        ("outbox oldest pending", _unit(outbox["oldestPendingAgeSeconds"], "s")),
    ]
    rows += [
        (f"deliveries {status}", str(count)) for status, count in figures["deliveries"].items()
    ]
    rows += [
        ("retries due now", str(retries["dueNow"])),
        ("next retry due", retries["nextDueAt"] or "-"),
        ("broker queue", broker["queue"]),
        ("broker messages", _unit(broker["messages"], "")),
        ("broker delayed", _unit(broker["delayed"], "")),
        ("broker dead-lettered", _unit(broker["deadLettered"], "")),
    ]
    if "error" in broker:
        rows.append(("broker error", broker["error"]))
    rows += [
        ("last hour delivered", str(last_hour["delivered"])),
        ("last hour failed", str(last_hour["failed"])),
        ("last hour latency p50", _unit(last_hour["latencyP50Ms"], "ms")),
        ("last hour latency p95", _unit(last_hour["latencyP95Ms"], "ms")),
    ]
    return rows


def _unit(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:g} {unit}".rstrip()


def prune_command(args: argparse.Namespace) -> int:
    """Delete everything older than the retention period now, in batches."""
    from outbox.retention import prune

    settings = start_command("database_url")
    days = args.days or settings.retention_days
    with database(settings) as engine:
        result = prune(engine, days)
    print(
        f"removed {result.deliveries} deliveries (with their attempts) and "
        f"{result.outbox_rows} published outbox rows older than {days} days"
    )
    return 0
