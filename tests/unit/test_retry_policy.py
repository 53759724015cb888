"""Unit tests of the retry policy: every outcome, the schedule, jitter, caps and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from handoff.settings import DEFAULT_RETRY_SCHEDULE_S
from worker.retry_policy import AttemptKind, RetryDecision, decide, parse_retry_after

FINISHED_AT = datetime(2026, 2, 15, 12, 0, 0, tzinfo=UTC)
SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = len(SCHEDULE) + 1


def run(
    kind: AttemptKind,
    *,
    done: int = 1,
    jitter: float = 0.0,
    retry_after_s: float | None = None,
    detail: str | None = None,
    seed: int = 7,
    schedule: tuple[float, ...] = SCHEDULE,
) -> RetryDecision:
    return decide(
        kind=kind,
        automatic_attempts_done=done,
        max_automatic_attempts=len(schedule) + 1,
        schedule_s=schedule,
        jitter=jitter,
        retry_after_s=retry_after_s,
        finished_at=FINISHED_AT,
        rng=random.Random(seed),
        detail=detail,
    )


def delay_s(decision: RetryDecision) -> float:
    assert decision.next_attempt_at is not None
    return (decision.next_attempt_at - FINISHED_AT).total_seconds()


def test_delivered() -> None:
    expected = RetryDecision("delivered", "delivered", None, None)
    assert expected == run(AttemptKind.DELIVERED)


def test_redirect_fails_with_location() -> None:
    decision = run(AttemptKind.REDIRECT, detail="https://new.example.com/hook")
    assert "failed" == decision.outcome
    assert "failed" == decision.status
    assert None is decision.next_attempt_at
    expected = "endpoint moved: update the URL (Location: https://new.example.com/hook)"
    assert expected == decision.failure_reason


def test_redirect_without_location() -> None:
    assert "endpoint moved: update the URL" == run(AttemptKind.REDIRECT).failure_reason


def test_gone_fails() -> None:
    decision = run(AttemptKind.GONE, detail="410")
    assert "failed" == decision.status
    expected = "endpoint answered 410 Gone: the integration was disabled"
    assert expected == decision.failure_reason


def test_rejected_quotes_detail() -> None:
    decision = run(AttemptKind.REJECTED, detail="404")
    assert "failed" == decision.outcome
    assert "endpoint rejected the event with 404" == decision.failure_reason


def test_rejected_without_detail() -> None:
    assert "endpoint rejected the event" == run(AttemptKind.REJECTED).failure_reason


def test_blocked_fails() -> None:
    decision = run(AttemptKind.BLOCKED, detail="ignored")
    assert "failed" == decision.status
    assert "destination not allowed" == decision.failure_reason


def test_terminal_kinds_ignore_attempt_count() -> None:
    for kind in (AttemptKind.REDIRECT, AttemptKind.GONE, AttemptKind.REJECTED):
        assert "failed" == run(kind, done=1).status
    assert "delivered" == run(AttemptKind.DELIVERED, done=MAX_ATTEMPTS).status


def test_retryable_schedules_next_attempt() -> None:
    decision = run(AttemptKind.RETRYABLE, done=1, detail="Webhook endpoint returned 503")
    assert "will_retry" == decision.outcome
    assert "retrying" == decision.status
    assert None is decision.failure_reason
    assert FINISHED_AT + timedelta(seconds=5) == decision.next_attempt_at


@pytest.mark.parametrize(("done", "expected_s"), list(enumerate(SCHEDULE, start=1)))
def test_delay_after_attempt_k_is_step_k(done: int, expected_s: float) -> None:
    assert expected_s == delay_s(run(AttemptKind.RETRYABLE, done=done))


def test_attempts_past_schedule_reuse_last_delay() -> None:
    decision = decide(
        kind=AttemptKind.RETRYABLE,
        automatic_attempts_done=12,
        max_automatic_attempts=20,
        schedule_s=SCHEDULE,
        jitter=0.0,
        retry_after_s=None,
        finished_at=FINISHED_AT,
        rng=random.Random(1),
    )
    assert 36000.0 == delay_s(decision)


def test_zero_attempts_done_uses_first_delay() -> None:
    assert 5.0 == delay_s(run(AttemptKind.RETRYABLE, done=0))


def test_gives_up_at_attempt_limit() -> None:
    decision = run(
        AttemptKind.RETRYABLE, done=MAX_ATTEMPTS, detail="request timed out after 15.0 s"
    )
    assert "failed" == decision.outcome
    assert "failed" == decision.status
    assert None is decision.next_attempt_at
    expected = "gave up after 8 attempts: request timed out after 15.0 s"
    assert expected == decision.failure_reason


def test_gives_up_without_detail() -> None:
    assert "gave up after 8 attempts" == run(AttemptKind.RETRYABLE, done=8).failure_reason


def test_default_schedule_allows_eight_attempts() -> None:
    statuses = [
        decide(
            kind=AttemptKind.RETRYABLE,
            automatic_attempts_done=done,
            max_automatic_attempts=len(DEFAULT_RETRY_SCHEDULE_S) + 1,
            schedule_s=DEFAULT_RETRY_SCHEDULE_S,
            jitter=0.2,
            retry_after_s=None,
            finished_at=FINISHED_AT,
            rng=random.Random(done),
        ).status
        for done in range(1, 9)
    ]
    assert ["retrying"] * 7 + ["failed"] == statuses


def test_default_schedule_totals_about_27_6_hours() -> None:
    total_s = sum(delay_s(run(AttemptKind.RETRYABLE, done=done)) for done in range(1, 8))
    assert 99305.0 == total_s
    assert 27.6 == round(total_s / 3600, 1)


def test_jitter_stays_within_bounds_over_many_seeds() -> None:
    delays = [delay_s(run(AttemptKind.RETRYABLE, done=3, jitter=0.2, seed=s)) for s in range(500)]
    assert all(1800 * 0.8 <= delay <= 1800 * 1.2 for delay in delays)
    assert min(delays) < 1800 * 0.82
    assert max(delays) > 1800 * 1.18


def test_jitter_is_reproducible_with_seed() -> None:
    first = run(AttemptKind.RETRYABLE, done=2, jitter=0.2, seed=42)
    second = run(AttemptKind.RETRYABLE, done=2, jitter=0.2, seed=42)
    assert first == second


def test_retry_after_longer_than_delay_wins() -> None:
    assert 120.0 == delay_s(run(AttemptKind.RETRYABLE, done=1, retry_after_s=120.0))


def test_retry_after_shorter_than_delay_ignored() -> None:
    assert 300.0 == delay_s(run(AttemptKind.RETRYABLE, done=2, retry_after_s=10.0))


def test_retry_after_capped_at_longest_step() -> None:
    decision = run(AttemptKind.RETRYABLE, done=1, retry_after_s=7 * 86400.0)
    assert 36000.0 == delay_s(decision)


def test_retry_after_cap_applies_to_jittered_delay() -> None:
    delays = [
        delay_s(run(AttemptKind.RETRYABLE, done=7, jitter=0.2, retry_after_s=1.0, seed=s))
        for s in range(100)
    ]
    assert all(36000 * 0.8 <= delay <= 36000.0 for delay in delays)


def test_retry_after_cap_follows_custom_schedule() -> None:
    decision = run(AttemptKind.RETRYABLE, retry_after_s=3600.0, schedule=(0.2, 0.4, 0.6))
    assert 0.6 == delay_s(decision)


def test_empty_schedule_raises() -> None:
    with pytest.raises(ValueError, match="schedule_s is empty"):
        decide(
            kind=AttemptKind.RETRYABLE,
            automatic_attempts_done=1,
            max_automatic_attempts=3,
            schedule_s=(),
            jitter=0.2,
            retry_after_s=None,
            finished_at=FINISHED_AT,
            rng=random.Random(1),
        )


def test_negative_delay_raises() -> None:
    with pytest.raises(ValueError, match="invalid delay"):
        run(AttemptKind.RETRYABLE, schedule=(5.0, -1.0))


def test_jitter_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="invalid jitter"):
        run(AttemptKind.RETRYABLE, jitter=1.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Sun, 15 Feb 2026 12:01:30 GMT", 90.0),
        ("Sun, 15 Feb 2026 11:00:00 GMT", 0.0),
        ("Sun, 15 Feb 2026 13:00:00 +0100", 0.0),
        ("Sunday, 15-Feb-26 12:00:10 GMT", 10.0),
    ],
)
def test_parse_retry_after_readable(value: str, expected: float) -> None:
    assert expected == parse_retry_after(value, FINISHED_AT)


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "1.5", "12abc", "٣", "Sun, 99 Foo 2026 25:61:61 GMT", "Mon, 32 Feb"],
)
def test_parse_retry_after_unreadable(value: str | None) -> None:
    assert None is parse_retry_after(value, FINISHED_AT)


def test_parse_retry_after_naive_now_taken_as_utc() -> None:
    naive = FINISHED_AT.replace(tzinfo=None)
    assert 60.0 == parse_retry_after("Sun, 15 Feb 2026 12:01:00 GMT", naive)
