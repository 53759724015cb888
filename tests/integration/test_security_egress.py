"""The egress guard end to end: at save, on Send test and before every attempt.

Names resolve only through stub resolvers or hosts files, so no DNS query is sent. A test
that expects a block also checks that nothing connected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from api.app import create_app
from api.routes import integration as integration_routes
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from schema.tables import deliveries, delivery_attempts, integrations
from tests.integration.harness import Pipeline
from tests.receivers import Receiver
from tests.seed import Seeded, enqueue_handoffs, seed_workspace
from worker.delivery import DeliveryWorker
from worker.egress import check_destination
from worker.errors import CREDENTIALS_MESSAGE, NOT_ALLOWED_MESSAGE, DestinationUnresolvable
from worker.resolver import HostsFileResolver
from worker.transport import make_http_client

PATH = "/api/v1/integrations/webhook"
PUBLIC_ADDRESS = "93.184.215.14"
REBIND_URL = "https://rebind.example/hooks/catch/1/abc"

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


class ChangingResolver:
    """Returns a public address on the first lookup and 127.0.0.1 on every later one."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return [PUBLIC_ADDRESS] if len(self.lookups) == 1 else ["127.0.0.1"]


class FailingLaterResolver:
    """Returns a public address on the first lookup and fails every later one."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if len(self.lookups) == 1:
            return [PUBLIC_ADDRESS]
        raise DestinationUnresolvable(host)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Record every TCP connection Python opens; fail any name lookup and any non-loopback."""
    made: list[Any] = []

    def no_name_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise AssertionError(f"DNS query attempted for {text!r}") from None
        return _real_getaddrinfo(host, *args, **kwargs)

    def recorded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            made.append(address)
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise AssertionError(f"connection attempted to {address!r}")
        return _real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", no_name_lookup)
    monkeypatch.setattr(socket.socket, "connect", recorded_connect)
    yield made


@pytest.fixture
def strict_settings(settings: Settings, tmp_path: Path) -> Settings:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    return dataclasses.replace(
        settings,
        allow_private_targets=False,
        resolver_hosts_path=hosts,
        retry_schedule_s=(60.0,),
    )


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_workspace(engine)


def deliver_once(
    engine: Engine, settings: Settings, resolver: Any, seeded: Seeded
) -> tuple[str, dict[str, Any]]:
    """Enqueue a handoff, mark it published as the relay would, and run one attempt."""
    [delivery_id] = enqueue_handoffs(engine, seeded, settings, actor_id=seeded.owner_id)
    with engine.begin() as connection:
        connection.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="queued")
        )
    with make_http_client(resolver=resolver, allow_private=False) as client:
        worker = DeliveryWorker(engine, settings, client, SecretBox.from_settings(settings))
        worker.deliver(delivery_id)
    with engine.connect() as connection:
        attempt = connection.execute(
            select(delivery_attempts).where(delivery_attempts.c.delivery_id == delivery_id)
        ).one()
    return delivery_id, dict(attempt._mapping)


def status_of(engine: Engine, delivery_id: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                select(deliveries.c.status).where(deliveries.c.id == delivery_id)
            ).scalar_one()
        )


