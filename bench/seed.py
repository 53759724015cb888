"""Benchmark data: one workspace whose webhook points at the receiver, and the action's table."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Column, Engine, MetaData, Table, insert, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from handoff.secret_box import SecretBox
from schema.tables import integrations, members, themes, workspaces

WORKSPACE_ID = "bench"
THEME_ID = "permissions"
ASSISTANT_ID = "asst_bench"
# A Standard Webhooks secret, so every request carries both signature headers.
SIGNING_SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMDEyMzQ1Njc4OWFi"  # noqa: S105 - a fake secret

bench_metadata = MetaData()

# The product action that a handoff accompanies; the benchmark's own table, not a migration.
bench_actions = Table(
    "bench_actions",
    bench_metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("payload", JSONB, nullable=False),
)

_EVIDENCE = [
    "I can't find where to give my teammate upload rights.",
    "Who is the admin on our account? The page says ask your admin.",
    "Uploading fails with 'not permitted' but I'm on the paid plan.",
    "We switched owners last month and now nobody can change roles.",
    "Is there a way to see which permissions each role has?",
]


@dataclass(frozen=True)
class Seeded:
    """Ids the producers pass to `enqueue_handoff`."""

    workspace_id: str
    member_id: str
    theme_id: str
    assistant_id: str


def seed(engine: Engine, webhook_url: str, secret_key: str) -> Seeded:
    """Insert the workspace, an exporting member, a theme and the integration; create the table.

    Args:
        engine: an engine on the benchmark's migrated database.
        webhook_url: the receiver's URL.
        secret_key: the `HANDOFF_SECRET_KEY` the workers run with.
    """
    member_id = str(uuid.uuid4())
    with engine.begin() as connection:
        bench_metadata.create_all(connection)
        connection.execute(
            insert(workspaces).values(id=WORKSPACE_ID, name="Bench Inc", plan_tier="GROWTH")
        )
        connection.execute(
            insert(members).values(
                id=member_id,
                workspace_id=WORKSPACE_ID,
                name="Bea Bench",
                role="member",
                permissions=["insights.export"],
                assistant_ids=[ASSISTANT_ID],
                token_hash=hashlib.sha256(secrets.token_bytes(24)).digest(),
            )
        )
        connection.execute(
            insert(themes).values(
                workspace_id=WORKSPACE_ID,
                id=THEME_ID,
                assistant_id=ASSISTANT_ID,
                label="Permissions confusion",
                conversation_count=31,
                impact_tier="High",
                confidence="Medium",
                recommendation_title="Reduce access and role ambiguity",
                recommendation_next_step="Name the admin on the upload page and link role docs.",
                evidence=_EVIDENCE,
            )
        )
        connection.execute(
            insert(integrations).values(
                workspace_id=WORKSPACE_ID,
                provider="generic",
                url=webhook_url,
                enabled=True,
                secret_encrypted=SecretBox(secret_key).encrypt(SIGNING_SECRET),
            )
        )
    return Seeded(
        workspace_id=WORKSPACE_ID,
        member_id=member_id,
        theme_id=THEME_ID,
        assistant_id=ASSISTANT_ID,
    )


def clear_handoffs(engine: Engine) -> None:
    """Delete every delivery, attempt, outbox row and action, keeping the seeded rows."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE outbox, delivery_attempts, deliveries, bench_actions"))
