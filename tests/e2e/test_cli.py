"""The `handoff` command as a real subprocess, run from a folder outside the project."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from api.tokens import hash_token
from schema.tables import deliveries, members, operator_tokens, outbox, themes, workspaces
from tests.conftest import TEST_SECRET_KEY
from tests.seed import enqueue_handoffs, seed_workspace

THEME: dict[str, Any] = {
    "workspaceId": "acme",
    "assistantId": "asst_123",
    "id": "permissions",
    "label": "Permissions confusion",
    "conversationCount": 24,
    "impactTier": "High",
    "confidence": "Medium",
    "recommendation": {"title": "Reduce access/role ambiguity", "nextStep": "Add a boundary."},
    "evidence": [{"snippet": "I can't upload"}, {"snippet": "Who is admin?\u0000"}],
}


def _environment(**values: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "BROKER_URL") and not name.startswith("HANDOFF_")
    }
    env.update(values)
    return env


def handoff(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m handoff.cli ARGS` in `cwd` and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "handoff.cli", *args],
        cwd=cwd,
        env=env if env is not None else _environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Any:
    """Run `handoff` with DATABASE_URL set to this test's database."""
    env = _environment(DATABASE_URL=database_url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return handoff(tmp_path, *args, env=env)

    return run


@pytest.fixture
def acme(engine: Engine) -> str:
    with engine.begin() as connection:
        connection.execute(
            workspaces.insert().values(id="acme", name="Acme Inc", plan_tier="GROWTH")
        )
    return "acme"


def _write_themes(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_missing_database_url_exits_2(tmp_path: Path) -> None:
    result = handoff(tmp_path, "migrate")

    assert 2 == result.returncode
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines)
    assert lines[0].startswith("DATABASE_URL: missing")
    assert "Traceback" not in result.stderr


def test_invalid_delivery_timeout_exits_2(database_url: str, tmp_path: Path) -> None:
    env = _environment(DATABASE_URL=database_url, HANDOFF_DELIVERY_TIMEOUT="0")

    result = handoff(
        tmp_path, "workspaces", "create", "--id", "a", "--name", "A", "--plan", "free", env=env
    )

    assert 2 == result.returncode
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines)
    assert lines[0].startswith("HANDOFF_DELIVERY_TIMEOUT: invalid value '0'")


def test_no_subcommand_prints_help(tmp_path: Path) -> None:
    result = handoff(tmp_path)

    assert 0 == result.returncode
    assert "usage: handoff" in result.stdout
    assert "deliveries" in result.stdout


def test_migrate_runs_from_any_folder(cli: Any) -> None:
    result = cli("migrate")

    assert 0 == result.returncode, result.stderr


def test_workspaces_create_stores_plan_upper_case(cli: Any, engine: Engine) -> None:
    result = cli("workspaces", "create", "--id", "acme", "--name", "Acme Inc", "--plan", "growth")

    assert 0 == result.returncode, result.stderr
    with engine.connect() as connection:
        row = connection.execute(select(workspaces)).one()
    assert ("acme", "Acme Inc", "GROWTH") == (row.id, row.name, row.plan_tier)


def test_workspaces_create_twice_fails(cli: Any, acme: str) -> None:
    result = cli("workspaces", "create", "--id", acme, "--name", "Again", "--plan", "FREE")

    assert 1 == result.returncode
    assert "already exists" in result.stderr


def test_unknown_plan_is_rejected(cli: Any) -> None:
    result = cli("workspaces", "create", "--id", "acme", "--name", "Acme", "--plan", "gold")

    assert 2 == result.returncode
    assert "invalid plan 'gold'" in result.stderr


def test_members_add_prints_id_then_token(cli: Any, acme: str, engine: Engine) -> None:
    result = cli(
        "members", "add", "--workspace", acme, "--name", "Mel Member", "--role", "member",
        "--permission", "insights.export", "--assistant", "asst_123", "--assistant", "asst_9",
    )  # fmt: skip

    assert 0 == result.returncode, result.stderr
    lines = result.stdout.strip().splitlines()
    token = lines[-1].split()[-1]
    member_id = lines[0].split()[1]
    with engine.connect() as connection:
        row = connection.execute(select(members)).one()
    assert str(uuid.UUID(member_id)) == row.id
    assert hash_token(token) == row.token_hash
    assert ("Mel Member", "member") == (row.name, row.role)
    assert ["insights.export"] == row.permissions
    assert ["asst_123", "asst_9"] == row.assistant_ids
    assert token not in result.stderr


def test_members_add_to_unknown_workspace_fails(cli: Any) -> None:
    result = cli("members", "add", "--workspace", "nope", "--name", "X", "--role", "admin")

    assert 1 == result.returncode
    assert "workspace 'nope' not found" in result.stderr


def test_operator_token_create_prints_id_then_token(cli: Any, engine: Engine) -> None:
    result = cli("tokens", "create", "--operator")

    assert 0 == result.returncode, result.stderr
    lines = result.stdout.strip().splitlines()
    token = lines[-1].split()[-1]
    with engine.connect() as connection:
        row = connection.execute(select(operator_tokens)).one()
    assert row.id in lines[0]
    assert hash_token(token) == row.token_hash


