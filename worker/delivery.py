"""One delivery attempt against Postgres state: claim a lease, POST, record the outcome."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from handoff.redaction import redact_url
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox.cancellation import cancel_open_deliveries
from schema.tables import ATTEMPT_CHANNEL
from worker.http_attempt import AttemptResult, send_attempt
from worker.metrics import record_attempt
from worker.retry_policy import AttemptKind, RetryDecision, decide
from worker.signing import USER_AGENT, build_headers

log = structlog.get_logger(__name__)

# The claim is one statement: it takes the lease, counts the attempt and opens its row.
# Only a `queued` delivery can be claimed, so a duplicate message (a sweeper re-publish, a
# broker redelivery) finds `sending`, `retrying` or a final status and does nothing.
#
# The relay publishes before it commits, so a message often arrives while the row is still
# `pending` or `retrying` and locked by the relay. `locked` waits for that lock and returns
# the row as committed then, and the status test is on `locked`, not on `d`. Do not move it
# back to `d.status = 'queued'`. An UPDATE tests its WHERE against the row as of its
# snapshot, so it skips a row that is not `queued` there without waiting for the lock. The
# delivery then waits for the sweeper's grace period (20 s by default) instead of being sent.
_CLAIM = text(
    """
    WITH locked AS (
        SELECT id, status FROM deliveries WHERE id = :delivery_id FOR UPDATE
    ), claimed AS (
        UPDATE deliveries d SET
            status = 'sending',
            lease_until = now() + make_interval(secs => :lease_s),
            attempt_count = d.attempt_count + 1,
            automatic_attempts = d.automatic_attempts
                + CASE WHEN d.next_trigger = 'manual' THEN 0 ELSE 1 END,
            updated_at = now()
        FROM locked, integrations i
        WHERE d.id = locked.id AND locked.status = 'queued'
          AND i.workspace_id = d.workspace_id AND i.enabled
        RETURNING d.id, d.workspace_id, d.event, d.body, d.attempt_count, d.automatic_attempts,
                  d.max_automatic_attempts, d.next_trigger, i.provider, i.url,
                  i.secret_encrypted, i.previous_secret_encrypted,
                  i.previous_secret_valid_until
    ), attempt AS (
        INSERT INTO delivery_attempts (delivery_id, number, trigger, started_at)
        SELECT id, attempt_count, next_trigger, clock_timestamp() FROM claimed
        RETURNING id
    )
    SELECT claimed.*, attempt.id AS attempt_id FROM claimed, attempt
    """
)

# Recording is one statement too. The conditions on `outcome IS NULL` and on the attempt
# number leave alone an attempt that the sweeper already recorded as interrupted after its
# lease ran out. A due retry gets its outbox row in the same transaction, so it cannot be lost.
_RECORD = text(
    """
    WITH attempt AS (
        UPDATE delivery_attempts SET
            duration_ms = :duration_ms, url_redacted = :url_redacted,
            request_headers = :request_headers, body_size = :body_size,
            status_code = :status_code, response_headers = :response_headers,
            response_body_excerpt = :response_body_excerpt, outcome = :outcome,
            error_class = :error_class, error_message = :error_message,
            next_attempt_at = :next_attempt_at
        WHERE id = :attempt_id AND outcome IS NULL
        RETURNING delivery_id
    ), delivery AS (
        UPDATE deliveries SET
            status = :status, lease_until = NULL, next_attempt_at = :next_attempt_at,
            delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END,
            failure_reason = :failure_reason, provider = :provider, url_redacted = :url_redacted,
            next_trigger = 'scheduled', updated_at = now()
        WHERE id = :delivery_id AND status = 'sending' AND attempt_count = :number
        RETURNING id
    ), scheduled AS (
        INSERT INTO outbox (delivery_id, trigger, available_at)
        SELECT id, 'scheduled', :next_attempt_at FROM delivery
        WHERE :status = 'retrying'
        RETURNING id
    )
    SELECT (SELECT count(*) FROM delivery) AS recorded, pg_notify(:channel, :notify_payload)
    """
).bindparams(
    bindparam("request_headers", type_=JSONB),
    bindparam("response_headers", type_=JSONB),
)

_DISABLE_GONE = text(
    """
    UPDATE integrations SET
        enabled = false, disabled_reason = :reason, disabled_at = now(), updated_at = now()
    WHERE workspace_id = :workspace_id
    """
)


@dataclass(frozen=True)
class Claim:
    """A delivery leased for one attempt, with the integration as it is now."""

    delivery_id: str
    workspace_id: str
    event: str
    body: bytes
    number: int
    automatic_attempts: int
    max_automatic_attempts: int
    trigger: str
    provider: str
    url: str
    secrets: list[str]
    attempt_id: int


class DeliveryWorker:
    """Makes one attempt per message; Postgres decides status, attempt count and next time."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        client: httpx.Client,
        secret_box: SecretBox,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        # The claim and the record are single statements, atomic on their own, so they run
        # in autocommit mode: psycopg then sends no BEGIN and no COMMIT, which halves the
        # round trips of an attempt. A 410 still records in a transaction of its own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._settings = settings
        self._client = client
        self._secret_box = secret_box
        # random.Random is not thread-safe for concurrent calls from worker threads.
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._rng_lock = threading.Lock()

    def deliver(self, delivery_id: str) -> None:
        """Claim `delivery_id`, POST it once and record the attempt; a no-op when not claimable."""
        claim = self._claim(delivery_id)
        if claim is None:
            log.debug("delivery_skipped", delivery_id=delivery_id)
            return
        bound = log.bind(
            delivery_id=claim.delivery_id, workspace_id=claim.workspace_id, attempt=claim.number
        )

        timestamp = int(time.time())
        headers = build_headers(
            delivery_id=claim.delivery_id,
            event=claim.event,
            provider=claim.provider,
            timestamp=timestamp,
            body=claim.body,
            secrets=claim.secrets,
            user_agent=USER_AGENT,
        )
        bound.info("delivery_attempted", trigger=claim.trigger, outcome="sending")
        result = send_attempt(
            self._client,
            url=claim.url,
            body=claim.body,
            headers=headers,
            timeout_s=self._settings.delivery_timeout_s,
        )

        with self._rng_lock:
            decision = decide(
                kind=result.kind,
                automatic_attempts_done=claim.automatic_attempts,
                max_automatic_attempts=claim.max_automatic_attempts,
                schedule_s=self._settings.retry_schedule_s,
                jitter=self._settings.retry_jitter,
                retry_after_s=result.retry_after_s,
                finished_at=datetime.now(UTC),
                rng=self._rng,
                detail=_detail(result),
            )
        recorded = self._record(claim, headers, result, decision)
        self._log_outcome(bound, result, decision, recorded)
        record_attempt(
            claim.event, decision.outcome if recorded else "interrupted", result.duration_ms
        )

    def _claim(self, delivery_id: str) -> Claim | None:
        with self._autocommit.connect() as connection:
            row = connection.execute(
                _CLAIM, {"delivery_id": delivery_id, "lease_s": self._settings.lease_s}
            ).one_or_none()
        if row is None:
            return None
        return Claim(
            delivery_id=str(row.id),
            workspace_id=row.workspace_id,
            event=row.event,
            body=bytes(row.body),
            number=row.attempt_count,
            automatic_attempts=row.automatic_attempts,
            max_automatic_attempts=row.max_automatic_attempts,
            trigger=row.next_trigger,
            provider=row.provider,
            url=row.url,
            secrets=self._secrets(row),
            attempt_id=row.attempt_id,
        )

    def _secrets(self, row: Any) -> list[str]:
        """Return the secrets that sign this attempt: the current one, and the previous during
        its 24-hour rotation window."""
        secrets = []
        if row.secret_encrypted is not None:
            secrets.append(self._secret_box.decrypt(row.secret_encrypted))
        previous_valid = row.previous_secret_valid_until is not None and (
            row.previous_secret_valid_until > datetime.now(UTC)
        )
        if row.previous_secret_encrypted is not None and previous_valid:
            secrets.append(self._secret_box.decrypt(row.previous_secret_encrypted))
        return [secret for secret in secrets if secret]

    def _record(
        self,
        claim: Claim,
        headers: dict[str, str],
        result: AttemptResult,
        decision: RetryDecision,
    ) -> bool:
        url_redacted = redact_url(claim.url)
        gone = result.kind is AttemptKind.GONE
        # A 410 also disables the integration and cancels its open deliveries, so that one
        # needs all three statements in one transaction.
        with self._engine.begin() if gone else self._autocommit.connect() as connection:
            recorded = connection.execute(
                _RECORD,
                {
                    "attempt_id": claim.attempt_id,
                    "delivery_id": claim.delivery_id,
                    "number": claim.number,
                    "duration_ms": result.duration_ms,
                    "url_redacted": url_redacted,
                    "request_headers": headers,
                    "body_size": len(claim.body),
                    "status_code": result.status_code,
                    "response_headers": result.response_headers,
                    "response_body_excerpt": result.response_body_excerpt,
                    "outcome": decision.outcome,
                    "error_class": result.error_class,
                    "error_message": result.error_message,
                    "next_attempt_at": decision.next_attempt_at,
                    "status": decision.status,
                    "failure_reason": decision.failure_reason,
                    "provider": claim.provider,
                    "channel": ATTEMPT_CHANNEL,
                    "notify_payload": claim.delivery_id,
                },
            ).scalar_one()
            if recorded and gone:
                reason = "endpoint answered 410 Gone"
                connection.execute(
                    _DISABLE_GONE, {"workspace_id": claim.workspace_id, "reason": reason}
                )
                cancel_open_deliveries(connection, claim.workspace_id, reason)
        return bool(recorded)

    def _log_outcome(
        self,
        bound: structlog.stdlib.BoundLogger,
        result: AttemptResult,
        decision: RetryDecision,
        recorded: bool,
    ) -> None:
        fields: dict[str, Any] = {
            "outcome": decision.outcome,
            "status_code": result.status_code,
            "error_class": result.error_class,
            "duration_ms": result.duration_ms,
        }
        if not recorded:
            # The lease ran out first; the sweeper has recorded this attempt as interrupted.
            bound.warning("delivery_outcome_discarded", **fields)
        elif decision.status == "delivered":
            bound.info("delivery_succeeded", **fields)
        elif decision.status == "retrying":
            bound.info(
                "delivery_retry_scheduled",
                next_attempt_at=_iso(decision.next_attempt_at),
                error_message=result.error_message,
                **fields,
            )
        else:
            bound.error(
                "delivery_failed",
                failure_reason=decision.failure_reason,
                error_message=result.error_message,
                **fields,
            )


def _detail(result: AttemptResult) -> str | None:
    if result.kind is AttemptKind.REDIRECT:
        return result.location
    if result.status_code is not None and result.error_class == "http_error":
        return f"HTTP {result.status_code}"
    return result.error_message


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
