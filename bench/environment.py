"""Set-up and tear-down of one benchmark run: receiver, Redis, database, seed and producers."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy import Engine

from bench.cpu import PostgresBackends
from bench.nginx import Nginx
from bench.processes import (
    Service,
    service_environment,
    start_reference_workers,
    start_relay,
    start_workers,
)
from bench.seed import Seeded, seed
from bench.services import DEFAULT_ADMIN_URL, BenchDatabase, BenchRedis
from handoff.db import make_engine

PRODUCERS = 4
# Application names, so that each Postgres backend's CPU is charged to the right process.
RELAY_APPLICATION = "bench-relay"
WORKER_APPLICATION = "bench-worker"
PRODUCER_APPLICATION = "bench-producer"
BACKEND_LABELS = {
    RELAY_APPLICATION: "postgres (relay)",
    WORKER_APPLICATION: "postgres (workers)",
    PRODUCER_APPLICATION: "postgres (producers)",
}
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class BenchEnvironment:
    """Everything a run measures against; `open()` starts it and `close()` removes it all."""

    folder: Path
    nginx: Nginx
    redis: BenchRedis
    database: BenchDatabase
    engine: Engine
    seeded: Seeded
    pool: ProcessPoolExecutor
    secret_key: str
    _cleanup: ExitStack

    @classmethod
    def open(
        cls, admin_url: str = DEFAULT_ADMIN_URL, keep_folder: bool = False
    ) -> BenchEnvironment:
        """Start nginx and Redis, create and seed the database, and spawn the producers.

        Raises:
            RuntimeError: nginx or redis-server is missing or did not start.
            psycopg.OperationalError: Postgres is unreachable at `admin_url`.
        """
        cleanup = ExitStack()
        try:
            folder = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
            if not keep_folder:
                cleanup.callback(shutil.rmtree, folder, True)
            nginx = Nginx.start(folder / "nginx")
            cleanup.callback(nginx.stop)
            redis = BenchRedis.start(folder / "redis")
            cleanup.callback(redis.stop)
            database = BenchDatabase.create(admin_url)
            cleanup.callback(database.drop)
            engine = make_engine(database.url, pool_size=2, max_overflow=2)
            cleanup.callback(engine.dispose)
            secret_key = secrets.token_urlsafe(32)
            seeded = seed(engine, nginx.url, secret_key)
            # Spawned, not forked: a producer must not inherit this process's connections.
            pool = ProcessPoolExecutor(
                max_workers=PRODUCERS, mp_context=multiprocessing.get_context("spawn")
            )
            cleanup.callback(pool.shutdown)
            (folder / "hosts").write_text("127.0.0.1 localhost\n")
        except BaseException:
            cleanup.close()
            raise
        return cls(
            folder=folder,
            nginx=nginx,
            redis=redis,
            database=database,
            engine=engine,
            seeded=seeded,
            pool=pool,
            secret_key=secret_key,
            _cleanup=cleanup,
        )

    def close(self) -> None:
        """Stop every server and process this run started, drop the database, delete files."""
        self._cleanup.close()

    @property
    def producer_url(self) -> str:
        """The database URL producers connect with."""
        return self.database.url_for(PRODUCER_APPLICATION)

    def _environment(self, application_name: str) -> dict[str, str]:
        return service_environment(
            dict(os.environ),
            DATABASE_URL=self.database.url_for(application_name),
            BROKER_URL=self.redis.url,
            HANDOFF_SECRET_KEY=self.secret_key,
            HANDOFF_ALLOW_PRIVATE_TARGETS="true",
            HANDOFF_LOG_FORMAT="json",
            HANDOFF_RESOLVER_HOSTS=str(self.folder / "hosts"),
            BENCH_WEBHOOK_URL=self.nginx.url,
        )

    def start_relay(self) -> Service:
        """Start the relay with this run's settings."""
        return start_relay(self._environment(RELAY_APPLICATION), self.folder, REPOSITORY)

    def start_workers(self, processes: int, threads: int) -> Service:
        """Start the delivery workers with this run's settings."""
        return start_workers(
            self._environment(WORKER_APPLICATION), self.folder, REPOSITORY, processes, threads
        )

    def start_reference_workers(self, processes: int, threads: int) -> Service:
        """Start the reference actor's workers."""
        return start_reference_workers(
            self._environment(WORKER_APPLICATION), self.folder, REPOSITORY, processes, threads
        )

    def postgres_backends(self) -> PostgresBackends:
        """Return a finder of this database's backends; the caller closes it."""
        return PostgresBackends(self.database.admin_url, self.database.name, BACKEND_LABELS)

    def redis_processes(self) -> list[psutil.Process]:
        """Return the private redis-server."""
        return [psutil.Process(self.redis.process.pid)]

    def nginx_processes(self) -> list[psutil.Process]:
        """Return the nginx master and its worker."""
        root = psutil.Process(self.nginx.process.pid)
        return [root, *root.children()]

    def producer_processes(self) -> list[psutil.Process]:
        """Return the spawned producer processes."""
        found = []
        for child in psutil.Process().children():
            try:
                if any("spawn_main" in part for part in child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found
