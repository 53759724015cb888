"""`make chaos`: inject every fault under load, print the table, fail on any loss or leak.

Run it as `python -m chaos.run` from the repository root. It starts its own Postgres and
Redis on free ports and never touches the machine's shared servers.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from sqlalchemy import text

from chaos import faults
from chaos.environment import SUITE_SETTINGS, ChaosEnvironment
from chaos.phases import Fault, LoadShare, run_fault
from chaos.processes import ProcessError
from chaos.report import FaultRow, RunReport, text_table, update_page
from chaos.seed import ROLLBACK_THEME_ID
from chaos.services import ServiceError

BUDGET_S = 600.0
# Kept free at the end of the budget to stop every process and server.
TEARDOWN_RESERVE_S = 30.0
MAX_WAIT_S = 120.0
MIN_HANDOFFS = 2000
OUTAGE_S = 60.0
SHORT_OUTAGE_S = 20.0
# A receiver outage needs its length plus this much for warm-up, the last retries and drain.
OUTAGE_MARGIN_S = 75.0
HANG_S = 20.0
RESULTS_FOLDER = Path("chaos-results")
PAGE = Path("docs/reliability.md")

RECEIVER_DOWN = "receiver down"
HEALTHY = "chaos-a"
HANGING = "chaos-b"

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3


class OutOfTime(Exception):
    """Raised in the main thread when the time budget ends or the suite is terminated.

    `fault` is the fault that was running at that moment.
    """

    def __init__(self, signal_name: str, fault: str) -> None:
        super().__init__(signal_name)
        self.fault = fault


_current_fault = "setup"


def _on_alarm(number: int, frame: FrameType | None) -> None:
    raise OutOfTime(signal.Signals(number).name, _current_fault)


def build_faults(outage_s: float) -> list[Fault]:
    """Return the faults in the order they run; the receiver outage lasts `outage_s`."""
    steady = 20.0
    return [
        Fault(
            "worker SIGKILL mid-request",
            faults.kill_workers,
            (LoadShare(HEALTHY, "worker-kill", steady),),
        ),
        Fault(
            "relay SIGKILL mid-publish",
            faults.kill_relays,
            (LoadShare(HEALTHY, "relay-kill", 30.0),),
        ),
        Fault(
            "Redis restarted empty",
            faults.restart_redis,
            (LoadShare(HEALTHY, "redis-restart", steady),),
        ),
        Fault(
            "Redis FLUSHALL",
            faults.flush_redis,
            (LoadShare(HEALTHY, "redis-flush", steady),),
        ),
        Fault(
            "Postgres restarted",
            faults.restart_postgres,
            (LoadShare(HEALTHY, "postgres-restart", steady),),
        ),
        Fault(
            "one workspace's receiver hangs",
            lambda env: faults.receiver_hangs(env, HANGING, HANG_S),
            (LoadShare(HEALTHY, "hang-healthy", 15.0), LoadShare(HANGING, "hang-hanging", 0.5)),
            warmup_s=5.0,
            latency_theme="hang-healthy",
        ),
        receiver_down_fault(outage_s),
    ]


def receiver_down_fault(outage_s: float) -> Fault:
    """Return the receiver outage of `outage_s` seconds under a lighter load."""
    return Fault(
        RECEIVER_DOWN,
        lambda env: faults.receiver_down(env, outage_s),
        (LoadShare(HEALTHY, "receiver-down", 8.0),),
    )


def _themes(planned: list[Fault]) -> dict[str, list[str]]:
    themes: dict[str, list[str]] = {HEALTHY: [ROLLBACK_THEME_ID], HANGING: []}
    for fault in planned:
        for share in fault.load:
            themes[share.workspace_id].append(share.theme_id)
    return themes


def _fit_outage(fault: Fault, outage_s: float, remaining_s: float) -> tuple[Fault, str | None]:
    """Shorten the receiver outage to 20 s when the full one would overrun the budget."""
    if outage_s <= SHORT_OUTAGE_S or remaining_s >= outage_s + OUTAGE_MARGIN_S:
        return fault, None
    message = (
        f"receiver outage shortened from {outage_s:g} s to {SHORT_OUTAGE_S:g} s: only "
        f"{remaining_s:.0f} s of the budget were left"
    )
    return receiver_down_fault(SHORT_OUTAGE_S), message


def _revive(env: ChaosEnvironment) -> None:
    """Start again any product process that died, so the next fault runs on a whole system."""
    if env.api.exit_code() is not None:
        env.api.start()
    for relay in env.relays:
        if relay.exit_code() is not None:
            env.start_relay(relay)
    if env.worker.exit_code() is not None:
        env.start_worker()


def _overall_problems(env: ChaosEnvironment, rows: list[FaultRow]) -> list[str]:
    problems = []
    handoffs = sum(row.tally.committed for row in rows)
    if handoffs < MIN_HANDOFFS:
        problems.append(f"only {handoffs} handoffs were committed; the suite needs {MIN_HANDOFFS}")
    leaks = env.receiver.leaks()
    if leaks:
        problems.append(f"{len(leaks)} requests for rolled-back handoffs reached the receiver")
    with env.engine.connect() as connection:
        committed = connection.execute(
            text("SELECT count(*) FROM deliveries WHERE theme_id = :theme"),
            {"theme": ROLLBACK_THEME_ID},
        ).scalar_one()
    if committed:
        problems.append(f"{committed} rolled-back handoffs are committed in Postgres")
    return problems


def run(outage_s: float, results: Path, update_docs: bool) -> int:
    """Run every fault and write the report; return the exit code."""
    global _current_fault
    started = time.monotonic()
    started_at = datetime.now(UTC)
    planned = build_faults(outage_s)
    rows: list[FaultRow] = []
    print(
        f"chaos: starting private Postgres, Redis and the product processes ({BUDGET_S:g} s budget)"
    )
    env = ChaosEnvironment.open(_themes(planned), logs_to=results / "logs")
    try:
        notes: list[str] = []
        for fault in planned:
            remaining_s = BUDGET_S - TEARDOWN_RESERVE_S - (time.monotonic() - started)
            if fault.name == RECEIVER_DOWN:
                fault, message = _fit_outage(fault, outage_s, remaining_s)
                if message is not None:
                    print(f"chaos: NOTE: {message}")
                    notes.append(message)
            _current_fault = fault.name
            print(f"chaos: {fault.name}: injecting under load", flush=True)
            wait_s = max(10.0, min(MAX_WAIT_S, remaining_s - 30.0))
            row = run_fault(env, fault, wait_s)
            rows.append(row)
            print(text_table([row]), flush=True)
            for problem in row.problems:
                print(f"chaos: FAIL {fault.name}: {problem}")
            _revive(env)

        _current_fault = "final checks"
        report = RunReport(
            started_at=started_at,
            seconds=time.monotonic() - started,
            rows=rows,
            handoffs=sum(row.tally.committed for row in rows),
            problems=_overall_problems(env, rows),
            notes=notes,
            settings=dict(SUITE_SETTINGS),
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _current_fault = "teardown"
        env.close()

    print()
    print(text_table(report.rows))
    path = report.write(results)
    print(f"chaos: {report.handoffs} handoffs in {report.seconds:.0f} s; results in {path}")
    if update_docs:
        update_page(PAGE, report)
        print(f"chaos: table written to {PAGE}")
    for problem in report.problems:
        print(f"chaos: FAIL {problem}")
    # Each fault is one case, and the overall checks (volume, leaks) one more.
    failed = sum(1 for row in report.rows if not row.passed) + (1 if report.problems else 0)
    print(f"chaos: {len(report.rows) + 1 - failed} passed, {failed} failed")
    return 0 if report.passed else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the suite within its time budget."""
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument(
        "--outage",
        type=float,
        default=OUTAGE_S,
        help=f"seconds the receiver stays down (default {OUTAGE_S:g}; cut to "
        f"{SHORT_OUTAGE_S:g} when the budget cannot fit it)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_FOLDER,
        help=f"folder for results.json, table.md and the logs (default {RESULTS_FOLDER})",
    )
    parser.add_argument("--update-docs", action="store_true", help=f"write the table into {PAGE}")
    args = parser.parse_args(argv)

    # SIGTERM (from `timeout` or CI) ends the run like the budget does: with a teardown.
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, BUDGET_S - TEARDOWN_RESERVE_S)
    try:
        return run(args.outage, args.results, args.update_docs)
    except OutOfTime as stop:
        if str(stop) == "SIGALRM":
            reason = (
                f"out of time after {BUDGET_S - TEARDOWN_RESERVE_S:g} s "
                f"of the {BUDGET_S:g} s budget"
            )
        else:
            reason = f"stopped by {stop}"
        print(
            f"chaos: FAIL {reason}: fault '{stop.fault}' was still running",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except (ServiceError, ProcessError) as error:
        print(f"chaos: FAIL during {_current_fault}: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
