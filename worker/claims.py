"""Claiming deliveries: one statement leases every claimable delivery of a message."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from handoff.secret_box import SecretBox, SecretBoxError

# The claim is one statement for a whole message: it takes each lease, counts each attempt
# and opens each attempt row. Only a `queued` delivery can be claimed, so a duplicate
# message (a sweeper re-publish, a broker redelivery) finds `sending`, `retrying` or a final
# status and does nothing.
#
# The relay publishes before it commits, so a message often arrives while its rows are
# still `pending` or `retrying` and locked by the relay. `locked` waits for those locks and
# returns the rows as committed then, and the status test is on `locked`, not on `d`. Do not
# move it back to `d.status = 'queued'`. An UPDATE tests its WHERE against the row as of its
# snapshot, so it skips a row that is not `queued` there without waiting for the lock. The
# delivery then waits for the sweeper's grace period (20 s by default) instead of being sent.
# The rows are locked in id order, as the relay and the record lock theirs, so two of these
# statements that lock the same deliveries wait for each other instead of deadlocking.
# Cancellations lock in plan order, so the worker runs again a claim that Postgres ends as
# a deadlock victim.
_CLAIM = text(
    """
    WITH locked AS (
        SELECT id, status FROM deliveries WHERE id = ANY(:delivery_ids)
        ORDER BY id FOR UPDATE
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
        RETURNING id, delivery_id
    )
    SELECT claimed.*, attempt.id AS attempt_id
    FROM claimed JOIN attempt ON attempt.delivery_id = claimed.id
    ORDER BY claimed.id
    """
).bindparams(bindparam("delivery_ids", type_=ARRAY(UUID(as_uuid=False))))


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
    # When the lease was taken (time.monotonic()), to tell how much of it is left.
    claimed_at: float = 0.0
    # Set when a signing secret cannot be decrypted: this attempt then fails on its own and
    # the other deliveries of the message are still sent.
    secret_error: SecretBoxError | None = None


def claim_deliveries(
    connection: Connection,
    delivery_ids: Sequence[str],
    *,
    lease_s: float,
    secret_box: SecretBox,
) -> list[Claim]:
    """Lease every delivery of `delivery_ids` that is `queued` and whose integration is on.

    Returns:
        The claims in delivery id order; ids that cannot be claimed are left out. A claim
        whose signing secret cannot be decrypted carries the error in `secret_error`.
    """
    rows = connection.execute(
        _CLAIM, {"delivery_ids": list(delivery_ids), "lease_s": lease_s}
    ).all()
    # The rows of one message mostly share an integration, so each secret is decrypted once.
    decrypted: dict[bytes, str] = {}
    now = datetime.now(UTC)
    claimed_at = time.monotonic()
    claims = []
    for row in rows:
        secrets: list[str] = []
        secret_error = None
        try:
            secrets = _secrets(row, secret_box, decrypted, now)
        except SecretBoxError as error:
            secret_error = error
        claims.append(
            Claim(
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
                secrets=secrets,
                attempt_id=row.attempt_id,
                claimed_at=claimed_at,
                secret_error=secret_error,
            )
        )
    return claims


def _secrets(row: Any, box: SecretBox, decrypted: dict[bytes, str], now: datetime) -> list[str]:
    """Return the secrets that sign this attempt: the current one, and the previous during
    its 24-hour rotation window."""
    ciphertexts = [row.secret_encrypted]
    previous_valid = row.previous_secret_valid_until is not None and (
        row.previous_secret_valid_until > now
    )
    if previous_valid:
        ciphertexts.append(row.previous_secret_encrypted)
    secrets = []
    for ciphertext in ciphertexts:
        if ciphertext is None:
            continue
        key = bytes(ciphertext)
        if key not in decrypted:
            decrypted[key] = box.decrypt(key)
        secrets.append(decrypted[key])
    return [secret for secret in secrets if secret]
