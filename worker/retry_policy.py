"""Retry policy: a pure function from one attempt's outcome to the delivery's next step."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

GONE_REASON = "endpoint answered 410 Gone: the integration was disabled"
REDIRECT_REASON = "endpoint moved: update the URL"
BLOCKED_REASON = "destination not allowed"


class AttemptKind(StrEnum):
    """Class of an attempt's ending, as the retry policy sees it."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    REDIRECT = "redirect"
    GONE = "gone"
    REJECTED = "rejected"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class RetryDecision:
    """The outcome of an attempt and what the delivery does next."""

    outcome: str  # attempt outcome: "delivered" | "will_retry" | "failed"
    status: str  # delivery status: "delivered" | "retrying" | "failed"
    next_attempt_at: datetime | None
    failure_reason: str | None


def _failed(reason: str) -> RetryDecision:
    return RetryDecision(
        outcome="failed", status="failed", next_attempt_at=None, failure_reason=reason
    )


def _validate(schedule_s: Sequence[float], jitter: float) -> None:
    if not schedule_s:
        raise ValueError("schedule_s is empty; give at least one delay in seconds")
    for delay in schedule_s:
        if not (0 <= delay < math.inf):
            raise ValueError(f"invalid delay {delay!r} in schedule_s; delays are seconds >= 0")
    if not (0 <= jitter <= 1):
        raise ValueError(f"invalid jitter {jitter!r}; set a fraction from 0 to 1")


def decide(
    *,
    kind: AttemptKind,
    automatic_attempts_done: int,
    max_automatic_attempts: int,
    schedule_s: Sequence[float],
    jitter: float,
    retry_after_s: float | None,
    finished_at: datetime,
    rng: random.Random,
    detail: str | None = None,
) -> RetryDecision:
    """Decide what follows one attempt.

    Args:
        kind: how the attempt ended.
        automatic_attempts_done: automatic attempts made so far, this one included.
        max_automatic_attempts: the limit of automatic attempts (the schedule's length plus
            one by default).
        schedule_s: the delays between attempts, in seconds; the delay after attempt k is
            `schedule_s[k - 1]`, and attempts past the schedule reuse its last delay.
        jitter: the fraction of uniform jitter applied to each delay (0.2 means ±20 %).
        retry_after_s: the receiver's `Retry-After`, in seconds, or None.
        finished_at: when the attempt ended; the next delay counts from it.
        rng: the random source of the jitter, seeded in tests.
        detail: what the failure reason quotes: the `Location` of a redirect, the status
            of a rejection, the error of a retryable failure.

    Returns:
        The attempt's outcome, the delivery's status, and the next attempt time or the
        failure reason.

    Raises:
        ValueError: `schedule_s` is empty or has a negative delay, or `jitter` is outside
            0 to 1.
    """
    if kind is AttemptKind.DELIVERED:
        return RetryDecision(
            outcome="delivered", status="delivered", next_attempt_at=None, failure_reason=None
        )
    if kind is AttemptKind.REDIRECT:
        suffix = f" (Location: {detail})" if detail else ""
        return _failed(REDIRECT_REASON + suffix)
    if kind is AttemptKind.GONE:
        return _failed(GONE_REASON)
    if kind is AttemptKind.REJECTED:
        reason = "endpoint rejected the event"
        return _failed(f"{reason} with {detail}" if detail else reason)
    if kind is AttemptKind.BLOCKED:
        return _failed(BLOCKED_REASON)

    if automatic_attempts_done >= max_automatic_attempts:
        reason = f"gave up after {automatic_attempts_done} attempts"
        return _failed(f"{reason}: {detail}" if detail else reason)

    _validate(schedule_s, jitter)
    index = min(max(automatic_attempts_done - 1, 0), len(schedule_s) - 1)
    delay_s = schedule_s[index] * rng.uniform(1 - jitter, 1 + jitter)
    if retry_after_s is not None:
        # The receiver may ask for a later retry, but never past the longest step, so one
        # receiver's header cannot park a delivery for days.
        delay_s = min(max(delay_s, retry_after_s), max(schedule_s))
    return RetryDecision(
        outcome="will_retry",
        status="retrying",
        next_attempt_at=finished_at + timedelta(seconds=delay_s),
        failure_reason=None,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Read a `Retry-After` header as seconds from `now`.

    Args:
        value: the header value: integer seconds or an HTTP date; None when absent.
        now: the current time, timezone-aware (a naive value is taken as UTC).

    Returns:
        The seconds to wait, at least 0, or None when the value is absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)
