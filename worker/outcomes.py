"""Recording attempts: one statement stores several outcomes and their deliveries' status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from handoff.redaction import redact_url
from outbox.events import TEST_EVENT
from schema.tables import ATTEMPT_CHANNEL
from worker.claims import Claim
from worker.http_attempt import AttemptResult
from worker.retry_policy import RetryDecision

# The outcomes travel as one JSON array, so a message's attempts cost one round trip however
# many there are. The conditions on `outcome IS NULL` and on the attempt number leave alone
# an attempt that the sweeper already recorded as interrupted after its lease ran out. A due
# retry gets its outbox row in the same transaction, so it cannot be lost. A retry whose
# integration was disabled or removed meanwhile (a 410 from a sibling attempt of the same
# message, say) is cancelled instead, as the deliveries that were waiting then were. Only
# test events notify: the API's test send is the one listener, and every NOTIFY takes a
# lock at commit that all notifying transactions of the database share.
#
# `locked` finds the deliveries by primary key and locks, in id order, those still
# `sending`. Its test is a CASE on purpose: with `d.status = 'sending'`, the planner read a
# partial index on status instead, because statistics show almost no delivery in
# `sending`. Those indexes keep one dead entry per finished attempt until VACUUM, so that
# plan cost more with every attempt (5 ms per record after 10,000 attempts). A row changed
# meanwhile by the sweeper is tested again as last committed, as in the claim.
_RECORD = text(
    """
    WITH outcome AS (
        SELECT * FROM jsonb_to_recordset(:outcomes) AS o(
            attempt_id bigint, delivery_id uuid, number int, duration_ms int,
            url_redacted text, request_headers jsonb, body_size int, status_code int,
            response_headers jsonb, response_body_excerpt text, outcome text,
            error_class text, error_message text, next_attempt_at timestamptz,
            status text, failure_reason text, provider text, notify boolean,
            workspace_id text
        )
    ), locked AS (
        SELECT id, attempt_count FROM deliveries
        WHERE id IN (SELECT delivery_id FROM outcome)
          AND CASE status WHEN 'sending' THEN true ELSE false END
        ORDER BY id FOR UPDATE
    ), attempt AS (
        UPDATE delivery_attempts a SET
            duration_ms = o.duration_ms, url_redacted = o.url_redacted,
            request_headers = o.request_headers, body_size = o.body_size,
            status_code = o.status_code, response_headers = o.response_headers,
            response_body_excerpt = o.response_body_excerpt, outcome = o.outcome,
            error_class = o.error_class, error_message = o.error_message,
            next_attempt_at = o.next_attempt_at
        FROM outcome o
        WHERE a.id = o.attempt_id AND a.outcome IS NULL
        RETURNING a.delivery_id
    ), cancelled AS (
        SELECT o.delivery_id, coalesce(i.disabled_reason, :closed_reason) AS reason
        FROM outcome o LEFT JOIN integrations i ON i.workspace_id = o.workspace_id
        WHERE o.status = 'retrying' AND i.enabled IS NOT TRUE
    ), delivery AS (
        UPDATE deliveries d SET
            status = CASE WHEN c.delivery_id IS NULL THEN o.status ELSE 'cancelled' END,
            lease_until = NULL,
            next_attempt_at = CASE WHEN c.delivery_id IS NULL THEN o.next_attempt_at END,
            delivered_at = CASE WHEN o.status = 'delivered' THEN now() ELSE d.delivered_at END,
            failure_reason = coalesce(c.reason, o.failure_reason),
            provider = o.provider, url_redacted = o.url_redacted, next_trigger = 'scheduled',
            updated_at = now()
        FROM outcome o
        JOIN locked l ON l.id = o.delivery_id
        LEFT JOIN cancelled c ON c.delivery_id = o.delivery_id
        WHERE d.id = o.delivery_id AND l.attempt_count = o.number
        RETURNING d.id, d.status, d.next_attempt_at, o.notify
    ), scheduled AS (
        INSERT INTO outbox (delivery_id, trigger, available_at)
        SELECT id, 'scheduled', next_attempt_at FROM delivery WHERE status = 'retrying'
        RETURNING id
    )
    SELECT id, CASE WHEN notify THEN pg_notify(:channel, id::text) END FROM delivery
    """
).bindparams(bindparam("outcomes", type_=JSONB))


# The failure reason of a retry cancelled because its integration was removed; a disabled
# integration gives its own reason.
CLOSED_REASON = "webhook integration removed"


@dataclass(frozen=True)
class Outcome:
    """One finished attempt: what was claimed, what was sent, what came back, what follows."""

    claim: Claim
    headers: dict[str, str]
    result: AttemptResult
    decision: RetryDecision


def record_outcomes(connection: Connection, outcomes: Sequence[Outcome]) -> set[str]:
    """Store `outcomes` and the new status of each delivery, in one statement.

    Returns:
        The delivery ids whose outcome was stored; the others had lost their lease, and the
        sweeper has recorded their attempt as interrupted.
    """
    if not outcomes:
        return set()
    rows = connection.execute(
        _RECORD,
        {
            "outcomes": [_as_json(outcome) for outcome in outcomes],
            "channel": ATTEMPT_CHANNEL,
            "closed_reason": CLOSED_REASON,
        },
    ).all()
    return {str(row.id) for row in rows}


def _as_json(outcome: Outcome) -> dict[str, Any]:
    claim, result, decision = outcome.claim, outcome.result, outcome.decision
    return {
        "attempt_id": claim.attempt_id,
        "delivery_id": claim.delivery_id,
        "number": claim.number,
        "duration_ms": result.duration_ms,
        "url_redacted": redact_url(claim.url),
        "request_headers": outcome.headers,
        "body_size": len(claim.body),
        "status_code": result.status_code,
        "response_headers": result.response_headers,
        "response_body_excerpt": result.response_body_excerpt,
        "outcome": decision.outcome,
        "error_class": result.error_class,
        "error_message": result.error_message,
        "next_attempt_at": isoformat_or_none(decision.next_attempt_at),
        "status": decision.status,
        "failure_reason": decision.failure_reason,
        "provider": claim.provider,
        "notify": claim.event == TEST_EVENT,
        "workspace_id": claim.workspace_id,
    }


def isoformat_or_none(moment: datetime | None) -> str | None:
    """Return `moment` in ISO 8601, or None."""
    return None if moment is None else moment.isoformat()