def test_themes_load_upserts(cli: Any, acme: str, engine: Engine, tmp_path: Path) -> None:
    first = _write_themes(tmp_path / "first.json", [THEME])
    second = _write_themes(
        tmp_path / "second.json",
        [{**THEME, "label": "Roles are unclear"}, {**THEME, "id": "sso", "impactTier": "low"}],
    )

    loaded_first = cli("themes", "load", str(first))
    loaded_second = cli("themes", "load", str(second))

    assert 0 == loaded_first.returncode, loaded_first.stderr
    assert 0 == loaded_second.returncode, loaded_second.stderr
    with engine.connect() as connection:
        rows = connection.execute(select(themes).order_by(themes.c.id)).all()
    assert ["permissions", "sso"] == [row.id for row in rows]
    assert "Roles are unclear" == rows[0].label
    assert ["I can't upload", "Who is admin?\ufffd"] == rows[0].evidence
    assert "Low" == rows[1].impact_tier


def test_themes_load_is_all_or_nothing(cli: Any, acme: str, engine: Engine, tmp_path: Path) -> None:
    path = _write_themes(
        tmp_path / "themes.json", [THEME, {**THEME, "id": "sso", "confidence": "Sure"}]
    )

    result = cli("themes", "load", str(path))

    assert 1 == result.returncode
    assert "item 1 (id 'sso'): confidence:" in result.stderr
    assert "no theme was loaded" in result.stderr
    with engine.connect() as connection:
        assert [] == connection.execute(select(themes.c.id)).all()


def test_themes_load_unknown_workspace_loads_nothing(
    cli: Any, acme: str, engine: Engine, tmp_path: Path
) -> None:
    path = _write_themes(tmp_path / "themes.json", [THEME, {**THEME, "workspaceId": "globex"}])

    result = cli("themes", "load", str(path))

    assert 1 == result.returncode
    assert "item 1 (id 'permissions'): workspaceId: workspace 'globex' not found" in result.stderr
    with engine.connect() as connection:
        assert [] == connection.execute(select(themes.c.id)).all()


def test_deliveries_list_json_on_empty_workspace(cli: Any, acme: str) -> None:
    result = cli("deliveries", "list", "--workspace", acme, "--json")

    assert 0 == result.returncode, result.stderr
    assert {"items": [], "nextCursor": None} == json.loads(result.stdout)


def test_deliveries_list_unknown_workspace_fails(cli: Any) -> None:
    result = cli("deliveries", "list", "--workspace", "nope")

    assert 1 == result.returncode
    assert "workspace 'nope' not found" in result.stderr


def _enqueue(engine: Engine) -> str:
    seeded = seed_workspace(engine, url="http://127.0.0.1:9/hook")
    return enqueue_handoffs(engine, seeded)[0]


def test_deliveries_list_show_and_redeliver(cli: Any, engine: Engine) -> None:
    delivery_id = _enqueue(engine)

    listed = cli("deliveries", "list", "--workspace", "acme")
    listed_json = cli("deliveries", "list", "--workspace", "acme", "--status", "pending", "--json")
    shown_json = cli("deliveries", "show", delivery_id, "--json")
    shown_text = cli("deliveries", "show", delivery_id)
    redelivered = cli("deliveries", "redeliver", delivery_id)

    assert 0 == listed.returncode, listed.stderr
    assert delivery_id in listed.stdout.splitlines()[1]
    assert "DELIVERY ID" in listed.stdout.splitlines()[0]
    assert [delivery_id] == [item["deliveryId"] for item in json.loads(listed_json.stdout)["items"]]
    delivery = json.loads(shown_json.stdout)
    assert delivery_id == delivery["deliveryId"]
    assert [] == delivery["attempts"]
    assert "http://127.0.0.1:9/…" == delivery["url"]
    assert "status:       pending" in shown_text.stdout
    assert 0 == redelivered.returncode, redelivered.stderr
    with engine.connect() as connection:
        status = connection.execute(
            select(deliveries.c.status).where(deliveries.c.id == delivery_id)
        ).scalar_one()
        triggers = connection.execute(
            select(outbox.c.trigger).where(outbox.c.delivery_id == delivery_id)
        ).scalars()
        assert "queued" == status
        assert ["manual", "scheduled"] == sorted(triggers)


def test_deliveries_show_unknown_id_fails(cli: Any) -> None:
    result = cli("deliveries", "show", str(uuid.uuid4()))
    malformed = cli("deliveries", "show", "not-a-uuid")

    assert 1 == result.returncode
    assert "not found" in result.stderr
    assert 1 == malformed.returncode


class _JsonLines:
    """Collects the JSON log lines of a process's stdout on a background thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.put(event)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching log line within {timeout_s} s: {self.seen}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(event)
            if match(event):
                return event


def _started(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: "child_started" == event.get("event") and name == event.get("child")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_run_restarts_dead_child_and_stops_all(
    database_url: str, broker_url: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _environment(
        DATABASE_URL=database_url,
        BROKER_URL=broker_url,
        HANDOFF_SECRET_KEY=TEST_SECRET_KEY,
        HANDOFF_LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "handoff.cli", "run", "--port", str(port), "--threads", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = _JsonLines(process)
        pids = {
            name: lines.wait_for(_started(name), 30)["pid"] for name in ("api", "relay", "worker")
        }

        os.kill(pids["relay"], signal.SIGKILL)
        exited = lines.wait_for(lambda event: "child_exited" == event.get("event"), 30)
        restarted = lines.wait_for(_started("relay"), 30)

        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=45)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert "relay" == exited["child"]
    assert -signal.SIGKILL == exited["exit_code"]
    assert pids["relay"] != restarted["pid"]
    assert 0 == code
    for pid in [*pids.values(), restarted["pid"]]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
