"""Delivery attempts against Postgres state: claim leases, POST, record the outcomes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import structlog
from psycopg.errors import DeadlockDetected
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox.cancellation import cancel_open_deliveries
from worker.claims import Claim, claim_deliveries
from worker.http_attempt import AttemptResult, send_attempt
from worker.metrics import record_attempt
from worker.outcomes import Outcome, isoformat_or_none, record_outcomes
from worker.retry_policy import AttemptKind, decide
from worker.signing import USER_AGENT, build_headers

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

# The maximum number of threads per worker process that POST the deliveries of messages
# side by side. Threads start only when no idle one is left, so this is a bound, not a count.
# It is far above what fast receivers need, because an attempt that waits for a thread
# spends its lease waiting. Attempts queue only when more than 256 of them hang at once.
DEFAULT_SENDERS = 256

# How many times a claim or a record runs when Postgres ends it as a deadlock victim.
DEADLOCK_TRIES = 3

# How long a message's finished attempts wait for its other attempts before they are recorded.
RECORD_TOGETHER_S = 0.25

_DISABLE_GONE = text(
    """
    UPDATE integrations SET
        enabled = false, disabled_reason = :reason, disabled_at = now(), updated_at = now()
    WHERE workspace_id = :workspace_id
    """
)
_GONE_REASON = "endpoint answered 410 Gone"


class DeliveryWorker:
    """Makes one attempt per delivery of a message; Postgres decides status, count and next time.

    The deliveries of one message are claimed in one statement and POSTed side by side. The
    attempts that end together are recorded in one statement, so a slow receiver delays
    only the record of its own delivery.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        client: httpx.Client,
        secret_box: SecretBox,
        rng: random.Random | None = None,
        senders: int = DEFAULT_SENDERS,
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
        self._senders = ThreadPoolExecutor(senders, thread_name_prefix="handoff-sender")

    def deliver(self, delivery_id: str) -> None:
        """Claim `delivery_id`, POST it once and record the attempt; a no-op when not claimable."""
        self.deliver_many([delivery_id])

    def deliver_many(self, delivery_ids: Sequence[str]) -> None:
        """Make one attempt for each delivery of `delivery_ids` that can be claimed now.

        Ids that are not `queued` (a duplicate message, a delivery already finished) are
        skipped. An error in one attempt, or in recording some attempts, is raised after the
        others have been recorded. The sweeper then records each unrecorded attempt as
        interrupted when its lease runs out.
        """
        claims = _retry_deadlock(lambda: self._claim(delivery_ids))
        if len(claims) < len(delivery_ids):
            claimed = {claim.delivery_id for claim in claims}
            for delivery_id in delivery_ids:
                if delivery_id not in claimed:
                    log.debug("delivery_skipped", delivery_id=delivery_id)
        if not claims:
            return

        if len(claims) == 1:
            outcome = self._attempt(claims[0])
            if outcome is not None:
                self._record([outcome])
            return

        # This thread only waits and records: if it sent one of the attempts itself, a slow
        # receiver there would hold back the records of all the others.
        pending: set[Future[Outcome | None]] = {
            self._senders.submit(self._attempt, claim) for claim in claims
        }
        error: BaseException | None = None
        # Attempts to a fast receiver end within milliseconds of each other, so waiting a
        # moment for all of them lets one statement record the whole message. A slow
        # receiver's attempts are then recorded as each one ends.
        wait(pending, timeout=RECORD_TOGETHER_S)
        while True:
            finished: list[Outcome] = []
            for future in [future for future in pending if future.done()]:
                pending.discard(future)
                failure = future.exception()
                if failure is not None:
                    error = error or failure
                    continue
                outcome = future.result()
                if outcome is not None:
                    finished.append(outcome)
            try:
                self._record(finished)
            except Exception as failure:  # noqa: BLE001 - raised below, once all have ended
                # Keep recording the attempts still running: this wave's attempts end as
                # interrupted through the sweeper, the others must not join them.
                log.error(
                    "delivery_record_failed",
                    error=type(failure).__name__,
                    delivery_ids=[outcome.claim.delivery_id for outcome in finished],
                )
                error = error or failure
            if not pending:
                break
            wait(pending, return_when=FIRST_COMPLETED)
        if error is not None:
            raise error

    def close(self) -> None:
        """Stop the sender threads once the attempts they run have ended."""
        self._senders.shutdown(wait=True)

    def _claim(self, delivery_ids: Sequence[str]) -> list[Claim]:
        with self._autocommit.connect() as connection:
            return claim_deliveries(
                connection,
                delivery_ids,
                lease_s=self._settings.lease_s,
                secret_box=self._secret_box,
            )

    def _attempt(self, claim: Claim) -> Outcome | None:
        """POST one claimed delivery and decide what follows; nothing is stored yet.

        Returns:
            The outcome, or None when too little of the lease is left to send: the sweeper
            then records the attempt as interrupted, and no request went out that a second
            attempt would repeat.

        Raises:
            SecretBoxError: the delivery's signing secret cannot be decrypted.
        """
        if claim.secret_error is not None:
            raise claim.secret_error
        timeout_s = self._settings.delivery_timeout_s
        if time.monotonic() - claim.claimed_at + timeout_s > self._settings.lease_s:
            # Only an attempt that waited long for a sender thread gets here.
            log.warning(
                "delivery_attempt_skipped",
                delivery_id=claim.delivery_id,
                workspace_id=claim.workspace_id,
                attempt=claim.number,
                reason="the lease would end before the request",
            )
            return None
        headers = build_headers(
            delivery_id=claim.delivery_id,
            event=claim.event,
            provider=claim.provider,
            timestamp=int(time.time()),
            body=claim.body,
            secrets=claim.secrets,
            user_agent=USER_AGENT,
        )
        log.info(
            "delivery_attempted",
            delivery_id=claim.delivery_id,
            workspace_id=claim.workspace_id,
            attempt=claim.number,
            trigger=claim.trigger,
            outcome="sending",
        )
        result = send_attempt(
            self._client,
            url=claim.url,
            body=claim.body,
            headers=headers,
            timeout_s=timeout_s,
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
        return Outcome(claim=claim, headers=headers, result=result, decision=decision)

    def _record(self, outcomes: list[Outcome]) -> None:
        """Store `outcomes`, then log and count each one."""
        if not outcomes:
            return
        recorded = _retry_deadlock(lambda: self._store(outcomes))
        for outcome in outcomes:
            stored = outcome.claim.delivery_id in recorded
            self._log_outcome(outcome, stored)
            record_attempt(
                outcome.claim.event,
                outcome.decision.outcome if stored else "interrupted",
                outcome.result.duration_ms,
            )

    def _store(self, outcomes: list[Outcome]) -> set[str]:
        """Store `outcomes` in one statement; return the ids whose outcome was stored."""
        gone_outcomes = [o for o in outcomes if o.result.kind is AttemptKind.GONE]
        # A 410 also disables the integration and cancels its open deliveries, so that
        # record needs all its statements in one transaction.
        with self._engine.begin() if gone_outcomes else self._autocommit.connect() as connection:
            recorded = record_outcomes(connection, outcomes)
            disabled: set[str] = set()
            for outcome in gone_outcomes:
                workspace_id = outcome.claim.workspace_id
                if outcome.claim.delivery_id in recorded and workspace_id not in disabled:
                    connection.execute(
                        _DISABLE_GONE, {"workspace_id": workspace_id, "reason": _GONE_REASON}
                    )
                    cancel_open_deliveries(connection, workspace_id, _GONE_REASON)
                    disabled.add(workspace_id)
        return recorded

    def _log_outcome(self, outcome: Outcome, recorded: bool) -> None:
        result, decision, claim = outcome.result, outcome.decision, outcome.claim
        bound = log.bind(
            delivery_id=claim.delivery_id, workspace_id=claim.workspace_id, attempt=claim.number
        )
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
                next_attempt_at=isoformat_or_none(decision.next_attempt_at),
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


def _retry_deadlock(run: Callable[[], _T]) -> _T:
    """Run `run`, and again after a deadlock, up to `DEADLOCK_TRIES` times in all.

    A message's claim and record lock their rows in id order, as the relay does, but the
    cancellation of a workspace's deliveries locks its rows in plan order, so Postgres can
    end one of them as a deadlock victim. The victim's statement left no trace, so it is
    safe to run again.
    """
    for attempt in range(1, DEADLOCK_TRIES):
        try:
            return run()
        except OperationalError as error:
            if not isinstance(error.orig, DeadlockDetected):
                raise
            log.warning("delivery_deadlock_retried", attempt=attempt)
    return run()


def _detail(result: AttemptResult) -> str | None:
    if result.kind is AttemptKind.REDIRECT:
        return result.location
    if result.status_code is not None and result.error_class == "http_error":
        return f"HTTP {result.status_code}"
    return result.error_message
