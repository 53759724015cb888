"""The product's own processes (`handoff api`, `relay`, `worker`) as subprocesses of the suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

STOP_TIMEOUT_S = 15.0
WORKER_READY_LINE = "ready for action"


class ProcessError(Exception):
    """Raised when a product process does not start or exits when it should not."""


def handoff_command() -> list[str]:
    """Return the argv prefix of the `handoff` console command installed beside this Python."""
    script = Path(sys.executable).parent / "handoff"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "handoff.cli"]


@dataclass
class ProductProcess:
    """One `handoff` subcommand run as a subprocess, restartable, with output to a log file.

    Attributes:
        name: a label such as "relay-1", also the log file's stem.
        args: the arguments after `handoff`.
        environment: the complete environment of the process.
        log_path: where stdout and stderr go, appended across restarts.
        starts: how many times the process was started.
    """

    name: str
    args: list[str]
    environment: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        """Start the process; the previous one, if any, must have exited."""
        if self.process is not None and self.process.poll() is None:
            raise ProcessError(f"{self.name} is already running as pid {self.process.pid}")
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - the argv is built here, no shell
                [*handoff_command(), *self.args],
                env=self.environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # A group of its own, so a Ctrl-C at the terminal reaches only the suite,
                # which then stops its children in order.
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        """The process id of the running process."""
        if self.process is None:
            raise ProcessError(f"{self.name} was never started")
        return self.process.pid

    def exit_code(self) -> int | None:
        """Return the exit code, or None while the process runs."""
        return None if self.process is None else self.process.poll()

    def children(self) -> list[psutil.Process]:
        """Return the direct children: for the worker, the Dramatiq worker processes."""
        try:
            return list(psutil.Process(self.pid).children())
        except psutil.NoSuchProcess:
            return []

    def send_signal(self, number: signal.Signals) -> None:
        """Send `number` to the process itself (not its children)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL the process and every descendant, and reap it."""
        if self.process is None:
            return
        try:
            family = [psutil.Process(self.pid), *psutil.Process(self.pid).children(True)]
        except psutil.NoSuchProcess:
            family = []
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                continue
        self.process.wait()

    def stop(self) -> None:
        """Send SIGTERM, wait for a clean exit, and SIGKILL whatever is left after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_exit(self, timeout_s: float) -> int | None:
        """Wait up to `timeout_s` for the process to exit; return its code or None."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_count(self, text: str) -> int:
        """Return how many times `text` occurs in the log file."""
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(text)

    def wait_for_log(self, text: str, occurrences: int, timeout_s: float) -> None:
        """Wait until `text` occurs `occurrences` times in the log.

        Raises:
            ProcessError: the process exited or the line did not come within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while self.log_count(text) < occurrences:
            code = self.exit_code()
            if code is not None:
                raise ProcessError(f"{self.name} exited with code {code}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} did not log {text!r} within {timeout_s} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def tail(self, lines: int = 15) -> str:
        """Return the last `lines` lines of the log, to explain a failure."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def product_environment(base: dict[str, str], **settings: str) -> dict[str, str]:
    """Return `base` without any inherited product setting, plus `settings`.

    Inherited `DATABASE_URL`, `BROKER_URL` and `HANDOFF_*` variables are dropped, so a
    process can never reach the machine's shared servers by accident.
    """
    environment = {
        name: value
        for name, value in base.items()
        if name not in ("DATABASE_URL", "BROKER_URL") and not name.startswith("HANDOFF_")
    }
    environment.update(settings)
    return environment


def run_handoff(args: list[str], environment: dict[str, str], timeout_s: float = 60.0) -> str:
    """Run one short `handoff` command and return its stdout.

    Raises:
        ProcessError: the command failed; the message carries its stderr.
    """
    result = subprocess.run(  # noqa: S603 - the argv is built here, no shell
        [*handoff_command(), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise ProcessError(
            f"handoff {' '.join(args[:2])} exited with code {result.returncode}: "
            f"{result.stderr.strip()[-1000:]}"
        )
    return result.stdout
