"""Liveness and readiness endpoints; readiness checks Postgres and the broker."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from fastapi import APIRouter
from sqlalchemy import Engine, text

from api.auth import CurrentEngine, CurrentSettings
from api.errors import error_response
from api.schemas import Health, Readiness, error_responses

log = structlog.get_logger(__name__)

READINESS_FAILED_EVENT = "readiness_check_failed"
CHECK_TIMEOUT_S = 2.0

router = APIRouter(tags=["health"])


def _check_postgres(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_broker(url: str) -> None:
    if url.startswith(("amqp://", "amqps://")):
        import pika

        parameters = pika.URLParameters(url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = CHECK_TIMEOUT_S
        parameters.blocked_connection_timeout = CHECK_TIMEOUT_S
        connection = pika.BlockingConnection(parameters)
        connection.close()
        return

    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


def _run_check(name: str, check: Callable[[], None]) -> str | None:
    """Run one check; return None when it passed, else the problem in a few words."""
    try:
        check()
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        # Only the class name is logged and returned, because driver messages can carry
        # the URL and its password.
        log.warning(READINESS_FAILED_EVENT, check=name, error_type=type(error).__name__)
        return f"{name} unavailable ({type(error).__name__})"
    return None


@router.get("/healthz", response_model=Health, summary="Liveness: the process responds")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="Readiness: Postgres and the broker respond",
)
def readyz(engine: CurrentEngine, settings: CurrentSettings) -> Any:
    problems = [_run_check("postgres", partial(_check_postgres, engine))]
    if settings.broker_url is None:
        problems.append("broker not configured (set BROKER_URL)")
    else:
        problems.append(_run_check("broker", partial(_check_broker, settings.broker_url)))
    found = [problem for problem in problems if problem is not None]
    if found:
        return error_response(503, "not_ready", "not ready: " + "; ".join(found))
    return {"status": "ok", "checks": {"postgres": "ok", "broker": "ok"}}
