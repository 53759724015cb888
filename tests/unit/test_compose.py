"""docker-compose.yml: every `handoff` command it runs exists, and every service is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from handoff.cli import build_parser
from handoff.settings import DEFAULT_RELAY_METRICS_PORT, DEFAULT_WORKER_METRICS_PORT

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def image_command() -> list[str]:
    """Return the Dockerfile's CMD, which services without a `command` run."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            command: list[str] = json.loads(line[len("CMD ") :])
            return command
    raise AssertionError("the Dockerfile has no CMD in exec form")


def handoff_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, service in load_compose()["services"].items():
        command = service.get("command")
        if command is None and "build" in service:
            command = image_command()
        if command and command[0] == "handoff":
            commands.append((name, command))
    return commands


def test_compose_runs_handoff_commands() -> None:
    names = {name for name, _ in handoff_commands()}

    assert {"migrate", "api", "relay", "worker"} == names


@pytest.mark.parametrize(("service", "command"), handoff_commands())
def test_every_command_exists_in_cli(service: str, command: list[str]) -> None:
    parser = build_parser()

    try:
        args = parser.parse_args(command[1:])
    except SystemExit as error:
        raise AssertionError(f"{service}: `{' '.join(command)}` is not a valid command") from error
    assert callable(getattr(args, "handler", None)), f"{service}: no subcommand in {command}"


def test_every_service_is_healthy_or_completes() -> None:
    services = load_compose()["services"]
    completed = {
        dependency
        for service in services.values()
        for dependency, rule in (service.get("depends_on") or {}).items()
        if rule.get("condition") == "service_completed_successfully"
    }

    unchecked = [
        name for name in services if "healthcheck" not in services[name] and name not in completed
    ]

    assert [] == unchecked


def test_dependencies_wait_for_health_or_completion() -> None:
    services = load_compose()["services"]

    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule.get("condition") in ("service_healthy", "service_completed_successfully")
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


@pytest.mark.parametrize(
    ("service", "port"),
    [("relay", DEFAULT_RELAY_METRICS_PORT), ("worker", DEFAULT_WORKER_METRICS_PORT)],
)
def test_metrics_health_checks_use_default_ports(service: str, port: int) -> None:
    test = " ".join(load_compose()["services"][service]["healthcheck"]["test"])

    assert [str(port)] == re.findall(r"127\.0\.0\.1:(\d+)/metrics", test)
