"""Private Postgres and Redis servers of one chaos run, on their own ports and data folders."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

STARTUP_TIMEOUT_S = 30.0
# The machine's shared servers; the suite must never flush or restart these.
SHARED_PORTS = (5432, 6379)
POSTGRES_USER = "postgres"


class ServiceError(Exception):
    """Raised when a private server cannot be installed, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    if port in SHARED_PORTS:
        raise ServiceError(f"the kernel offered the shared port {port}; run the suite again")
    return port


def port_open(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, what: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until 127.0.0.1:`port` accepts connections.

    Raises:
        ServiceError: the port did not open within `timeout_s` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not port_open(port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s")
        time.sleep(0.05)


def _postgres_bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise ServiceError(
            "initdb not found under /usr/lib/postgresql/*/bin; "
            "install it: apt-get install -y postgresql"
        )
    return Path(found[-1]).parent


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", POSTGRES_USER, "--", *argv]
    return argv


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=POSTGRES_USER, group=POSTGRES_USER)


@dataclass
class PrivatePostgres:
    """A Postgres cluster in a folder of this run, listening on 127.0.0.1 only."""

    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_path: Path
    port: int

    @classmethod
    def create(cls, folder: Path) -> PrivatePostgres:
        """Run initdb in `folder`/data and start the server on a free port.

        Raises:
            ServiceError: initdb or the server failed; the message has their output.
        """
        bin_dir = _postgres_bin_dir()
        folder.mkdir(parents=True)
        _chown_to_postgres(folder)
        server = cls(
            bin_dir=bin_dir,
            data_dir=folder / "data",
            socket_dir=folder / "socket",
            log_path=folder / "postgres.log",
            port=free_port(),
        )
        server.socket_dir.mkdir()
        _chown_to_postgres(server.socket_dir)
        server._run(
            str(bin_dir / "initdb"),
            "-D",
            str(server.data_dir),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        server.start()
        return server

    @property
    def url(self) -> str:
        """The URL of the `postgres` database as the superuser, over TCP."""
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(STARTUP_TIMEOUT_S)),
        )
        wait_for_port(self.port, "postgres")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `fast` rolls back open transactions and closes every session."""
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(STARTUP_TIMEOUT_S)),
        )

    def close(self) -> None:
        """Stop the server at once if it runs; its folder is left for the caller to delete."""
        if self.is_running():
            self.stop("immediate")

    def is_running(self) -> bool:
        """Tell whether the server's postmaster is alive."""
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            _as_postgres([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)]),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _run(self, *argv: str) -> None:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            _as_postgres(list(argv)),
            capture_output=True,
            text=True,
            check=False,
            timeout=STARTUP_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-2000:]
            raise ServiceError(f"{Path(argv[0]).name} {argv[1]} failed: {output}")


@dataclass
class PrivateRedis:
    """A `redis-server` of this run with persistence off, so a restart starts empty."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, folder: Path) -> PrivateRedis:
        """Start the server on a free port with its working folder in `folder`.

        Raises:
            ServiceError: `redis-server` is missing or did not start.
        """
        folder.mkdir(parents=True)
        server = cls(folder=folder, port=free_port())
        server.start()
        return server

    @property
    def url(self) -> str:
        """The broker URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server on its port, with empty memory."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError(
                "redis-server not found; install it: apt-get install -y redis-server"
            )
        with (self.folder / "redis.log").open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.folder),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, "redis-server")

    def stop(self) -> None:
        """Stop the server; with persistence off its data is gone."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def flushall(self) -> None:
        """Delete every key of this private server."""
        if self.port in SHARED_PORTS:
            raise ServiceError(f"refusing to flush the shared Redis on port {self.port}")
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()
