"""CPU seconds used by groups of processes over a window, sampled with psutil."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import psycopg

SAMPLE_INTERVAL_S = 0.25

# A function that returns the processes to account now, each with the group it counts in.
Finder = Callable[[], dict[int, str]]

_BACKENDS = "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s"


def _cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


def process_tree_finder(label: str, processes: Callable[[], list[psutil.Process]]) -> Finder:
    """Account every process that `processes` returns under `label`."""

    def find() -> dict[int, str]:
        return {process.pid: label for process in processes()}

    return find


class PostgresBackends:
    """Finds the Postgres backends connected to one database, grouped by application name.

    Its own connection goes to the admin URL's database, so it is not counted itself.
    """

    def __init__(self, admin_url: str, database: str, labels: dict[str, str]) -> None:
        """Open the connection that reads `pg_stat_activity`.

        Args:
            admin_url: a libpq URL of the same server, on another database.
            database: the benchmark database.
            labels: application name to group; other names count as "postgres other".
        """
        self._connection = psycopg.connect(admin_url, autocommit=True)
        self._database = database
        self._labels = labels

    def __call__(self) -> dict[int, str]:
        rows = self._connection.execute(_BACKENDS, (self._database,)).fetchall()
        return {int(pid): self._labels.get(name or "", "postgres other") for pid, name in rows}

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


@dataclass
class CpuMeter:
    """Sums the CPU time each group of processes used between `start()` and `stop()`.

    A process seen at `start()` counts from its CPU time then; one that appears later counts
    from zero, because all of its time falls inside the window. A process that exits between
    two samples loses at most its last 0.25 s.
    """

    finders: list[Finder]
    _baseline: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self, first: bool = False) -> None:
        for finder in self.finders:
            for pid, label in finder().items():
                seconds = _cpu_seconds(pid)
                if seconds is None:
                    continue
                if pid not in self._labels:
                    self._labels[pid] = label
                    self._baseline[pid] = seconds if first else 0.0
                self._last[pid] = seconds

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def start(self) -> CpuMeter:
        """Take the baseline and sample in a background thread until `stop()`."""
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Take a last sample and return the CPU seconds per group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        totals: dict[str, float] = {}
        for pid, label in self._labels.items():
            totals[label] = totals.get(label, 0.0) + self._last[pid] - self._baseline[pid]
        return totals
