"""One chaos run's world: private servers, the receiver, seeded workspaces and product processes."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine

from chaos.processes import (
    WORKER_READY_LINE,
    ProcessError,
    ProductProcess,
    product_environment,
    run_handoff,
)
from chaos.receiver import RecordingReceiver
from chaos.seed import ROLLBACK_THEME_ID, SeededWorkspace, configure_webhook, seed_workspaces
from chaos.services import PrivatePostgres, PrivateRedis, free_port
from handoff.db import make_engine
from handoff.settings import Settings, load_settings

RELAY_COUNT = 2
WORKER_THREADS = 16
START_TIMEOUT_S = 30.0
RELAY_STARTED_LINE = "relay_started"
RELAY_APPLICATION_PREFIX = "chaos-relay-"

# Short enough that every fault recovers within the suite's time budget: 8 attempts over
# about 90 s, a lease of 13 s, and a lost message published again within 7 s.
SUITE_SETTINGS = {
    "HANDOFF_ALLOW_PRIVATE_TARGETS": "true",
    "HANDOFF_LOG_FORMAT": "json",
    "HANDOFF_SWEEP_INTERVAL": "2",
    "HANDOFF_SWEEP_GRACE": "5",
    "HANDOFF_DELIVERY_TIMEOUT": "3",
    "HANDOFF_RETRY_SCHEDULE": "1,2,4,8,15,30,30",
}


def _with_application_name(url: str, name: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}application_name={name}"


@dataclass
class ChaosEnvironment:
    """Everything a run works against; `open()` builds it and `close()` removes it all."""

    folder: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    receiver: RecordingReceiver
    settings: Settings
    engine: Engine
    api: ProductProcess
    relays: list[ProductProcess]
    worker: ProductProcess
    api_url: str
    workspaces: dict[str, SeededWorkspace]
    _cleanup: ExitStack

    @classmethod
    def open(cls, themes: dict[str, list[str]], logs_to: Path) -> ChaosEnvironment:
        """Start the servers, seed the workspaces, start the processes and save the webhooks.

        Args:
            themes: theme ids by workspace id; each workspace's webhook path is its id.
            logs_to: where `close()` copies every process's log.

        Raises:
            ServiceError, ProcessError: a server or process did not start.
        """
        cleanup = ExitStack()
        try:
            folder = Path(tempfile.mkdtemp(prefix="handoff-chaos-"))
            cleanup.callback(shutil.rmtree, folder, True)
            # The postgres user must reach its own subfolder.
            folder.chmod(0o755)
            (folder / "logs").mkdir()
            cleanup.callback(_copy_logs, folder, logs_to)

            postgres = PrivatePostgres.create(folder / "postgres")
            cleanup.callback(postgres.close)
            redis = PrivateRedis.create(folder / "redis")
            cleanup.callback(redis.stop)
            receiver = RecordingReceiver(ROLLBACK_THEME_ID)
            receiver.start()
            cleanup.callback(receiver.stop)

            hosts = folder / "hosts"
            hosts.write_text("127.0.0.1 localhost\n", encoding="ascii")
            base = product_environment(
                dict(os.environ),
                DATABASE_URL=postgres.url,
                BROKER_URL=redis.url,
                HANDOFF_SECRET_KEY=secrets.token_urlsafe(32),
                HANDOFF_RESOLVER_HOSTS=str(hosts),
                **SUITE_SETTINGS,
            )
            settings = load_settings(base)
            run_handoff(["migrate"], base)
            workspaces = seed_workspaces(base, folder, themes)
            engine = make_engine(
                _with_application_name(postgres.url, "chaos-suite"), pool_size=4, max_overflow=4
            )
            cleanup.callback(engine.dispose)

            api_port = free_port()
            environment = cls(
                folder=folder,
                postgres=postgres,
                redis=redis,
                receiver=receiver,
                settings=settings,
                engine=engine,
                api=cls._process(folder, base, "api", ["api", "--port", str(api_port)]),
                relays=[
                    cls._process(
                        folder,
                        base,
                        f"relay-{number}",
                        ["relay"],
                        HANDOFF_RELAY_METRICS_PORT=str(free_port()),
                    )
                    for number in range(1, RELAY_COUNT + 1)
                ],
                worker=cls._process(
                    folder,
                    base,
                    "worker",
                    ["worker", "--processes", "1", "--threads", str(WORKER_THREADS)],
                    HANDOFF_WORKER_METRICS_PORT=str(free_port()),
                ),
                api_url=f"http://127.0.0.1:{api_port}",
                workspaces=workspaces,
                _cleanup=cleanup,
            )
            cleanup.callback(environment._stop_processes)
            environment._start_processes()
            for workspace_id, seeded in workspaces.items():
                configure_webhook(
                    environment.api_url, seeded.owner_token, receiver.url_for(workspace_id)
                )
        except BaseException:
            cleanup.close()
            raise
        return environment

    @staticmethod
    def _process(
        folder: Path, base: dict[str, str], name: str, args: list[str], **settings: str
    ) -> ProductProcess:
        # Each process gets a metrics port of its own: the defaults are fixed ports that two
        # relays, or another run on the machine, would fight over.
        environment = {**base, **settings}
        # This name distinguishes the relays' sessions in pg_stat_activity.
        environment["DATABASE_URL"] = _with_application_name(base["DATABASE_URL"], f"chaos-{name}")
        return ProductProcess(
            name=name, args=args, environment=environment, log_path=folder / "logs" / f"{name}.log"
        )

    def close(self) -> None:
        """Stop every process and server of the run and delete its folder (logs are copied)."""
        self._cleanup.close()

    def processes(self) -> list[ProductProcess]:
        """Return the product processes: api, relays, worker."""
        return [self.api, *self.relays, self.worker]

    def relay_by_application(self, application_name: str) -> ProductProcess | None:
        """Return the relay whose Postgres sessions carry `application_name`."""
        for relay in self.relays:
            if f"application_name={application_name}" in relay.environment["DATABASE_URL"]:
                return relay
        return None

    def start_worker(self) -> None:
        """Start `handoff worker` and wait until its Dramatiq process is ready."""
        ready = self.worker.log_count(WORKER_READY_LINE)
        self.worker.start()
        self.worker.wait_for_log(WORKER_READY_LINE, ready + 1, START_TIMEOUT_S)

    def start_relay(self, relay: ProductProcess) -> None:
        """Start one `handoff relay` and wait until it runs."""
        started = relay.log_count(RELAY_STARTED_LINE)
        relay.start()
        relay.wait_for_log(RELAY_STARTED_LINE, started + 1, START_TIMEOUT_S)

    def _start_processes(self) -> None:
        self.api.start()
        for relay in self.relays:
            self.start_relay(relay)
        self.start_worker()
        self._wait_for_api()

    def _wait_for_api(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            code = self.api.exit_code()
            if code is not None:
                raise ProcessError(f"api exited with code {code}:\n{self.api.tail()}")
            if time.monotonic() > deadline:
                raise ProcessError(f"api did not respond to /healthz within {START_TIMEOUT_S} s")
            time.sleep(0.1)

    def _stop_processes(self) -> None:
        for process in self.processes():
            process.stop()


def _copy_logs(folder: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for path in [*(folder / "logs").glob("*.log"), folder / "postgres" / "postgres.log"]:
        if path.exists():
            shutil.copyfile(path, destination / path.name)
    redis_log = folder / "redis" / "redis.log"
    if redis_log.exists():
        shutil.copyfile(redis_log, destination / "redis.log")
