"""The faults, each injected while the load runs; each returns a note on what it did."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from chaos.environment import RELAY_APPLICATION_PREFIX, WORKER_THREADS, ChaosEnvironment
from chaos.processes import ProcessError, ProductProcess
from handoff.broker import DELIVERY_QUEUE

WORKER_KILLS = 3
# The receiver delays each response this long, so that a kill lands mid-request.
HOLD_S = 0.5
IN_FLIGHT_WAIT_S = 5.0
EXIT_WAIT_S = 10.0
RELAY_KILLS = 3
# The relays stay stopped this long so that the outbox backlog grows large.
RELAY_PAUSE_S = 6.0
PUBLISH_WATCH_S = 3.0
REDIS_DOWN_S = 2.0
FLUSHES = 2
# The worker processes stay stopped this long before a Redis fault, so messages are queued.
QUEUE_BUILD_S = 2.0
POSTGRES_DOWN_S = 3.0

# A relay session that has claimed and marked a batch (published_at set) and not yet
# committed: the relay is publishing that batch to the broker right now.
# NOTE: this matches the text of the relay's claim statement in outbox/relay.py. If that
# text changes, no relay is caught and relay-1 is killed at a random moment instead, which
# the row's note shows as "0 mid-publish".
_RELAY_MID_PUBLISH = text(
    """
    SELECT application_name FROM pg_stat_activity
    WHERE application_name LIKE :prefix AND state = 'idle in transaction'
      AND query ILIKE '%published_at = now()%'
    LIMIT 1
    """
)


def _wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return False


def _dramatiq_workers(process: ProductProcess) -> list[psutil.Process]:
    """Return the Dramatiq worker processes under `handoff worker`.

    Its children are the worker processes and Dramatiq fork processes (the metrics
    server); only a worker process runs the delivery threads.
    """
    workers = []
    for child in process.children():
        try:
            if child.num_threads() >= WORKER_THREADS:
                workers.append(child)
        except psutil.NoSuchProcess:
            continue
    return workers


def kill_workers(env: ChaosEnvironment) -> str:
    """SIGKILL the Dramatiq worker process while requests are in flight, then restart it.

    Dramatiq's main process shuts down when a worker process dies, so the whole
    `handoff worker` is started again, as a process manager would.
    """
    env.receiver.hold(HOLD_S)
    mid_request = 0
    try:
        for _ in range(WORKER_KILLS):
            _wait_until(lambda: env.receiver.in_flight() > 0, IN_FLIGHT_WAIT_S)
            workers = _dramatiq_workers(env.worker)
            if not workers:
                raise ProcessError(f"worker has no Dramatiq worker process:\n{env.worker.tail()}")
            in_flight = env.receiver.in_flight()
            for child in workers:
                child.send_signal(signal.SIGKILL)
            mid_request += 1 if in_flight > 0 else 0
            if env.worker.wait_exit(EXIT_WAIT_S) is None:
                env.worker.kill()
            env.start_worker()
    finally:
        env.receiver.hold(0.0)
    return f"{WORKER_KILLS} kills, {mid_request} with requests in flight at the receiver"


def _relay_mid_publish(env: ChaosEnvironment) -> ProductProcess | None:
    try:
        with env.engine.connect() as connection:
            name = connection.execute(
                _RELAY_MID_PUBLISH, {"prefix": RELAY_APPLICATION_PREFIX + "%"}
            ).scalar()
    except SQLAlchemyError:
        return None
    return None if name is None else env.relay_by_application(str(name))


def kill_relays(env: ChaosEnvironment) -> str:
    """SIGKILL a relay between publishing a batch and committing it, then restart it.

    Both relays are paused with SIGSTOP while the load builds a backlog. On SIGCONT they
    claim it in batches, and the first relay seen in Postgres with a claimed and uncommitted
    batch is killed. When no relay is caught in time, relay-1 is killed anyway.
    """
    mid_publish = 0
    for _ in range(RELAY_KILLS):
        for relay in env.relays:
            relay.send_signal(signal.SIGSTOP)
        time.sleep(RELAY_PAUSE_S)
        for relay in env.relays:
            relay.send_signal(signal.SIGCONT)

        victim: ProductProcess | None = None
        deadline = time.monotonic() + PUBLISH_WATCH_S
        while victim is None and time.monotonic() < deadline:
            victim = _relay_mid_publish(env)
        if victim is not None:
            victim.send_signal(signal.SIGKILL)
            mid_publish += 1
        else:
            victim = env.relays[0]
            victim.send_signal(signal.SIGKILL)
        victim.wait_exit(EXIT_WAIT_S)
        env.start_relay(victim)
    return f"{RELAY_KILLS} kills after a {RELAY_PAUSE_S:g} s pause, {mid_publish} mid-publish"


@contextmanager
def _workers_paused(env: ChaosEnvironment) -> Iterator[None]:
    """Stop the Dramatiq worker processes (SIGSTOP) so that messages pile up in Redis."""
    workers = _dramatiq_workers(env.worker)
    for child in workers:
        child.send_signal(signal.SIGSTOP)
    try:
        time.sleep(QUEUE_BUILD_S)
        yield
    finally:
        for child in workers:
            child.send_signal(signal.SIGCONT)


def _queued_messages(env: ChaosEnvironment) -> int:
    """Return how many messages wait in the delivery queue of the private Redis."""
    client = redis.Redis.from_url(env.redis.url)
    try:
        return int(client.hlen(f"dramatiq:{DELIVERY_QUEUE}.msgs"))
    finally:
        client.close()


def restart_redis(env: ChaosEnvironment) -> str:
    """Stop Redis with messages queued (no persistence, so they are gone), start it again."""
    with _workers_paused(env):
        dropped = _queued_messages(env)
        env.redis.stop()
        time.sleep(REDIS_DOWN_S)
        env.redis.start()
    return f"down {REDIS_DOWN_S:g} s, restarted empty, {dropped} queued messages dropped"


def flush_redis(env: ChaosEnvironment) -> str:
    """FLUSHALL the private Redis twice, each time with messages queued."""
    dropped = 0
    for _ in range(FLUSHES):
        with _workers_paused(env):
            dropped += _queued_messages(env)
            env.redis.flushall()
    return f"{FLUSHES} FLUSHALLs, {dropped} queued messages dropped"


def restart_postgres(env: ChaosEnvironment) -> str:
    """Stop Postgres (fast: open transactions roll back), wait, start it on the same port."""
    env.postgres.stop("fast")
    time.sleep(POSTGRES_DOWN_S)
    env.postgres.start()
    return f"down {POSTGRES_DOWN_S:g} s; no process was restarted"


def receiver_down(env: ChaosEnvironment, outage_s: float) -> str:
    """Close the receiver's port and connections for `outage_s`, then listen again."""
    env.receiver.stop()
    time.sleep(outage_s)
    env.receiver.start()
    return f"down {outage_s:g} s"


def receiver_hangs(env: ChaosEnvironment, workspace_id: str, duration_s: float) -> str:
    """Make one workspace's receiver path hang on every request for `duration_s`."""
    env.receiver.hang(workspace_id, True)
    time.sleep(duration_s)
    env.receiver.hang(workspace_id, False)
    return f"{workspace_id} hung {duration_s:g} s"
