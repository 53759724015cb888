"""Query plans of the relay and the worker: none grows with every attempt since the last VACUUM.

After many attempts, the partial indexes on `status` hold one dead entry per finished
attempt until VACUUM runs, while ANALYZE reports almost no delivery in `sending`.
"""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from handoff.db import make_engine
from outbox.relay import _CLAIM as _PUBLISH
from tests.seed import seed_workspace
from worker.outcomes import _RECORD

CHURNED = 3000
# The partial indexes whose predicate is on `status`.
STATUS_INDEXES = (
    "deliveries_leased",
    "deliveries_queued",
    "deliveries_retrying",
    "deliveries_open_by_workspace",
)

_CHURN = text(
    """
    INSERT INTO deliveries (
        id, workspace_id, event, body, status, provider, url_redacted, created_at,
        lease_until, attempt_count, max_automatic_attempts
    )
    SELECT gen_random_uuid(), :workspace_id, 'solhelps.insight.handoff', '\\x7b7d'::bytea,
           'sending', 'generic', 'http://127.0.0.1:9/hook', now(), now(), 1, 8
    FROM generate_series(1, :count)
    """
)


def churn(engine: Engine) -> list[str]:
    """Finish many attempts, ANALYZE, and return a few of the deliveries' ids."""
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with engine.begin() as connection:
        connection.execute(_CHURN, {"workspace_id": seeded.workspace_id, "count": CHURNED})
        connection.execute(text("UPDATE deliveries SET status = 'delivered', lease_until = NULL"))
        sample = connection.execute(text("SELECT id::text FROM deliveries LIMIT 5")).scalars()
        delivery_ids = list(sample)
        connection.execute(
            text(
                "INSERT INTO outbox (delivery_id, available_at) SELECT unnest(:ids), now()"
            ).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=False)))),
            {"ids": delivery_ids},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE deliveries, delivery_attempts, outbox"))
    return delivery_ids


def status_indexes_in(plan: str) -> list[str]:
    return [index for index in STATUS_INDEXES if index in plan]


def test_publish_uses_primary_key(engine: Engine) -> None:
    churn(engine)

    with engine.connect() as connection:
        plan = "\n".join(
            connection.execute(text(f"EXPLAIN {_PUBLISH.text}"), {"batch_size": 500}).scalars()
        )

    assert [] == status_indexes_in(plan)
    assert "deliveries_pkey" in plan


def test_record_uses_primary_key(engine: Engine) -> None:
    sample = churn(engine)

    outcomes = [
        {"attempt_id": index, "delivery_id": delivery_id, "number": 1, "status": "delivered"}
        for index, delivery_id in enumerate(sample)
    ]
    explain = text(f"EXPLAIN {_RECORD.text}").bindparams(bindparam("outcomes", type_=JSONB))
    with engine.connect() as connection:
        plan = "\n".join(
            connection.execute(
                explain,
                {"outcomes": outcomes, "channel": "c", "closed_reason": "r"},
            ).scalars()
        )

    assert [] == status_indexes_in(plan)
    assert "deliveries_pkey" in plan


def plan_cache_mode(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SHOW plan_cache_mode")).scalar_one())


def test_worker_engine_plans_each_execution(database_url: str) -> None:
    worker_engine = make_engine(database_url, pool_size=1, max_overflow=0, custom_plans=True)
    default_engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        assert "force_custom_plan" == plan_cache_mode(worker_engine)
        # Again on the same pooled connection: the setting outlives the first transaction.
        assert "force_custom_plan" == plan_cache_mode(worker_engine)
        assert "auto" == plan_cache_mode(default_engine)
    finally:
        worker_engine.dispose()
        default_engine.dispose()
