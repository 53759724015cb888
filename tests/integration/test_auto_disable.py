"""Auto-disable: an integration whose deliveries have all failed for N days is switched off."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Engine, select

from handoff.settings import Settings
from outbox.auto_disable import disable_failing_integrations
from outbox.sweeper import Sweeper
from schema.tables import deliveries, integrations
from tests.integration.ops_rows import add_delivery, ago, set_integration_updated_at
from tests.seed import seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"


def integration(engine: Engine, workspace_id: str = "acme") -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(integrations).where(integrations.c.workspace_id == workspace_id)
        ).one()


def status_of(engine: Engine, delivery_id: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                select(deliveries.c.status).where(deliveries.c.id == delivery_id)
            ).scalar_one()
        )


def seed_failing(engine: Engine, workspace_id: str = "acme") -> None:
    """A workspace whose integration was saved 30 days ago."""
    seed_workspace(engine, workspace_id=workspace_id, url=HOOK_URL)
    set_integration_updated_at(engine, workspace_id, ago(days=30))


def test_all_failed_for_days_disables_and_cancels(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(
        engine, "acme", status="delivered", created_at=ago(days=9), delivered_at=ago(days=9)
    )
    for days in (6, 4, 1):
        add_delivery(engine, "acme", status="failed", created_at=ago(days=days))
    open_one = add_delivery(engine, "acme", status="retrying", next_attempt_at=ago(hours=-1))

    with structlog.testing.capture_logs() as events:
        disabled = disable_failing_integrations(engine, 5)

    assert ["acme"] == [item.workspace_id for item in disabled]
    assert 3 == disabled[0].failed
    row = integration(engine)
    assert row.enabled is False
    assert row.disabled_at is not None
    assert row.disabled_reason.startswith(
        "disabled automatically: every delivery failed for 5 days"
    )
    assert "cancelled" == status_of(engine, open_one)
    [event] = [event for event in events if event["event"] == "integration_auto_disabled"]
    assert "acme" == event["workspace_id"]
    assert 3 == event["failed"]
    assert 1 == event["cancelled"]


def test_streak_shorter_than_days_keeps_integration(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=4, hours=23))

    assert [] == disable_failing_integrations(engine, 5)
    assert integration(engine).enabled is True


def test_delivery_since_first_failure_keeps_integration(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=8))
    add_delivery(engine, "acme", status="failed", created_at=ago(days=6))
    # One delivery got through two days ago: the failures before it are no streak.
    add_delivery(
        engine, "acme", status="delivered", created_at=ago(days=7), delivered_at=ago(days=2)
    )
    add_delivery(engine, "acme", status="failed", created_at=ago(days=1))

    assert [] == disable_failing_integrations(engine, 5)
    assert integration(engine).enabled is True


def test_failures_before_last_change_do_not_count(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=9))
    # The admin fixed the URL (or enabled it again) three days ago.
    set_integration_updated_at(engine, "acme", ago(days=3))
    add_delivery(engine, "acme", status="failed", created_at=ago(days=2))

    assert [] == disable_failing_integrations(engine, 5)
    assert integration(engine).enabled is True


def test_only_failing_workspace_is_disabled(engine: Engine) -> None:
    seed_failing(engine)
    seed_failing(engine, "globex")
    add_delivery(engine, "acme", status="failed", created_at=ago(days=6))
    add_delivery(engine, "globex", status="failed", created_at=ago(days=6))
    add_delivery(
        engine, "globex", status="delivered", created_at=ago(days=1), delivered_at=ago(days=1)
    )

    disabled = disable_failing_integrations(engine, 5)

    assert ["acme"] == [item.workspace_id for item in disabled]
    assert integration(engine, "globex").enabled is True


def test_zero_days_turns_it_off(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=20))

    assert [] == disable_failing_integrations(engine, 0)
    assert integration(engine).enabled is True


def test_already_disabled_is_left_alone(engine: Engine) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=6))
    assert 1 == len(disable_failing_integrations(engine, 5))
    reason = integration(engine).disabled_reason

    assert [] == disable_failing_integrations(engine, 5)
    assert reason == integration(engine).disabled_reason


def test_sweeper_runs_auto_disable(engine: Engine, settings: Settings) -> None:
    seed_failing(engine)
    add_delivery(engine, "acme", status="failed", created_at=ago(days=6))

    Sweeper(engine, settings).sweep()

    assert integration(engine).enabled is False
