"""Retention: old published outbox rows and finished history go in batches; the rest stays."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, delete, func, select

from outbox.retention import prune, run_retention
from schema.tables import delivery_attempts, integrations, outbox
from tests.integration.ops_rows import add_delivery, add_outbox_row, ago, delivery_ids
from tests.seed import seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"


def count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_old_finished_history_goes_and_recent_stays(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    old = ago(days=31)
    old_delivered = add_delivery(engine, "acme", status="delivered", created_at=old, attempts=2)
    old_cancelled = add_delivery(engine, "acme", status="cancelled", created_at=old, attempts=1)
    kept = {
        add_delivery(engine, "acme", status="delivered", created_at=ago(days=29)),
        # Created long ago but redelivered recently: its last change is what counts.
        add_delivery(engine, "acme", status="delivered", created_at=old, updated_at=ago(days=1)),
        # Failed and the integration still exists: kept until it is resolved.
        add_delivery(engine, "acme", status="failed", created_at=old, attempts=3),
        # Not final yet, however old.
        add_delivery(engine, "acme", status="retrying", created_at=old),
        add_delivery(engine, "acme", status="pending", created_at=old),
    }

    result = prune(engine, 30)

    assert kept == delivery_ids(engine)
    assert 2 == result.deliveries
    assert result.finished
    assert old_delivered not in delivery_ids(engine)
    assert old_cancelled not in delivery_ids(engine)
    assert 3 == count(engine, delivery_attempts)


def test_failed_history_goes_once_integration_removed(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    seed_workspace(engine, workspace_id="globex")
    kept = add_delivery(engine, "acme", status="failed", created_at=ago(days=40))
    add_delivery(engine, "globex", status="failed", created_at=ago(days=40), attempts=8)

    prune(engine, 30)

    assert {kept} == delivery_ids(engine)
    with engine.begin() as connection:
        connection.execute(delete(integrations).where(integrations.c.workspace_id == "acme"))
    prune(engine, 30)
    assert set() == delivery_ids(engine)
    assert 0 == count(engine, delivery_attempts)


def test_published_outbox_rows_go_after_retention(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    delivery_id = add_delivery(engine, "acme", status="retrying", created_at=ago(days=40))
    for days in (35, 31):
        add_outbox_row(
            engine, delivery_id, available_at=ago(days=days), published_at=ago(days=days)
        )
    add_outbox_row(engine, delivery_id, available_at=ago(days=3), published_at=ago(days=3))
    # Unpublished rows stay however old they are: they are work still to do.
    add_outbox_row(engine, delivery_id, available_at=ago(days=40))

    result = prune(engine, 30)

    assert 2 == result.outbox_rows
    assert 2 == count(engine, outbox)
    with engine.connect() as connection:
        unpublished = connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar_one()
    assert 1 == unpublished


def test_prune_works_in_batches(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    for _ in range(25):
        add_delivery(engine, "acme", status="delivered", created_at=ago(days=60), attempts=1)

    result = prune(engine, 30, batch_size=10)

    assert 25 == result.deliveries
    assert set() == delivery_ids(engine)


def test_time_budget_stops_early_and_resumes(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    for _ in range(25):
        add_delivery(engine, "acme", status="delivered", created_at=ago(days=60))

    first = prune(engine, 30, batch_size=10, time_budget_s=0.0)
    second = prune(engine, 30, batch_size=10)

    assert 10 == first.deliveries
    assert not first.finished
    assert 15 == second.deliveries
    assert second.finished


def test_run_retention_prunes_then_waits(engine: Engine) -> None:
    seed_workspace(engine, url=HOOK_URL)
    add_delivery(engine, "acme", status="delivered", created_at=ago(days=60))
    stop = threading.Event()
    thread = threading.Thread(target=run_retention, args=(engine, 30, stop, 3600.0))

    thread.start()
    try:
        for _ in range(100):
            if not delivery_ids(engine):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)

    assert set() == delivery_ids(engine)
    assert not thread.is_alive()
