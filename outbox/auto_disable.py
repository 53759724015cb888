"""Auto-disable: switches off an integration whose deliveries have all failed for days.

"All failed for N days" means, for an enabled integration: its failure streak started at
least N days ago and nothing was delivered since. The streak is the failed deliveries
created after both the workspace's last delivered delivery and the integration's last
change (`updated_at`), and it starts at the oldest of them. Counting only deliveries created
after the last change means that fixing the URL, rotating the secret or enabling the
integration again starts a new streak, so an integration enabled after an auto-disable is
not disabled again by the same old failures.

A failed delivery is final: the retry schedule ran out (about 27.6 hours by default) or the
receiver rejected it. Disabling works as an admin's toggle would: the integration's
pending, queued and retrying deliveries become `cancelled`, and `disabled_reason` tells the
admins why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Engine, text

from outbox.cancellation import cancel_open_deliveries
from outbox.events import format_timestamp

log = structlog.get_logger(__name__)

INTEGRATION_AUTO_DISABLED = "integration_auto_disabled"

# NOTE: the last-delivered lookup reads each enabled workspace's deliveries through the
# (workspace_id, created_at) history index; that is fine hourly at moderate volume.
_FIND_FAILING = text(
    """
    SELECT i.workspace_id, min(d.created_at) AS first_failure, count(*) AS failed
    FROM integrations i
    JOIN deliveries d ON d.workspace_id = i.workspace_id AND d.status = 'failed'
    WHERE i.enabled
      AND d.created_at > i.updated_at
      AND d.created_at > coalesce(
          (SELECT max(s.delivered_at) FROM deliveries s WHERE s.workspace_id = i.workspace_id),
          '-infinity')
    GROUP BY i.workspace_id
    HAVING min(d.created_at) < now() - make_interval(days => :days)
    """
)

# `enabled` and `updated_at` are checked again under the row lock: an admin who changed the
# integration since the search started a new streak, and wins.
_DISABLE = text(
    """
    UPDATE integrations SET
        enabled = false, disabled_reason = :reason, disabled_at = now(), updated_at = now()
    WHERE workspace_id = :workspace_id AND enabled AND updated_at < :first_failure
    RETURNING workspace_id
    """
)


@dataclass(frozen=True)
class DisabledIntegration:
    """An integration that auto-disable switched off."""

    workspace_id: str
    first_failure: datetime
    failed: int
    reason: str


def disable_failing_integrations(engine: Engine, days: int) -> list[DisabledIntegration]:
    """Disable every enabled integration whose deliveries have all failed for `days` days.

    Each integration is disabled in a transaction of its own, which also cancels its open
    deliveries. Logs `integration_auto_disabled` for each.

    Args:
        engine: the service's database.
        days: the length of the failure streak, in days; 0 or less disables nothing.

    Returns:
        The integrations disabled by this call.
    """
    if days <= 0:
        return []
    with engine.connect() as connection:
        failing = connection.execute(_FIND_FAILING, {"days": days}).all()

    disabled = []
    for row in failing:
        reason = (
            f"disabled automatically: every delivery failed for {days} days "
            f"(first failure {format_timestamp(row.first_failure)}, {row.failed} failed); "
            "fix the endpoint, then enable the integration again"
        )
        with engine.begin() as connection:
            changed = connection.execute(
                _DISABLE,
                {
                    "workspace_id": row.workspace_id,
                    "reason": reason,
                    "first_failure": row.first_failure,
                },
            ).first()
            if changed is None:
                continue
            cancelled = cancel_open_deliveries(connection, row.workspace_id, reason)
        log.warning(
            INTEGRATION_AUTO_DISABLED,
            workspace_id=row.workspace_id,
            first_failure=format_timestamp(row.first_failure),
            failed=int(row.failed),
            days=days,
            cancelled=cancelled,
        )
        disabled.append(
            DisabledIntegration(
                workspace_id=row.workspace_id,
                first_failure=row.first_failure,
                failed=int(row.failed),
                reason=reason,
            )
        )
    return disabled
