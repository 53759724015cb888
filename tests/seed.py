"""Test data: a workspace with members, a theme and an integration, inserted with plain SQL."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox import enqueue_handoff
from schema.tables import integrations, members, themes, workspaces


@dataclass(frozen=True)
class Seeded:
    """Ids and tokens of the seeded rows."""

    workspace_id: str
    owner_id: str
    member_id: str
    owner_token: str
    member_token: str
    theme_id: str
    assistant_id: str


def seed_workspace(
    engine: Engine,
    *,
    workspace_id: str = "acme",
    url: str | None = None,
    secret: str | None = None,
    secret_key: str | None = None,
    provider: str = "generic",
    evidence: list[str] | None = None,
) -> Seeded:
    """Insert a workspace, an owner, an exporting member and one theme; an integration if `url`."""
    owner_id, member_id = str(uuid.uuid4()), str(uuid.uuid4())
    owner_token, member_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with engine.begin() as connection:
        connection.execute(
            insert(workspaces).values(id=workspace_id, name="Acme Inc", plan_tier="GROWTH")
        )
        connection.execute(
            insert(members),
            [
                {
                    "id": owner_id,
                    "workspace_id": workspace_id,
                    "name": "Olive Owner",
                    "role": "owner",
                    "permissions": [],
                    "assistant_ids": [],
                    "token_hash": hashlib.sha256(owner_token.encode()).digest(),
                },
                {
                    "id": member_id,
                    "workspace_id": workspace_id,
                    "name": "Mel Member",
                    "role": "member",
                    "permissions": ["insights.export"],
                    "assistant_ids": ["asst_123"],
                    "token_hash": hashlib.sha256(member_token.encode()).digest(),
                },
            ],
        )
        connection.execute(
            insert(themes).values(
                workspace_id=workspace_id,
                id="permissions",
                assistant_id="asst_123",
                label="Permissions confusion",
                conversation_count=24,
                impact_tier="High",
                confidence="Medium",
                recommendation_title="Reduce access/role ambiguity",
                recommendation_next_step="Add a clear permission boundary to the upload page.",
                evidence=evidence if evidence is not None else ["I can't upload", "Who is admin?"],
            )
        )
        if url is not None:
            encrypted = None
            if secret is not None:
                encrypted = SecretBox(secret_key or "").encrypt(secret)
            connection.execute(
                insert(integrations).values(
                    workspace_id=workspace_id,
                    provider=provider,
                    url=url,
                    enabled=True,
                    secret_encrypted=encrypted,
                )
            )
    return Seeded(
        workspace_id=workspace_id,
        owner_id=owner_id,
        member_id=member_id,
        owner_token=owner_token,
        member_token=member_token,
        theme_id="permissions",
        assistant_id="asst_123",
    )


def enqueue_handoffs(
    engine: Engine,
    seeded: Seeded,
    settings: Settings | None = None,
    count: int = 1,
    *,
    actor_id: str | None = None,
) -> list[str]:
    """Commit `count` handoffs in one transaction; return their ids.

    The seeded member sends them unless `actor_id` names another member.
    """
    with Session(engine) as session, session.begin():
        return [
            enqueue_handoff(
                session,
                workspace_id=seeded.workspace_id,
                actor_id=actor_id or seeded.member_id,
                theme_id=seeded.theme_id,
                assistant_id=seeded.assistant_id,
                range={"preset": "30d"},
                settings=settings,
            )
            for _ in range(count)
        ]
