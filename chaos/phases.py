"""One fault's run: load, injection, recovery and drain, then the counts that make its row."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from chaos.accounting import latencies_s, percentile, tally
from chaos.environment import ChaosEnvironment
from chaos.load import Load, LoadResult, RollbackStream, Stream
from chaos.report import FaultRow
from chaos.seed import ASSISTANT_ID, ROLLBACK_THEME_ID

POLL_S = 0.25
P99_BOUND_S = 2.0
# The load of one fault never sends more than this, whatever its rate and length.
MAX_REQUESTS_PER_FAULT = 5000
MAX_LOAD_S = 180.0

_COMMITTED = text(
    "SELECT id::text AS id, created_at, theme_id FROM deliveries WHERE theme_id IN :themes"
).bindparams(bindparam("themes", expanding=True))

_OPEN = text(
    """
    SELECT count(*) FROM deliveries
    WHERE theme_id IN :themes AND status IN ('pending', 'queued', 'sending', 'retrying')
    """
).bindparams(bindparam("themes", expanding=True))

_ROLLED_BACK_ROWS = text(
    "SELECT id::text FROM deliveries WHERE theme_id = :theme OR id::text IN :ids"
).bindparams(bindparam("ids", expanding=True))


@dataclass(frozen=True)
class LoadShare:
    """One theme's share of a fault's load: `rate_per_s` handoffs a second through the API."""

    workspace_id: str
    theme_id: str
    rate_per_s: float


@dataclass(frozen=True)
class Fault:
    """A fault and the load it runs under.

    Attributes:
        name: the row's label.
        inject: injects the fault while the load runs and returns a note; it returns when
            the fault is over (the process restarted, the server back).
        load: the API load; each theme belongs to this fault alone.
        rollback_rate_per_s: rolled-back `enqueue_handoff` transactions a second.
        warmup_s: load before the injection.
        tail_s: load after the fault's end, which shows the API still takes handoffs.
        latency_theme: when set, this theme's p99 from commit to arrival must stay under 2 s.
    """

    name: str
    inject: Callable[[ChaosEnvironment], str]
    load: tuple[LoadShare, ...]
    rollback_rate_per_s: float = 1.0
    warmup_s: float = 3.0
    tail_s: float = 3.0
    latency_theme: str | None = None

    @property
    def themes(self) -> list[str]:
        """The theme ids of this fault's handoffs."""
        return [share.theme_id for share in self.load]


@dataclass(frozen=True)
class Committed:
    """A committed handoff: when its transaction created it, and its theme."""

    created_at: datetime
    theme_id: str


def _committed(env: ChaosEnvironment, fault: Fault) -> dict[str, Committed] | None:
    """Return the fault's committed handoffs by delivery id; None while Postgres is down."""
    try:
        with env.engine.connect() as connection:
            rows = connection.execute(_COMMITTED, {"themes": fault.themes}).all()
    except SQLAlchemyError:
        return None
    return {row.id: Committed(row.created_at, row.theme_id) for row in rows}


def _open_count(env: ChaosEnvironment, fault: Fault) -> int | None:
    try:
        with env.engine.connect() as connection:
            return int(connection.execute(_OPEN, {"themes": fault.themes}).scalar_one())
    except SQLAlchemyError:
        return None


def _start_load(env: ChaosEnvironment, fault: Fault) -> Load:
    streams = [
        Stream(
            token=env.workspaces[share.workspace_id].member_token,
            theme_id=share.theme_id,
            assistant_id=ASSISTANT_ID,
            rate_per_s=share.rate_per_s,
        )
        for share in fault.load
    ]
    owner_of_rollbacks = env.workspaces[fault.load[0].workspace_id]
    rollback = RollbackStream(
        engine=env.engine,
        settings=env.settings,
        workspace_id=owner_of_rollbacks.workspace_id,
        actor_id=owner_of_rollbacks.member_id,
        theme_id=ROLLBACK_THEME_ID,
        assistant_id=ASSISTANT_ID,
        rate_per_s=fault.rollback_rate_per_s,
    )
    return Load(
        env.api_url,
        streams,
        rollback,
        max_requests=MAX_REQUESTS_PER_FAULT,
        max_seconds=MAX_LOAD_S,
    ).start()


def _recovery_targets(
    committed: dict[str, Committed], accepted: dict[str, float], fault_end: float
) -> set[str] | None:
    """Return what must be received for the system to count as recovered.

    That is every handoff committed by the fault's end, and the first one committed after
    it, which shows that the whole pipeline takes new work again. None while no handoff has
    been committed after the fault's end.
    """
    targets = {key for key, entry in committed.items() if entry.created_at.timestamp() <= fault_end}
    targets |= {key for key, moment in accepted.items() if moment <= fault_end}
    later = [
        (entry.created_at, key)
        for key, entry in committed.items()
        if entry.created_at.timestamp() > fault_end
    ]
    if not later:
        return None
    return targets | {min(later)[1]}


