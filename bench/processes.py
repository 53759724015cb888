"""The pipeline's processes for a run: relay, handoff workers and reference workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.producers import REFERENCE_QUEUE
from handoff.broker import DELIVERY_QUEUE

STOP_TIMEOUT_S = 20.0
# A process that exits this soon after start failed to start; the direct command is tried.
CLI_PROBE_S = 2.0

# The relay without the `handoff` command, for when the command does not start.
_DIRECT_RELAY = """\
import signal, threading
from handoff.logging import configure_logging
from handoff.settings import load_settings, use_settings
from outbox.relay import run_relay
settings = load_settings()
use_settings(settings)
configure_logging(settings.log_format)
stop = threading.Event()
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda *_: stop.set())
run_relay(settings, stop)
"""


@dataclass
class Service:
    """One started process and its children, with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        """Return the process and every living descendant."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """Send SIGTERM, wait for a clean exit, and kill whatever is left after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                for child in self.processes():
                    child.kill()
                self.process.wait()

    def tail(self, lines: int = 20) -> str:
        """Return the last `lines` lines of the output, to explain a failure."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _start(
    name: str, argv: list[str], environment: dict[str, str], log_dir: Path, cwd: Path
) -> Service:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - the argv is built here, no shell
            argv, env=environment, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd
        )
    return Service(name=name, process=process, log_path=log_path)


def _start_preferring_cli(
    name: str,
    cli_argv: list[str],
    direct_argv: list[str],
    environment: dict[str, str],
    log_dir: Path,
    cwd: Path,
) -> Service:
    """Start `cli_argv`; if it exits within 2 s, start `direct_argv` instead."""
    service = _start(name, cli_argv, environment, log_dir, cwd)
    deadline = time.monotonic() + CLI_PROBE_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            return _start(name, direct_argv, environment, log_dir, cwd)
        time.sleep(0.1)
    return service


def start_relay(environment: dict[str, str], log_dir: Path, cwd: Path) -> Service:
    """Start `handoff relay`, or the relay directly when the command fails at start."""
    return _start_preferring_cli(
        "relay",
        [sys.executable, "-m", "handoff.cli", "relay"],
        [sys.executable, "-c", _DIRECT_RELAY],
        environment,
        log_dir,
        cwd,
    )


def start_workers(
    environment: dict[str, str], log_dir: Path, cwd: Path, processes: int, threads: int
) -> Service:
    """Start `handoff worker`, or Dramatiq on `worker.boot` when the command fails at start."""
    counts = ["--processes", str(processes), "--threads", str(threads)]
    return _start_preferring_cli(
        "workers",
        [sys.executable, "-m", "handoff.cli", "worker", *counts],
        [sys.executable, "-m", "dramatiq", "worker.boot", *counts, "--queues", DELIVERY_QUEUE],
        environment,
        log_dir,
        cwd,
    )


def start_reference_workers(
    environment: dict[str, str], log_dir: Path, cwd: Path, processes: int, threads: int
) -> Service:
    """Start Dramatiq on the reference actor with the same processes and threads."""
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.reference_worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        REFERENCE_QUEUE,
    ]
    return _start("reference-workers", argv, environment, log_dir, cwd)


def service_environment(base: dict[str, str], **overrides: str) -> dict[str, str]:
    """Return `base` (usually os.environ) with `overrides`; the inherited PATH is kept."""
    environment = {key: value for key, value in base.items() if not key.startswith("HANDOFF_")}
    environment.update(overrides)
    environment.setdefault("PATH", os.environ.get("PATH", ""))
    return environment