def test_rebinding_blocked_at_attempt(
    engine: Engine,
    strict_settings: Settings,
    seeded: Seeded,
    connections: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = ChangingResolver()
    monkeypatch.setattr(integration_routes, "resolver_from_settings", lambda settings: resolver)
    with TestClient(create_app(strict_settings, engine)) as client:
        saved = client.put(
            PATH,
            headers=bearer(seeded.owner_token),
            json={"provider": "generic", "url": REBIND_URL},
        )
    assert 200 == saved.status_code

    delivery_id, attempt = deliver_once(engine, strict_settings, resolver, seeded)

    assert ["rebind.example", "rebind.example"] == resolver.lookups
    assert [] == connections
    assert "blocked" == attempt["error_class"]
    assert "failed" == attempt["outcome"]
    assert NOT_ALLOWED_MESSAGE == attempt["error_message"]
    assert attempt["status_code"] is None
    assert "failed" == status_of(engine, delivery_id)


def test_dns_failure_at_attempt_is_retried(
    engine: Engine, strict_settings: Settings, seeded: Seeded, connections: list[Any]
) -> None:
    resolver = FailingLaterResolver()
    with engine.begin() as connection:
        connection.execute(
            integrations.insert().values(
                workspace_id=seeded.workspace_id, provider="generic", url=REBIND_URL
            )
        )
    check_destination(REBIND_URL, allow_private=False, resolver=resolver)  # as at save

    delivery_id, attempt = deliver_once(engine, strict_settings, resolver, seeded)

    assert [] == connections
    assert "dns_error" == attempt["error_class"]
    assert "will_retry" == attempt["outcome"]
    assert (
        "destination unresolvable: host rebind.example did not resolve"
        == (attempt["error_message"])
    )
    assert "retrying" == status_of(engine, delivery_id)


def test_send_test_reports_blocked_without_connecting(
    engine: Engine,
    strict_settings: Settings,
    redis_broker_url: str,
    seeded: Seeded,
    tmp_path: Path,
) -> None:
    # The name resolves to a listener on loopback, which must never see a connection.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        hosts = tmp_path / "hosts-internal"
        hosts.write_text("127.0.0.1 internal.example\n")
        app_settings = dataclasses.replace(strict_settings, resolver_hosts_path=hosts)
        with engine.begin() as connection:
            # Saved before the name pointed inside, as a PUT would now refuse it.
            connection.execute(
                integrations.insert().values(
                    workspace_id=seeded.workspace_id,
                    provider="generic",
                    url=f"https://internal.example:{port}/hooks/x",
                )
            )
        pipeline = Pipeline(app_settings, engine, redis_broker_url).start()
        try:
            with TestClient(create_app(app_settings, engine)) as client:
                response = client.post(f"{PATH}/test", headers=bearer(seeded.owner_token))
        finally:
            pipeline.close()
        with pytest.raises(BlockingIOError):
            listener.accept()

    assert 200 == response.status_code
    body = response.json()
    assert "blocked" == body["outcome"]
    assert NOT_ALLOWED_MESSAGE == body["message"]
    assert "127.0.0.1" not in response.text
    assert body["statusCode"] is None


# IP literals only, so no resolver is asked; each is refused however it is spelled.
NON_PUBLIC_URLS = [
    "https://127.0.0.1/x",
    "https://127.1/x",
    "https://2130706433/x",
    "https://0x7f000001/x",
    "https://0/x",
    "https://169.254.169.254/latest/meta-data/",
    "https://2852039166/latest/meta-data/",
    "https://0xa9fea9fe/x",
    "https://10.1.2.3/x",
    "https://100.64.0.1/x",
    "https://224.0.0.1/x",
    "https://240.0.0.1/x",
    "https://[::1]/x",
    "https://[::]/x",
    "https://[::ffff:169.254.169.254]/x",
    "https://[::ffff:7f00:1]/x",
    "https://[::127.0.0.1]/x",
    "https://[64:ff9b::a9fe:a9fe]/x",
    "https://[2002:a9fe:a9fe::1]/x",
    "https://[fd00::1]/x",
    "https://[fe80::1]/x",
    "https://0177.0.0.1/x",
    "http://93.184.215.14/x",
    "ftp://93.184.215.14/x",
]


def test_save_refuses_non_public_spellings(
    engine: Engine, strict_settings: Settings, seeded: Seeded, connections: list[Any]
) -> None:
    with TestClient(create_app(strict_settings, engine)) as client:
        for url in NON_PUBLIC_URLS:
            response = client.put(
                PATH, headers=bearer(seeded.owner_token), json={"provider": "generic", "url": url}
            )

            assert 422 == response.status_code, url
            error = response.json()["error"]
            assert "destination_not_allowed" == error["code"], url
            assert error["message"].startswith("destination not allowed"), url
            host = url.split("//", 1)[1].split("/", 1)[0].strip("[]")
            assert host not in error["message"], url

    assert [] == connections
    assert 24 == len(NON_PUBLIC_URLS)


def test_save_refuses_name_with_any_private_address(
    engine: Engine, strict_settings: Settings, seeded: Seeded, connections: list[Any]
) -> None:
    hosts = Path(str(strict_settings.resolver_hosts_path))
    hosts.write_text(f"{PUBLIC_ADDRESS} mixed.example\n10.0.0.7 mixed.example\n")
    with TestClient(create_app(strict_settings, engine)) as client:
        response = client.put(
            PATH,
            headers=bearer(seeded.owner_token),
            json={"provider": "generic", "url": "https://mixed.example/x"},
        )

    assert 422 == response.status_code
    assert "destination_not_allowed" == response.json()["error"]["code"]
    assert NOT_ALLOWED_MESSAGE == response.json()["error"]["message"]
    assert "10.0.0.7" not in response.text


def test_save_refuses_credentials_with_hint(
    engine: Engine, strict_settings: Settings, seeded: Seeded, connections: list[Any]
) -> None:
    with TestClient(create_app(strict_settings, engine)) as client:
        response = client.put(
            PATH,
            headers=bearer(seeded.owner_token),
            json={"provider": "generic", "url": f"https://alice:hunter2@{PUBLIC_ADDRESS}/x"},
        )

    assert 422 == response.status_code
    assert "destination_not_allowed" == response.json()["error"]["code"]
    assert CREDENTIALS_MESSAGE == response.json()["error"]["message"]
    assert "signing secret" in CREDENTIALS_MESSAGE
    assert "hunter2" not in response.text


def test_checked_name_kept_for_host_header(
    engine: Engine,
    settings: Settings,
    seeded: Seeded,
    receiver: Receiver,
    tmp_path: Path,
    connections: list[Any],
) -> None:
    hosts = tmp_path / "hosts-receiver"
    hosts.write_text("127.0.0.1 receiver.example\n")
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    with engine.begin() as connection:
        connection.execute(
            integrations.insert().values(
                workspace_id=seeded.workspace_id,
                provider="generic",
                url=f"http://receiver.example:{port}/hook",
            )
        )
    [delivery_id] = enqueue_handoffs(engine, seeded, settings, actor_id=seeded.owner_id)
    with engine.begin() as connection:
        connection.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status="queued")
        )
    with make_http_client(resolver=HostsFileResolver(hosts), allow_private=True) as client:
        DeliveryWorker(engine, settings, client, SecretBox.from_settings(settings)).deliver(
            delivery_id
        )

    request = receiver.wait_for(1)[0]
    assert f"receiver.example:{port}" == request.headers["host"]
    assert [("127.0.0.1", port)] == connections
