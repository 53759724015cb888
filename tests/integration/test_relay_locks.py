"""The relay's claim skips a delivery being sent instead of waiting for its lock.

A worker that records a 410 has locked its delivery's row, and then cancels the workspace's
open deliveries in the same transaction. A relay batch that has locked one of those open
deliveries and waited for the sent one would deadlock with that worker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, text

from outbox.cancellation import cancel_open_deliveries
from outbox.relay import _CLAIM as _PUBLISH
from tests.seed import seed_workspace

OPEN_ID = "00000000-0000-0000-0000-00000000000a"
SENDING_ID = "00000000-0000-0000-0000-00000000000b"
GONE = "endpoint answered 410 Gone"

_ADD = text(
    """
    INSERT INTO deliveries (
        id, workspace_id, event, body, status, provider, url_redacted, attempt_count,
        max_automatic_attempts, lease_until
    ) VALUES (
        :id, :workspace_id, 'solhelps.insight.handoff', '\\x7b7d'::bytea, :status, 'generic',
        'http://127.0.0.1:9/hook', :attempt_count, 8, :lease_until
    )
    """
)
_ADD_OUTBOX = text("INSERT INTO outbox (delivery_id, available_at) VALUES (:id, now())")


def test_relay_skips_sending_row_locked_by_410(engine: Engine) -> None:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    with engine.begin() as connection:
        for delivery_id, status, attempts, lease in (
            (OPEN_ID, "pending", 0, None),
            # A sent delivery with an unpublished outbox row of its own, as the sweeper
            # leaves when it publishes a slow message again.
            (SENDING_ID, "sending", 1, "2999-01-01T00:00:00+00:00"),
        ):
            connection.execute(
                _ADD,
                {
                    "id": delivery_id,
                    "workspace_id": seeded.workspace_id,
                    "status": status,
                    "attempt_count": attempts,
                    "lease_until": lease,
                },
            )
            connection.execute(_ADD_OUTBOX, {"id": delivery_id})

    relay_result: dict[str, Any] = {}

    def publish() -> None:
        try:
            with engine.begin() as relay:
                ids = relay.execute(_PUBLISH, {"batch_size": 500}).scalars().all()
                relay_result["ids"] = [str(delivery_id) for delivery_id in ids]
                # The batch's Redis round trip, with the rows locked until COMMIT.
                time.sleep(0.5)
        except Exception as error:  # noqa: BLE001 - the test reports it below
            relay_result["error"] = repr(error)

    with engine.connect() as worker, worker.begin():
        # The worker's 410 record has locked the delivery it sent.
        worker.execute(
            text("UPDATE deliveries SET status = 'failed' WHERE id = :id"), {"id": SENDING_ID}
        )
        relay = threading.Thread(target=publish)
        relay.start()
        time.sleep(0.2)
        cancelled = cancel_open_deliveries(worker, seeded.workspace_id, GONE)
    relay.join(timeout=10)

    assert "error" not in relay_result
    assert [OPEN_ID] == relay_result["ids"]
    assert 1 == cancelled
