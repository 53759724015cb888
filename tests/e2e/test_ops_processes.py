"""Operations through real processes: JSON logs and metrics of `handoff worker` and `handoff
relay`, and the `handoff ops` and `deliveries redeliver --failed-since` commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select

from handoff.settings import Settings
from schema.tables import DELIVERY_STATUSES, deliveries
from tests.conftest import TEST_SECRET_KEY
from tests.integration.harness import Pipeline
from tests.integration.ops_rows import add_delivery, ago, delivery_ids
from tests.receivers import Receiver
from tests.seed import enqueue_handoffs, seed_workspace

HOOK_URL = "http://127.0.0.1:9/hook"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(**values: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "BROKER_URL", "PROMETHEUS_MULTIPROC_DIR")
        and not name.startswith("HANDOFF_")
    }
    env.update(values)
    return env


def handoff(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "handoff.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM the process; return its exit code, stdout and stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=45)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, stdout, stderr


def scrape(port: int, expected: str, timeout_s: float = 20.0) -> dict[tuple[str, str], float]:
    """Read http://127.0.0.1:port/metrics until a sample named `expected` appears."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:  # noqa: S310 - loopback only
                text = answer.read().decode()
            values = {
                (sample.name, json.dumps(sample.labels, sort_keys=True)): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
            if any(name == expected for name, _ in values):
                return values
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no {expected} on port {port} within {timeout_s} s")
        time.sleep(0.2)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Parse every line; a line that is not one JSON object fails the test with the line."""
    events = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
    return events


@pytest.mark.slow
def test_worker_logs_json_and_serves_metrics(
    engine: Engine,
    settings: Settings,
    database_url: str,
    broker_url: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    seeded = seed_workspace(engine, url=receiver.url)
    port = free_port()
    env = environment(
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        HANDOFF_SECRET_KEY=TEST_SECRET_KEY,
        HANDOFF_ALLOW_PRIVATE_TARGETS="true",
        HANDOFF_LOG_FORMAT="json",
        HANDOFF_WORKER_METRICS_PORT=str(port),
    )
    process = start(tmp_path, env, "worker", "--processes", "1", "--threads", "2")
    relay = Pipeline(settings, engine, broker_url).start(worker=False)
    try:
        [delivery_id] = enqueue_handoffs(engine, seeded, settings)
        assert "delivered" == relay.wait_for_status(delivery_id, {"delivered"}, timeout_s=60)
        labels = json.dumps({"event": "solhelps.insight.handoff", "outcome": "delivered"})
        values = scrape(port, "handoff_deliveries_total")
    finally:
        relay.close()
        code, stdout, stderr = stop(process)

    assert 1.0 == values[("handoff_deliveries_total", labels)]
    assert 1.0 == values[("handoff_attempt_duration_seconds_count", "{}")]
    assert 0 == code, stderr
    assert "" == stderr
    events = json_lines(stdout)
    boot = [event for event in events if "is booting up" in event["event"]]
    assert ["dramatiq.MainProcess"] == [event["logger"] for event in boot]
    [succeeded] = [event for event in events if event["event"] == "delivery_succeeded"]
    assert delivery_id == succeeded["delivery_id"]
    assert "acme" == succeeded["workspace_id"]
    assert 1 == succeeded["attempt"]
    assert "delivered" == succeeded["outcome"]


@pytest.mark.slow
def test_relay_serves_metrics_and_prunes(
    engine: Engine, database_url: str, redis_broker_url: str, tmp_path: Path
) -> None:
    seed_workspace(engine, url=HOOK_URL)
    kept = add_delivery(engine, "acme", status="delivered", created_at=ago(days=2))
    add_delivery(engine, "acme", status="delivered", created_at=ago(days=40))
    port = free_port()
    env = environment(
        DATABASE_URL=database_url,
        BROKER_URL=redis_broker_url,
        HANDOFF_LOG_FORMAT="json",
        HANDOFF_RELAY_METRICS_PORT=str(port),
    )
    process = start(tmp_path, env, "relay")
    try:
        values = scrape(port, "handoff_sweeper_recovered_total")
        deadline = time.monotonic() + 20
        while len(delivery_ids(engine)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        code, stdout, stderr = stop(process)

    assert 0.0 == values[("handoff_sweeper_recovered_total", json.dumps({"kind": "interrupted"}))]
    assert {kept} == delivery_ids(engine)
    assert 0 == code, stderr
    events = [event["event"] for event in json_lines(stdout)]
    assert "metrics_server_started" in events
    assert "retention_pruned" in events


def test_ops_status_prints_json_and_table(
    engine: Engine, database_url: str, redis_broker_url: str, tmp_path: Path
) -> None:
    seed_workspace(engine, url=HOOK_URL)
    add_delivery(engine, "acme", status="failed", updated_at=ago(minutes=2))
    env = environment(DATABASE_URL=database_url, BROKER_URL=redis_broker_url)

    as_json = handoff(tmp_path, env, "ops", "status", "--json")
    as_table = handoff(tmp_path, env, "ops", "status")

    assert 0 == as_json.returncode, as_json.stderr
    figures = json.loads(as_json.stdout)
    assert set(DELIVERY_STATUSES) == set(figures["deliveries"])
    assert 1 == figures["deliveries"]["failed"]
    assert 1 == figures["lastHour"]["failed"]
    assert 0 == figures["broker"]["messages"]
    assert 0 == as_table.returncode, as_table.stderr
    rows = dict(line.rsplit(None, 1) for line in as_table.stdout.splitlines()[1:])
    assert "1" == rows["deliveries failed"]
    assert "handoff" == rows["broker queue"]


def test_ops_status_without_broker_reports_it(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    result = handoff(tmp_path, environment(DATABASE_URL=database_url), "ops", "status", "--json")

    assert 0 == result.returncode, result.stderr
    assert "broker not configured (set BROKER_URL)" == json.loads(result.stdout)["broker"]["error"]


def test_ops_prune_removes_old_history(engine: Engine, database_url: str, tmp_path: Path) -> None:
    seed_workspace(engine, url=HOOK_URL)
    kept = add_delivery(engine, "acme", status="delivered", created_at=ago(days=5))
    add_delivery(engine, "acme", status="cancelled", created_at=ago(days=12), attempts=1)
    env = environment(DATABASE_URL=database_url, HANDOFF_RETENTION_DAYS="10")

    result = handoff(tmp_path, env, "ops", "prune")

    assert 0 == result.returncode, result.stderr
    assert "removed 1 deliveries" in result.stdout
    assert {kept} == delivery_ids(engine)


def test_invalid_retention_setting_names_variable(database_url: str, tmp_path: Path) -> None:
    env = environment(DATABASE_URL=database_url, HANDOFF_RETENTION_DAYS="soon")

    result = handoff(tmp_path, env, "ops", "prune")

    assert 2 == result.returncode
    assert result.stderr.startswith("HANDOFF_RETENTION_DAYS: invalid value 'soon'")


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(select(deliveries.c.id, deliveries.c.status)).all()
    return {str(delivery_id): status for delivery_id, status in rows}


def test_redeliver_failed_since_skips_unconfigured(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    seed_workspace(engine, url=HOOK_URL)
    seed_workspace(engine, workspace_id="globex")
    recent = add_delivery(engine, "acme", status="failed", updated_at=ago(hours=1))
    older = add_delivery(engine, "acme", status="failed", updated_at=ago(days=3))
    delivered = add_delivery(engine, "acme", status="delivered", updated_at=ago(hours=1))
    orphan = add_delivery(engine, "globex", status="failed", updated_at=ago(hours=1))
    env = environment(DATABASE_URL=database_url)

    result = handoff(tmp_path, env, "deliveries", "redeliver", "--failed-since", "1d")

    assert 0 == result.returncode, result.stderr
    # The command's own log line comes first, then what it prints for people.
    lines = result.stdout.splitlines()
    assert any(line.startswith("redelivered 1 failed deliveries since ") for line in lines)
    assert any(
        line.startswith("skipped 1 in 1 workspaces whose integration is removed (1)")
        for line in lines
    )
    assert {recent: "queued", older: "failed", delivered: "delivered", orphan: "failed"} == (
        statuses(engine)
    )


def test_redeliver_needs_id_or_failed_since(database_url: str, tmp_path: Path) -> None:
    env = environment(DATABASE_URL=database_url)

    neither = handoff(tmp_path, env, "deliveries", "redeliver")
    bad_time = handoff(tmp_path, env, "deliveries", "redeliver", "--failed-since", "yesterday")

    assert 1 == neither.returncode
    assert "give either DELIVERY_ID or --failed-since TIME" in neither.stderr
    assert 2 == bad_time.returncode
    assert "invalid time 'yesterday'" in bad_time.stderr
