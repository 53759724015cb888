"""Private servers for one benchmark run: a Postgres database and a Redis of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from handoff.db import libpq_url, make_engine
from schema.migrate import upgrade

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT_S = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    """Wait until `port` on 127.0.0.1 accepts connections.

    Raises:
        RuntimeError: `process` exited, or the port did not open within 10 s.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S} s")


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@dataclass
class BenchDatabase:
    """A database `handoff_bench_<random>` on the machine's Postgres, migrated at creation."""

    admin_url: str
    name: str

    @classmethod
    def create(cls, admin_url: str = DEFAULT_ADMIN_URL) -> BenchDatabase:
        """Create and migrate a fresh database.

        Raises:
            psycopg.OperationalError: the Postgres server at `admin_url` is unreachable.
        """
        database = cls(
            admin_url=libpq_url(admin_url), name=f"handoff_bench_{uuid.uuid4().hex[:10]}"
        )
        with psycopg.connect(database.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database.name}"')
        engine = make_engine(database.url, pool_size=1, max_overflow=0)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return database

    @property
    def url(self) -> str:
        """URL of the benchmark database."""
        return _with_database(self.admin_url, self.name)

    def url_for(self, application_name: str) -> str:
        """Return the database URL with `application_name` set, to tell backends apart."""
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}application_name={application_name}"

    def drop(self) -> None:
        """Drop the database, closing any connection still open to it."""
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class BenchRedis:
    """A `redis-server` of this run on a free port, with persistence off."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @classmethod
    def start(cls, directory: Path) -> BenchRedis:
        """Start the server with its working folder in `directory`.

        Raises:
            RuntimeError: `redis-server` is not installed, or it did not start.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found; install it: apt-get install -y redis-server"
            )
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process=process, port=port, directory=directory)
        wait_for_port(port, process, "redis-server")
        return server

    @property
    def url(self) -> str:
        """The broker URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def clear_queues(self) -> None:
        """Delete every Dramatiq key, so the next phase starts with empty queues."""
        client = redis.Redis.from_url(self.url)
        try:
            keys = list(client.scan_iter("dramatiq:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
