"""Administration commands: create workspaces, members and operator tokens, load themes."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from handoff.commands import CommandError, database, start_command
from handoff.themes_file import ThemesFileError, read_themes_file, upsert_themes
from schema.tables import ROLES, members, operator_tokens, workspaces

PLAN_TIERS = ("FREE", "STARTER", "GROWTH", "ENTERPRISE")
# A notice printed beside a new token, not a password.
TOKEN_SHOWN_ONCE = "The token is shown only this once and stored only as a hash; keep it now."  # noqa: S105, E501


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the workspaces, members, tokens and themes command groups."""
    group = commands.add_parser("workspaces", help="create workspaces")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a workspace")
    create.add_argument("--id", required=True, help="workspace id, sent as workspace.companyId")
    create.add_argument("--name", required=True, help="company name, sent as companyName")
    create.add_argument(
        "--plan",
        required=True,
        type=_plan_tier,
        metavar="TIER",
        help="plan tier: FREE, STARTER, GROWTH or ENTERPRISE (any case)",
    )
    create.set_defaults(handler=create_workspace)

    group = commands.add_parser("members", help="add workspace members with API tokens")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="add a member and print its id, then its API token (shown once)"
    )
    add.add_argument("--workspace", required=True, help="id of the member's workspace")
    add.add_argument("--name", required=True, help="display name, sent as actor.name")
    add.add_argument("--role", required=True, choices=ROLES, help="owner, admin or member")
    add.add_argument(
        "--permission",
        action="append",
        default=[],
        metavar="P",
        help="a permission such as insights.export; repeat for more",
    )
    add.add_argument(
        "--assistant",
        action="append",
        default=[],
        metavar="A",
        help="an assistant id in the member's scope; repeat for more",
    )
    add.set_defaults(handler=add_member)

    group = commands.add_parser("tokens", help="create operator tokens")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    token = actions.add_parser(
        "create", help="create an operator token and print its id, then the token (shown once)"
    )
    token.add_argument(
        "--operator",
        action="store_true",
        required=True,
        help="an operator token: ops endpoints across all workspaces",
    )
    token.set_defaults(handler=create_operator_token)

    group = commands.add_parser("themes", help="load friction themes")
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    load = actions.add_parser("load", help="upsert the themes of a JSON file, all of them or none")
    load.add_argument("file", type=Path, metavar="FILE", help="JSON list of theme objects")
    load.set_defaults(handler=load_themes)


def _plan_tier(value: str) -> str:
    tier = value.strip().upper()
    if tier not in PLAN_TIERS:
        raise argparse.ArgumentTypeError(
            f"invalid plan {value!r}; choose FREE, STARTER, GROWTH or ENTERPRISE"
        )
    return tier


def _identifier(option: str, value: str) -> str:
    cleaned = value.strip()
    if not cleaned or "\x00" in cleaned:
        raise CommandError(f"{option} must be a non-empty text without NUL characters")
    return cleaned


def create_workspace(args: argparse.Namespace) -> int:
    """Insert a workspace; an existing id is an error."""
    settings = start_command("database_url")
    workspace_id = _identifier("--id", args.id)
    name = _identifier("--name", args.name)

    with database(settings) as engine, Session(engine) as session, session.begin():
        if session.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first():
            raise CommandError(f"workspace {workspace_id!r} already exists")
        session.execute(insert(workspaces).values(id=workspace_id, name=name, plan_tier=args.plan))

    print(f"workspace {workspace_id} created: {name}, plan {args.plan}")
    return 0


def add_member(args: argparse.Namespace) -> int:
    """Insert a member with a new API token and print the member id, then the token."""
    from api.tokens import hash_token, new_token

    settings = start_command("database_url")
    workspace_id = args.workspace.strip()
    name = _identifier("--name", args.name)
    permissions = [_identifier("--permission", value) for value in args.permission]
    assistants = [_identifier("--assistant", value) for value in args.assistant]

    member_id = str(uuid.uuid4())
    token: str = new_token()
    with database(settings) as engine, Session(engine) as session, session.begin():
        if not session.execute(
            select(workspaces.c.id).where(workspaces.c.id == workspace_id)
        ).first():
            raise CommandError(
                f"workspace {workspace_id!r} not found; create it with `handoff workspaces create`"
            )
        session.execute(
            insert(members).values(
                id=member_id,
                workspace_id=workspace_id,
                name=name,
                role=args.role,
                permissions=sorted(set(permissions)),
                assistant_ids=sorted(set(assistants)),
                token_hash=hash_token(token),
            )
        )

    print(TOKEN_SHOWN_ONCE, file=sys.stderr)
    print(f"member {member_id} ({args.role} of {workspace_id})")
    print(f"token {token}")
    return 0


def create_operator_token(args: argparse.Namespace) -> int:
    """Insert an operator token and print its id, then the token."""
    from api.tokens import hash_token, new_token

    settings = start_command("database_url")
    token_id = str(uuid.uuid4())
    token: str = new_token()
    with database(settings) as engine, Session(engine) as session, session.begin():
        session.execute(insert(operator_tokens).values(id=token_id, token_hash=hash_token(token)))

    print(TOKEN_SHOWN_ONCE, file=sys.stderr)
    print(f"operator token {token_id}")
    print(f"token {token}")
    return 0


def load_themes(args: argparse.Namespace) -> int:
    """Validate a themes file and upsert all of its themes in one transaction."""
    settings = start_command("database_url")
    path: Path = args.file
    try:
        records = read_themes_file(path)
        with database(settings) as engine, Session(engine) as session, session.begin():
            count = upsert_themes(session, records)
    except ThemesFileError as error:
        raise CommandError(f"{path}: {error}; no theme was loaded") from error

    workspace_ids = sorted({record.workspace_id for record in records})
    destination = ", ".join(workspace_ids) if workspace_ids else "no workspace"
    print(f"loaded {count} themes from {path} into {destination}")
    return 0
