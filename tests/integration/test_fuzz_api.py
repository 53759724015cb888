"""Schemathesis fuzzing of every operation in /openapi.json, against the app in-process.

The app runs with private targets refused and a hosts file with no entries, so every webhook
host name is unresolvable and no DNS query is sent. No worker runs, so a saved URL is never
contacted. A guard on the socket module fails the test if anything reaches beyond loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from sqlalchemy import Engine, insert

from api import routes
from api.app import create_app
from handoff.settings import Settings
from schema.tables import themes
from tests.seed import Seeded, enqueue_handoffs, seed_workspace

MIN_CASES = 1000
EXAMPLES_PER_OPERATION_AND_MODE = 120
LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost", "testserver"}

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _is_loopback(host: object) -> bool:
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any name lookup or connection that is not to loopback."""

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise AssertionError(f"name lookup attempted for {host!r}")
        return _real_getaddrinfo(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise AssertionError(f"connection attempted to {address!r}")
        return _real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture
def fuzz_settings(settings: Settings, tmp_path: Path) -> Settings:
    empty_hosts = tmp_path / "hosts"
    empty_hosts.write_text("# no entries: every webhook host is unresolvable\n")
    return dataclasses.replace(
        settings,
        allow_private_targets=False,
        resolver_hosts_path=empty_hosts,
        delivery_timeout_s=1.0,
    )


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    value = seed_workspace(engine, url="https://93.184.215.14/hooks/catch/1/fuzz")
    with engine.begin() as connection:
        connection.execute(
            insert(themes).values(
                workspace_id=value.workspace_id,
                id="onboarding",
                assistant_id=value.assistant_id,
                label="Onboarding",
                conversation_count=3,
                impact_tier="Low",
                confidence="Low",
                recommendation_title="Shorten the checklist",
                recommendation_next_step="Remove step 4.",
                evidence=["too long"],
            )
        )
    return value


def check_error_body(response: schemathesis.Response) -> None:
    """Assert no 5xx, and the API's error body on every 4xx."""
    assert response.status_code < 500, response.content[:500]
    if response.status_code < 400:
        return
    body = json.loads(response.content)
    assert {"error"} == set(body), body
    assert {"code", "message"} == set(body["error"]), body
    assert isinstance(body["error"]["code"], str), body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body


def fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> int:
    """Run the generated cases of one operation and mode; return how many ran.

    With `path_parameters`, the path takes those existing ids and the rest is generated, so
    the cases get past the 404 of an unknown id.
    """
    count = 0

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        # Shrinking re-runs requests against a database for minutes; the first failing case
        # is reported as generated instead.
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: schemathesis.Case) -> None:
        nonlocal count
        count += 1
        check_error_body(case.call(headers=headers))

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # An operation without parameters or body has nothing to make invalid.
        if mode is not GenerationMode.NEGATIVE:
            raise
    return count


def test_fuzz_every_operation(
    engine: Engine,
    fuzz_settings: Settings,
    seeded: Seeded,
    loopback_only: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With no worker running, a test send would wait the delivery timeout plus this margin.
    monkeypatch.setattr(routes.integration, "TEST_WAIT_MARGIN_S", 0.0)
    app = create_app(fuzz_settings, engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {seeded.owner_token}"}
    [delivery_id] = enqueue_handoffs(engine, seeded, fuzz_settings, actor_id=seeded.owner_id)

    known_ids = {"themeId": seeded.theme_id, "deliveryId": delivery_id}

    # Removing the integration first would leave every later case a 409, so it goes last.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda operation: operation.method.upper() == "DELETE",
    )
    cases: dict[str, int] = {}
    for operation in operations:
        names = [parameter.name for parameter in operation.path_parameters]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} {mode.value}"
            cases[label] = fuzz_operation(operation, mode, headers)
            if names:
                existing = {name: known_ids[name] for name in names}
                cases[f"{label} existing ids"] = fuzz_operation(operation, mode, headers, existing)

    assert sum(cases.values()) >= MIN_CASES, cases
