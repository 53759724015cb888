"""Delivery history from the shell: list, show and redeliver, with the API's JSON layout."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.commands import CommandError, database, start_command
from handoff.commands.output import format_table
from outbox.errors import HandoffError
from outbox.history import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    get_delivery,
    list_deliveries,
    parse_delivery_id,
)
from outbox.redeliver import redeliver
from schema.tables import DELIVERY_STATUSES, deliveries, workspaces


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the deliveries command group."""
    group = commands.add_parser("deliveries", help="delivery history: list, show, redeliver")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list a workspace's deliveries, newest first")
    listing.add_argument("--workspace", required=True, help="workspace id")
    listing.add_argument("--status", choices=DELIVERY_STATUSES, help="only this status")
    listing.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        help=f"page size, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})",
    )
    listing.add_argument("--cursor", help="nextCursor of the previous page")
    listing.add_argument("--json", action="store_true", help="print the API's JSON layout")
    listing.set_defaults(handler=list_command)

    show = actions.add_parser("show", help="show one delivery with all its attempts")
    show.add_argument("delivery_id", metavar="DELIVERY_ID")
    show.add_argument("--json", action="store_true", help="print the API's JSON layout")
    show.set_defaults(handler=show_command)

    again = actions.add_parser(
        "redeliver",
        help="queue one more attempt now, same deliveryId and body: of one delivery, or of "
        "every delivery that failed since a time (--failed-since)",
    )
    again.add_argument("delivery_id", metavar="DELIVERY_ID", nargs="?")
    again.add_argument(
        "--failed-since",
        metavar="TIME",
        type=parse_since,
        help="redeliver every delivery that failed at or after TIME: ISO 8601 (2026-02-15 or "
        "2026-02-15T12:00:00Z) or an age such as 30m, 12h or 3d",
    )
    again.add_argument("--workspace", help="with --failed-since, only this workspace's deliveries")
    again.set_defaults(handler=redeliver_command)


def list_command(args: argparse.Namespace) -> int:
    """Print one page of a workspace's delivery history."""
    settings = start_command("database_url")
    with database(settings) as engine, Session(engine) as session:
        if not session.execute(
            select(workspaces.c.id).where(workspaces.c.id == args.workspace)
        ).first():
            raise CommandError(f"workspace {args.workspace!r} not found")
        try:
            page = list_deliveries(
                session, args.workspace, status=args.status, limit=args.limit, cursor=args.cursor
            )
        except HandoffError as error:
            raise CommandError(error.message) from error

    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return 0
    items: list[dict[str, Any]] = page["items"]
    if not items:
        print(f"no deliveries in workspace {args.workspace}")
        return 0
    print(
        format_table(
            ("DELIVERY ID", "EVENT", "STATUS", "ATTEMPTS", "CREATED", "THEME"),
            [
                (
                    item["deliveryId"],
                    item["event"],
                    item["status"],
                    str(item["attemptCount"]),
                    item["createdAt"] or "",
                    item["themeId"] or "",
                )
                for item in items
            ],
        )
    )
    if page["nextCursor"]:
        print(f"more: --cursor {page['nextCursor']}")
    return 0


def _find_workspace(session: Session, delivery_id: str) -> tuple[str, str]:
    canonical = parse_delivery_id(delivery_id)
    workspace_id = None
    if canonical is not None:
        workspace_id = session.execute(
            select(deliveries.c.workspace_id).where(deliveries.c.id == canonical)
        ).scalar_one_or_none()
    if canonical is None or workspace_id is None:
        raise CommandError(f"delivery {delivery_id!r} not found")
    return workspace_id, canonical


def show_command(args: argparse.Namespace) -> int:
    """Print one delivery, whatever its workspace, with every attempt."""
    settings = start_command("database_url")
    with database(settings) as engine, Session(engine) as session:
        workspace_id, delivery_id = _find_workspace(session, args.delivery_id)
        delivery = get_delivery(session, workspace_id, delivery_id)
    if delivery is None:
        raise CommandError(f"delivery {args.delivery_id!r} not found")

    if args.json:
        print(json.dumps(delivery, indent=2, ensure_ascii=False))
        return 0
    fields = [
        ("delivery", delivery["deliveryId"]),
        ("workspace", workspace_id),
        ("event", delivery["event"]),
        ("theme", delivery["themeId"]),
        ("status", delivery["status"]),
        ("provider", delivery["provider"]),
        ("url", delivery["url"]),
        ("created", delivery["createdAt"]),
        ("delivered", delivery["deliveredAt"]),
        ("next attempt", delivery["nextAttemptAt"]),
        ("attempts", delivery["attemptCount"]),
        ("failure", delivery["failureReason"]),
    ]
    for name, value in fields:
        if value is not None:
            print(f"{name + ':':<14}{value}")
    attempts: list[dict[str, Any]] = delivery["attempts"]
    if attempts:
        print()
        print(
            format_table(
                ("#", "TRIGGER", "STARTED", "MS", "HTTP", "OUTCOME", "ERROR"),
                [
                    (
                        str(attempt["number"]),
                        attempt["trigger"],
                        attempt["startedAt"] or "",
                        _text(attempt["durationMs"]),
                        _text(attempt["statusCode"]),
                        attempt["outcome"] or "in flight",
                        attempt["errorMessage"] or "",
                    )
                    for attempt in attempts
                ],
            )
        )
    return 0


def redeliver_command(args: argparse.Namespace) -> int:
    """Queue one manual attempt of a delivery, whatever its workspace, or of many failed ones."""
    if (args.delivery_id is None) == (args.failed_since is None):
        raise CommandError("give either DELIVERY_ID or --failed-since TIME")
    if args.failed_since is not None:
        return redeliver_failed_command(args)
    if args.workspace is not None:
        raise CommandError("--workspace goes with --failed-since only")
    settings = start_command("database_url")
    with database(settings) as engine, Session(engine) as session, session.begin():
        workspace_id, delivery_id = _find_workspace(session, args.delivery_id)
        try:
            redeliver(session, workspace_id, delivery_id, now=datetime.now(UTC))
        except HandoffError as error:
            raise CommandError(error.message) from error
    print(f"delivery {delivery_id} queued for redelivery; a worker makes one manual attempt")
    return 0


def _text(value: object) -> str:
    return "" if value is None else str(value)


_AGE_UNITS_S = {"m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> datetime:
    """Parse `--failed-since`: an ISO 8601 date or date-time (UTC when no offset) or an age."""
    text = value.strip()
    unit = _AGE_UNITS_S.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * unit)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text[:40]!r}; use ISO 8601 such as 2026-02-15T12:00:00Z, "
            "or an age such as 30m, 12h or 3d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def redeliver_failed_command(args: argparse.Namespace) -> int:
    """Queue one manual attempt of every delivery that failed since `--failed-since`."""
    from outbox.bulk_redeliver import redeliver_failed_since

    settings = start_command("database_url")
    with database(settings) as engine:
        result = redeliver_failed_since(engine, args.failed_since, workspace_id=args.workspace)
    print(
        f"redelivered {result.redelivered} failed deliveries since {args.failed_since.isoformat()}"
    )
    skipped = result.skipped_not_configured + result.skipped_disabled
    if skipped:
        print(
            f"skipped {skipped} in {len(result.skipped_workspaces)} workspaces whose integration "
            f"is removed ({result.skipped_not_configured}) or disabled "
            f"({result.skipped_disabled}): {', '.join(sorted(result.skipped_workspaces))}"
        )
    if result.skipped_changed:
        print(f"skipped {result.skipped_changed} no longer failed when their turn came")
    return 0
