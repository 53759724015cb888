"""No secret, token or webhook URL path in logs, stored rows or API responses, whatever fails."""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text, update

from api.app import create_app
from handoff.settings import Settings
from schema.tables import deliveries, delivery_attempts, integrations
from tests.integration.harness import Pipeline
from tests.receivers import Hang, Receiver, Reset, Respond
from tests.seed import Seeded, seed_workspace

PATH = "/api/v1/integrations/webhook"
HOOK_PATH = "/hooks/catch/8675309/s3cr3tpathkey/"
SECRET = "whsec_cmVkYWN0aW9uLXRlc3Qtc2lnbmluZy1zZWNyZXQ="
PASSWORD = "hunter2pass"
HOST = "receiver.example"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])


@dataclasses.dataclass
class Scenario:
    """The app, pipeline and receiver of one run, and every API response it collected."""

    client: TestClient
    pipeline: Pipeline
    receiver: Receiver
    seeded: Seeded
    engine: Engine
    responses: list[str] = dataclasses.field(default_factory=list)

    def call(self, method: str, url: str, token: str, **kwargs: Any) -> Any:
        response = self.client.request(method, url, headers=bearer(token), **kwargs)
        self.responses.append(f"{response.headers}\n{response.text}")
        return response

    def save(self, url: str) -> Any:
        return self.call(
            "PUT",
            PATH,
            self.seeded.owner_token,
            json={"provider": "zapier", "url": url, "signingSecret": f"  {SECRET}\n"},
        )

    def force_url(self, url: str) -> None:
        """Store a URL that a save would refuse, as if its host changed after the save."""
        with self.engine.begin() as connection:
            connection.execute(update(integrations).values(url=url))

    def test_send(self) -> dict[str, Any]:
        response = self.call("POST", f"{PATH}/test", self.seeded.owner_token)
        assert 200 == response.status_code, response.text
        body: dict[str, Any] = response.json()
        return body

    def handoff(self) -> str:
        response = self.call(
            "POST",
            f"/api/v1/insights/themes/{self.seeded.theme_id}/handoff",
            self.seeded.member_token,
            json={"assistantId": self.seeded.assistant_id, "range": {"preset": "7d"}},
        )
        assert 202 == response.status_code, response.text
        delivery_id = str(response.json()["deliveryId"])
        self.pipeline.wait_for_status(delivery_id, {"delivered", "failed"})
        return delivery_id


@pytest.fixture
def scenario(
    engine: Engine, settings: Settings, redis_broker_url: str, receiver: Receiver, tmp_path: Path
) -> Iterator[Scenario]:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 {HOST}\n")
    run_settings = dataclasses.replace(
        settings, resolver_hosts_path=hosts, retry_schedule_s=(), delivery_timeout_s=1.0
    )
    seeded = seed_workspace(engine)
    pipeline = Pipeline(run_settings, engine, redis_broker_url).start()
    try:
        with TestClient(create_app(run_settings, engine)) as client:
            yield Scenario(client, pipeline, receiver, seeded, engine)
    finally:
        pipeline.close()


def interrupt_one(scenario: Scenario) -> str:
    """Leave an attempt without outcome and its lease expired, as a killed worker does."""
    delivery_id = str(uuid.uuid4())
    started = datetime.now(UTC) - timedelta(minutes=1)
    with scenario.engine.begin() as connection:
        connection.execute(
            insert(deliveries).values(
                id=delivery_id,
                workspace_id=scenario.seeded.workspace_id,
                event="solhelps.insight.handoff",
                theme_id=scenario.seeded.theme_id,
                body=b"{}",
                status="sending",
                provider="zapier",
                url_redacted="http://receiver.example/…",
                attempt_count=1,
                automatic_attempts=1,
                max_automatic_attempts=1,
                lease_until=started,
            )
        )
        connection.execute(
            insert(delivery_attempts).values(
                delivery_id=delivery_id, number=1, trigger="scheduled", started_at=started
            )
        )
    scenario.pipeline.wait_for_status(delivery_id, {"failed"})
    return delivery_id


def stored_rows(engine: Engine) -> str:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT row_to_json(a)::text FROM delivery_attempts a "
                "UNION ALL SELECT row_to_json(d)::text FROM deliveries d "
                "UNION ALL SELECT row_to_json(o)::text FROM outbox o"
            )
        ).scalars()
        return "\n".join(rows)


