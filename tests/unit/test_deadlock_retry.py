"""The worker runs a claim or a record again when Postgres ends it as a deadlock victim."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg.errors import DeadlockDetected, UniqueViolation
from sqlalchemy.exc import OperationalError

from worker.delivery import DEADLOCK_TRIES, _retry_deadlock


def failing(errors: list[Exception], result: str) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def run() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return calls, run


def deadlock() -> OperationalError:
    return OperationalError("claim", {}, DeadlockDetected("deadlock detected"))


def test_deadlock_victim_runs_again() -> None:
    calls, run = failing([deadlock()], "claimed")

    assert "claimed" == _retry_deadlock(run)
    assert 2 == len(calls)


def test_repeated_deadlocks_are_raised() -> None:
    calls, run = failing([deadlock() for _ in range(DEADLOCK_TRIES)], "claimed")

    with pytest.raises(OperationalError):
        _retry_deadlock(run)
    assert DEADLOCK_TRIES == len(calls)


def test_other_errors_are_raised_at_once() -> None:
    other = OperationalError("claim", {}, UniqueViolation("duplicate key"))
    calls, run = failing([other], "claimed")

    with pytest.raises(OperationalError):
        _retry_deadlock(run)
    assert 1 == len(calls)
