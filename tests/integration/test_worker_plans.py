"""Worker query plans: no plan whose cost grows with every attempt since the last VACUUM.

After many attempts, the partial indexes on `status` hold one dead entry per finished
attempt until VACUUM runs, while ANALYZE reports almost no delivery in `sending`.
"""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from handoff.db import make_engine
from tests.seed import seed_workspace
from worker.outcomes import _RECORD

CHURNED = 3000

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


def test_record_uses_primary_key(engine: Engine) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with engine.begin() as connection:
        connection.execute(_CHURN, {"workspace_id": seeded.workspace_id, "count": CHURNED})
        connection.execute(text("UPDATE deliveries SET status = 'delivered', lease_until = NULL"))
        sample = connection.execute(text("SELECT id::text FROM deliveries LIMIT 5")).scalars().all()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE deliveries, delivery_attempts"))

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

    assert "deliveries_leased" not in plan
    assert "deliveries_open_by_workspace" not in plan
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