def test_nothing_secret_leaks_through_any_error_class(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    # The levels `handoff.logging.configure_logging` sets: httpx's INFO lines carry full URLs.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")
    receiver = scenario.receiver
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    good_url = f"http://{HOST}:{port}{HOOK_PATH}"
    outcomes: dict[str, str] = {}

    with structlog.testing.capture_logs() as events:
        assert 200 == scenario.save(good_url).status_code
        scenario.call("GET", PATH, scenario.seeded.owner_token)

        receiver.script(Respond(200))
        outcomes["delivered"] = scenario.test_send()["outcome"]
        receiver.script(Respond(500, body=b"boom"))
        outcomes["endpoint_error"] = scenario.test_send()["outcome"]
        receiver.script(Respond(302, headers={"Location": "https://moved.example/new"}))
        outcomes["redirect"] = scenario.test_send()["outcome"]
        receiver.script(Hang(3.0))
        outcomes["timeout"] = scenario.test_send()["outcome"]
        receiver.script(Reset())
        outcomes["connection_error"] = scenario.test_send()["outcome"]

        receiver.script(Respond(200), Respond(503, headers={"Retry-After": "1"}))
        handoffs = [scenario.handoff(), scenario.handoff()]

        assert 200 == scenario.save(f"https://{HOST}:{port}{HOOK_PATH}").status_code
        outcomes["tls_error"] = scenario.test_send()["outcome"]
        assert 200 == scenario.save(f"http://127.0.0.1:{closed_port()}{HOOK_PATH}").status_code
        outcomes["refused"] = scenario.test_send()["outcome"]

        unresolvable = f"https://unknown.example{HOOK_PATH}"
        assert 422 == scenario.save(unresolvable).status_code
        scenario.force_url(unresolvable)
        outcomes["dns_error"] = scenario.test_send()["outcome"]

        with_credentials = f"http://alice:{PASSWORD}@{HOST}:{port}{HOOK_PATH}"
        assert 422 == scenario.save(with_credentials).status_code
        scenario.force_url(with_credentials)
        outcomes["blocked"] = scenario.test_send()["outcome"]

        interrupted = interrupt_one(scenario)

        history = scenario.call(
            "GET", "/api/v1/deliveries?limit=200", scenario.seeded.owner_token
        ).json()
        for item in history["items"]:
            scenario.call(
                "GET", f"/api/v1/deliveries/{item['deliveryId']}", scenario.seeded.owner_token
            )
        scenario.call("GET", PATH, scenario.seeded.owner_token)

    assert {
        "delivered": "delivered",
        "endpoint_error": "endpoint_error",
        "redirect": "redirect",
        "timeout": "timeout",
        "connection_error": "connection_error",
        "tls_error": "tls_error",
        "refused": "connection_error",
        "dns_error": "dns_error",
        "blocked": "blocked",
    } == outcomes
    assert ["delivered", "failed"] == [scenario.pipeline.status(d) for d in handoffs]
    assert "failed" == scenario.pipeline.status(interrupted)
    with scenario.engine.connect() as connection:
        classes = set(connection.execute(select(delivery_attempts.c.error_class)).scalars())
    assert {
        None,
        "http_error",
        "redirect",
        "timeout",
        "connection_error",
        "tls_error",
        "dns_error",
        "blocked",
        "interrupted",
    } == classes
    names = {event["event"] for event in events}
    assert {"integration_saved", "delivery_succeeded", "delivery_failed"} <= names
    assert 12 <= len(history["items"])

    logs = repr(events) + "\n" + caplog.text
    stored = stored_rows(scenario.engine)
    api = "\n".join(scenario.responses)
    needles = {
        "signing secret": SECRET,
        "secret key material": SECRET.removeprefix("whsec_").rstrip("="),
        "owner token": scenario.seeded.owner_token,
        "member token": scenario.seeded.member_token,
        "URL path": HOOK_PATH.strip("/"),
        "hook key": "s3cr3tpathkey",
        "URL password": PASSWORD,
    }
    for name, needle in needles.items():
        assert needle not in logs, f"{name} in the logs"
        assert needle not in stored, f"{name} in a stored delivery, attempt or outbox row"
        assert needle not in api, f"{name} in an API response"


def test_integration_row_stores_secret_encrypted(scenario: Scenario) -> None:
    scenario.save(f"http://{HOST}:9{HOOK_PATH}")
    with scenario.engine.connect() as connection:
        row = connection.execute(text("SELECT row_to_json(i)::text FROM integrations i")).scalar()
    assert row is not None
    assert SECRET not in row
    assert SECRET.removeprefix("whsec_").rstrip("=") not in row


def test_production_logging_silences_httpx() -> None:
    # httpx logs every request with its full URL at INFO.
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging; from handoff.logging import configure_logging; "
            "configure_logging('json'); print(logging.getLogger('httpx').getEffectiveLevel())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert str(logging.WARNING) == completed.stdout.strip()


def test_masked_url_round_trip_keeps_url(scenario: Scenario) -> None:
    url = f"http://{HOST}:9{HOOK_PATH}"
    saved = scenario.save(url)
    shown = scenario.call("GET", PATH, scenario.seeded.owner_token).json()

    resent = scenario.call(
        "PUT",
        PATH,
        scenario.seeded.owner_token,
        json={"provider": shown["provider"], "url": shown["url"], "enabled": False},
    )

    assert f"http://{HOST}:9/…key/" == shown["url"]
    assert shown["url"] == saved.json()["url"] == resent.json()["url"]
    assert resent.json()["enabled"] is False
    with scenario.engine.connect() as connection:
        stored = connection.execute(select(integrations.c.url)).scalar_one()
    assert url == stored
