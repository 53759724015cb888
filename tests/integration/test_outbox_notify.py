"""The outbox trigger wakes the relay for inserted rows only, not for an INSERT of no rows."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from handoff.db import libpq_url
from schema.tables import OUTBOX_CHANNEL
from tests.seed import seed_workspace

_OUTBOX_ROWS_FOR_WORKSPACE = text(
    """
    INSERT INTO outbox (delivery_id, available_at)
    SELECT id, now() FROM deliveries WHERE workspace_id = :workspace_id
    """
)
_ADD_DELIVERY = text(
    """
    INSERT INTO deliveries (
        id, workspace_id, event, body, status, provider, url_redacted, max_automatic_attempts
    ) VALUES (
        gen_random_uuid(), :workspace_id, 'solhelps.insight.handoff', '\\x7b7d'::bytea,
        'pending', 'generic', 'http://127.0.0.1:9/hook', 8
    )
    """
)


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    connection = psycopg.connect(libpq_url(database_url), autocommit=True)
    connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
    yield connection
    connection.close()


def notifications(listener: psycopg.Connection[tuple[object, ...]]) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.5))


def test_insert_of_no_rows_does_not_notify(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")

    with engine.begin() as connection:
        connection.execute(_OUTBOX_ROWS_FOR_WORKSPACE, {"workspace_id": seeded.workspace_id})

    assert 0 == notifications(listener)


def test_inserted_rows_notify_once(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with engine.begin() as connection:
        for _ in range(3):
            connection.execute(_ADD_DELIVERY, {"workspace_id": seeded.workspace_id})

    with engine.begin() as connection:
        connection.execute(_OUTBOX_ROWS_FOR_WORKSPACE, {"workspace_id": seeded.workspace_id})

    assert 1 == notifications(listener)
