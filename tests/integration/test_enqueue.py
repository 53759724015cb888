"""`enqueue_handoff` as product code calls it: checks, their order, and nothing committed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from handoff.settings import Settings
from outbox import (
    InvalidHandoff,
    NotPermitted,
    ThemeNotFound,
    WebhookDisabled,
    WebhookNotConfigured,
    enqueue_handoff,
)
from schema.tables import deliveries, members, outbox
from tests.seed import Seeded, seed_workspace


def enqueue(engine: Engine, seeded: Seeded, settings: Settings, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "workspace_id": seeded.workspace_id,
        "actor_id": seeded.member_id,
        "theme_id": seeded.theme_id,
        "assistant_id": seeded.assistant_id,
        "range": {"preset": "30d"},
        "settings": settings,
    }
    arguments.update(overrides)
    with Session(engine) as session, session.begin():
        return enqueue_handoff(session, **arguments)  # type: ignore[arg-type]


def add_member(engine: Engine, workspace_id: str, **columns: object) -> str:
    member_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(members).values(
                id=member_id,
                workspace_id=workspace_id,
                name="Someone",
                role="member",
                token_hash=uuid.uuid4().bytes,
                **columns,
            )
        )
    return member_id


def test_enqueue_writes_pending_delivery_and_outbox_row(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    delivery_id = enqueue(engine, seeded, settings)
    with engine.connect() as connection:
        row = connection.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one()
        outbox_rows = connection.execute(select(func.count()).select_from(outbox)).scalar_one()
    assert "pending" == row.status
    assert "http://127.0.0.1:9/…" == row.url_redacted
    assert len(settings.retry_schedule_s) + 1 == row.max_automatic_attempts
    assert 1 == outbox_rows


def test_member_without_export_not_permitted(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    member_id = add_member(engine, seeded.workspace_id, assistant_ids=["asst_123"])
    with pytest.raises(NotPermitted) as caught:
        enqueue(engine, seeded, settings, actor_id=member_id)
    assert caught.value.message.startswith("not permitted")


def test_member_outside_assistant_scope_not_permitted(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    member_id = add_member(
        engine, seeded.workspace_id, permissions=["insights.export"], assistant_ids=["asst_other"]
    )
    with pytest.raises(NotPermitted):
        enqueue(engine, seeded, settings, actor_id=member_id)


def test_permission_checked_before_existence(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    member_id = add_member(engine, seeded.workspace_id)
    with pytest.raises(NotPermitted):
        enqueue(engine, seeded, settings, actor_id=member_id, theme_id="nope")


def test_theme_of_other_assistant_not_found(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with pytest.raises(ThemeNotFound):
        enqueue(engine, seeded, settings, actor_id=seeded.owner_id, assistant_id="asst_9")


def test_invalid_range_before_configuration(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine)
    with pytest.raises(InvalidHandoff):
        enqueue(engine, seeded, settings, range={"from": "2026-01-01"})


def test_not_configured(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine)
    with pytest.raises(WebhookNotConfigured) as caught:
        enqueue(engine, seeded, settings)
    assert caught.value.message.startswith("Webhook handoff is not configured")


def test_disabled(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with engine.begin() as connection:
        connection.execute(text("UPDATE integrations SET enabled = false"))
    with pytest.raises(WebhookDisabled) as caught:
        enqueue(engine, seeded, settings)
    assert caught.value.message.startswith("Webhook handoff is configured but disabled")


def test_hostile_text_still_commits(engine: Engine, settings: Settings) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    delivery_id = enqueue(engine, seeded, settings, sources=["nul\x00", "lone \ud800", "ok"])
    with engine.connect() as connection:
        body = connection.execute(
            select(deliveries.c.body).where(deliveries.c.id == delivery_id)
        ).scalar_one()
    assert "\ufffd".encode() in body
