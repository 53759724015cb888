"""Service commands: migrate, api, relay, worker, and run (all three under one supervisor)."""

from __future__ import annotations

import argparse
import os
import sys
import threading

import structlog

from handoff.broker import DELIVERY_QUEUE
from handoff.commands import database, start_command
from handoff.supervisor import ChildSpec, Supervisor, stop_on_signals

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKER_PROCESSES = 1
DEFAULT_WORKER_THREADS = 16

DATABASE_MIGRATED = "database_migrated"
SUPERVISOR_STARTED = "supervisor_started"
SUPERVISOR_STOPPED = "supervisor_stopped"

logger = structlog.get_logger()


def add_listen_options(parser: argparse.ArgumentParser) -> None:
    """Add --host and --port for the HTTP API."""
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default {DEFAULT_PORT})",
    )


def add_worker_options(parser: argparse.ArgumentParser, threads: int) -> None:
    """Add --processes and --threads for the Dramatiq worker."""
    parser.add_argument(
        "--processes",
        type=_positive,
        default=DEFAULT_WORKER_PROCESSES,
        help=f"worker processes (default {DEFAULT_WORKER_PROCESSES})",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=threads,
        help=f"delivery threads per worker process (default {threads})",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the migrate, api, relay, worker and run commands."""
    migrate = commands.add_parser("migrate", help="upgrade the database to the latest schema")
    migrate.set_defaults(handler=migrate_command)

    api = commands.add_parser("api", help="serve the HTTP API and the admin UI")
    add_listen_options(api)
    api.set_defaults(handler=api_command)

    relay = commands.add_parser("relay", help="run the outbox relay and the sweeper")
    relay.set_defaults(handler=relay_command)

    worker = commands.add_parser("worker", help="run Dramatiq delivery workers")
    add_worker_options(worker, DEFAULT_WORKER_THREADS)
    worker.set_defaults(handler=worker_command)

    run = commands.add_parser(
        "run", help="run api, relay and worker under one supervisor, for small installs"
    )
    add_listen_options(run)
    add_worker_options(run, DEFAULT_WORKER_THREADS)
    run.set_defaults(handler=run_command)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}; use 1 to 65535")
    return port


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid count {value!r}; use an integer >= 1")
    return number


def migrate_command(args: argparse.Namespace) -> int:
    """Upgrade the database to the latest schema."""
    from schema.migrate import upgrade

    settings = start_command("database_url")
    with database(settings) as engine:
        upgrade(engine)
    logger.info(DATABASE_MIGRATED)
    return 0


def api_command(args: argparse.Namespace) -> int:
    """Serve the API with uvicorn in this process until SIGINT or SIGTERM."""
    import uvicorn

    from api.app import create_app

    settings = start_command("database_url", "broker_url", "secret_key")
    # log_config=None keeps the structlog set-up, so uvicorn's lines are JSON too.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
    return 0


def relay_command(args: argparse.Namespace) -> int:
    """Run the relay, its metrics server and hourly retention until SIGINT or SIGTERM."""
    from handoff.db import make_engine
    from handoff.metrics_server import start_metrics_server
    from outbox.relay import run_relay
    from outbox.retention import run_retention

    settings = start_command("database_url", "broker_url")
    stop = threading.Event()
    stop_on_signals(stop)
    start_metrics_server(settings.metrics_host, settings.relay_metrics_port, "relay")

    retention_engine = make_engine(str(settings.database_url), pool_size=1, max_overflow=0)
    retention = threading.Thread(
        target=run_retention,
        args=(retention_engine, settings.retention_days, stop),
        name="retention",
        daemon=True,
    )
    retention.start()
    try:
        run_relay(settings, stop)
    finally:
        stop.set()
        retention.join(timeout=5)
        retention_engine.dispose()
    return 0


def worker_argv(processes: int, threads: int) -> list[str]:
    """Return the command line that `handoff worker` replaces itself with.

    `worker.dramatiq_main` runs Dramatiq's own worker command after setting up the
    service's JSON logging and the workers' metrics; it takes Dramatiq's arguments.
    """
    return [
        sys.executable,
        "-m",
        "worker.dramatiq_main",
        "worker.boot",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        DELIVERY_QUEUE,
    ]


def worker_command(args: argparse.Namespace) -> int:
    """Replace this process with Dramatiq's worker, after checking the settings.

    The new interpreter matters for the metrics: prometheus-client must first be imported
    after `PROMETHEUS_MULTIPROC_DIR` is set, and this process has imported it already.
    """
    start_command("database_url", "broker_url", "secret_key")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec keeps the process id, so a supervisor's signals reach Dramatiq directly.
    argv = worker_argv(args.processes, args.threads)
    os.execv(sys.executable, argv)  # noqa: S606 - argv is fixed above, no shell involved


def service_children(
    host: str, port: int, processes: int, threads: int
) -> tuple[ChildSpec, ChildSpec, ChildSpec]:
    """Return the api, relay and worker commands that `run` and `demo` supervise."""
    cli = (sys.executable, "-m", "handoff.cli")
    return (
        ChildSpec("api", (*cli, "api", "--host", host, "--port", str(port))),
        ChildSpec("relay", (*cli, "relay")),
        ChildSpec(
            "worker",
            (*cli, "worker", "--processes", str(processes), "--threads", str(threads)),
        ),
    )


def run_command(args: argparse.Namespace) -> int:
    """Supervise api, relay and worker child processes until SIGINT or SIGTERM."""
    start_command("database_url", "broker_url", "secret_key")
    stop = threading.Event()
    stop_on_signals(stop)
    children = service_children(args.host, args.port, args.processes, args.threads)
    logger.info(SUPERVISOR_STARTED, children=[child.name for child in children])
    Supervisor(children).run(stop)
    logger.info(SUPERVISOR_STOPPED)
    return 0