def run_fault(env: ChaosEnvironment, fault: Fault, wait_s: float) -> FaultRow:
    """Run the load, inject the fault, wait for recovery and drain, and count.

    Args:
        env: the run's environment.
        fault: what to inject under which load.
        wait_s: the longest wait for recovery and drain together, in seconds.
    """
    load = _start_load(env, fault)
    try:
        time.sleep(fault.warmup_s)
        note = fault.inject(env)
        fault_end = time.time()
        result, recovery_s = _recover(env, fault, load, fault_end, wait_s)
    finally:
        # Stops the load threads even when the injection failed or the time ran out.
        load.stop()
    drained, committed = _drain(env, fault, result, time.monotonic() + wait_s)
    return _row(env, fault, note, result, committed, fault_end, recovery_s, drained)


def _recover(
    env: ChaosEnvironment, fault: Fault, load: Load, fault_end: float, wait_s: float
) -> tuple[LoadResult, float | None]:
    """Wait until the system recovered (see `_recovery_targets`); stop the load after its tail.

    Returns the load's result and the recovery time in seconds from the fault's end, None
    when the wait ran out first.
    """
    deadline = time.monotonic() + fault.tail_s + wait_s
    result: LoadResult | None = None
    recovery_s: float | None = None
    while time.monotonic() < deadline and (result is None or recovery_s is None):
        if result is None and time.time() >= fault_end + fault.tail_s:
            result = load.stop()
        if recovery_s is None:
            committed = _committed(env, fault)
            targets = None
            if committed is not None:
                targets = _recovery_targets(committed, load.accepted(), fault_end)
            if targets is not None and targets <= env.receiver.received_ids():
                recovery_s = time.time() - fault_end
        time.sleep(POLL_S)
    return (result or load.stop()), recovery_s


def _drain(
    env: ChaosEnvironment, fault: Fault, result: LoadResult, deadline: float
) -> tuple[bool, dict[str, Committed]]:
    """Wait until every committed handoff is received and none is open in Postgres."""
    while True:
        committed = _committed(env, fault)
        if committed is not None:
            expected = set(committed) | set(result.accepted)
            if expected <= env.receiver.received_ids() and _open_count(env, fault) == 0:
                return True, committed
        if time.monotonic() >= deadline:
            return False, committed or {}
        time.sleep(POLL_S)


def _rolled_back_rows(env: ChaosEnvironment, ids: list[str]) -> set[str]:
    with env.engine.connect() as connection:
        rows = connection.execute(
            _ROLLED_BACK_ROWS, {"theme": ROLLBACK_THEME_ID, "ids": ids or [""]}
        ).scalars()
        return set(rows)


def _row(
    env: ChaosEnvironment,
    fault: Fault,
    note: str,
    result: LoadResult,
    committed: dict[str, Committed],
    fault_end: float,
    recovery_s: float | None,
    drained: bool,
) -> FaultRow:
    receipts = env.receiver.receipts()
    leaked = set(env.receiver.leaks()) | _rolled_back_rows(env, result.rolled_back)
    counts = tally(committed.keys(), result.accepted.keys(), receipts, result.rolled_back, leaked)
    row = FaultRow(
        fault=fault.name,
        note=note,
        tally=counts,
        recovery_s=recovery_s,
        drained=drained,
        api_errors=sum(result.failures.values()),
    )

    if counts.lost:
        row.problems.append(f"{counts.lost} committed handoffs were never received")
    if counts.rolled_back_sent:
        row.problems.append(f"{counts.rolled_back_sent} rolled-back handoffs were sent")
    if not drained:
        row.problems.append("the backlog did not drain within the wait")
    if not any(moment > fault_end for moment in result.accepted.values()):
        row.problems.append("the API accepted no handoff after the fault ended")
    for process in env.processes():
        code = process.exit_code()
        if code is not None:
            row.problems.append(f"{process.name} exited with code {code} during the fault")

    if fault.latency_theme is not None:
        created = {
            key: entry.created_at
            for key, entry in committed.items()
            if entry.theme_id == fault.latency_theme
        }
        p99 = percentile(latencies_s(created, receipts), 0.99)
        if p99 is None:
            row.problems.append("no healthy-workspace delivery to measure p99 on")
        else:
            row.p99_ms = p99 * 1000
            if p99 >= P99_BOUND_S:
                row.problems.append(
                    f"healthy workspace p99 {p99 * 1000:.0f} ms is not under "
                    f"{P99_BOUND_S * 1000:.0f} ms"
                )
    return row
