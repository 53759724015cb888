"""A small process supervisor: run child commands, restart any that dies with a backoff."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

import structlog

CHILD_STARTED = "child_started"
CHILD_EXITED = "child_exited"
CHILD_START_FAILED = "child_start_failed"
CHILDREN_STOPPING = "children_stopping"
CHILD_KILLED = "child_killed"

logger = structlog.get_logger()


@dataclass(frozen=True)
class ChildSpec:
    """A child command: `name` labels its log lines, `argv` is run without a shell."""

    name: str
    argv: tuple[str, ...]


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs child processes and restarts each one that exits, until asked to stop.

    A child that exits is started again after a delay that doubles with every exit that
    came soon after its start, from `min_backoff_s` up to `max_backoff_s`, so a child that
    cannot start (a database down) does not spin. A child that ran for `stable_after_s`
    before exiting is restarted after `min_backoff_s` again.

    Children stay in the supervisor's process group, so Ctrl-C at a terminal reaches them
    all at once. Stopping sends SIGTERM and, after `stop_timeout_s`, SIGKILL.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        env: Mapping[str, str] | None = None,
        output: IO[bytes] | IO[str] | None = None,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 30.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        """Prepare the children; `start` or `run` launches them.

        Args:
            children: the commands to run, each with a distinct name.
            env: the children's environment; the supervisor's own when None.
            output: file that receives the children's stdout and stderr; inherited when None.
            min_backoff_s: seconds before the first restart of a child.
            max_backoff_s: longest wait before a restart, in seconds.
            stable_after_s: seconds of running after which an exit is not counted as quick.
            stop_timeout_s: seconds between SIGTERM and SIGKILL when stopping.
        """
        self._children = [_Child(spec) for spec in children]
        self._env = dict(env) if env is not None else None
        self._output = output
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_after_s = stable_after_s
        self._stop_timeout_s = stop_timeout_s

    def pids(self) -> dict[str, int]:
        """Return the process id of each running child by name."""
        return {
            child.spec.name: child.process.pid
            for child in self._children
            if child.process is not None and child.process.poll() is None
        }

    def start(self) -> None:
        """Start every child that is not running."""
        for child in self._children:
            if child.process is None or child.process.poll() is not None:
                self._launch(child)

    def run(self, stop: threading.Event, poll_interval_s: float = 0.2) -> None:
        """Start the children and keep them running until `stop` is set; then stop them."""
        self.start()
        try:
            while not stop.wait(poll_interval_s):
                self.poll()
        finally:
            self.stop()

    def poll(self) -> None:
        """Notice children that exited and restart those whose backoff has passed."""
        now = time.monotonic()
        for child in self._children:
            process = child.process
            if process is not None and process.poll() is not None:
                ran_s = now - child.started_at
                child.quick_exits = child.quick_exits + 1 if ran_s < self._stable_after_s else 1
                delay_s = min(
                    self._max_backoff_s, self._min_backoff_s * 2 ** (child.quick_exits - 1)
                )
                child.process = None
                child.restart_at = now + delay_s
                logger.warning(
                    CHILD_EXITED,
                    child=child.spec.name,
                    pid=process.pid,
                    exit_code=process.returncode,
                    ran_s=round(ran_s, 1),
                    restart_in_s=delay_s,
                )
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._launch(child)

    def stop(self) -> None:
        """Send SIGTERM to every child, wait for them, and SIGKILL those still running."""
        running = [
            child.process
            for child in self._children
            if child.process is not None and child.process.poll() is None
        ]
        for child in self._children:
            child.restart_at = None
        if not running:
            return
        logger.info(CHILDREN_STOPPING, pids=[process.pid for process in running])
        for process in running:
            _send(process, signal.SIGTERM)

        deadline = time.monotonic() + self._stop_timeout_s
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning(CHILD_KILLED, pid=process.pid, after_s=self._stop_timeout_s)
                _send(process, signal.SIGKILL)
                process.wait()

    def _launch(self, child: _Child) -> None:
        child.restart_at = None
        try:
            child.process = subprocess.Popen(  # noqa: S603 - argv is built by this package
                child.spec.argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
            )
        except OSError as error:
            child.quick_exits += 1
            child.restart_at = time.monotonic() + self._max_backoff_s
            logger.error(CHILD_START_FAILED, child=child.spec.name, error=str(error))
            return
        child.started_at = time.monotonic()
        logger.info(CHILD_STARTED, child=child.spec.name, pid=child.process.pid)


def _send(process: subprocess.Popen[bytes], signal_number: int) -> None:
    try:
        process.send_signal(signal_number)
    except ProcessLookupError:
        return


def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGINT and SIGTERM set `stop` instead of raising; call from the main thread."""

    def handle(signal_number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
