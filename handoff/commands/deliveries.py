"""Delivery history from the shell: list, show and redeliver, with the API's JSON layout."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
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
        "redeliver", help="queue one more attempt now, same deliveryId and body"
    )
    again.add_argument("delivery_id", metavar="DELIVERY_ID")
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
    """Queue one manual attempt of a delivery, whatever its workspace."""
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
