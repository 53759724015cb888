"""The operations endpoint: queue and backlog figures of every workspace, for operator tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Caller, CurrentEngine, CurrentSettings, Operator, authenticate
from api.errors import Forbidden
from api.schemas import Timestamp, error_responses
from outbox.ops import queue_figures

router = APIRouter(tags=["operations"])


class _Figures(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class OutboxFigures(_Figures):
    """The relay's backlog: committed outbox rows that are due and not yet published."""

    pending: int
    oldest_pending_age_seconds: float | None = Field(alias="oldestPendingAgeSeconds")


class DeliveryCounts(_Figures):
    """How many deliveries are in each status."""

    pending: int
    queued: int
    sending: int
    retrying: int
    delivered: int
    failed: int
    cancelled: int


class RetryFigures(_Figures):
    """Deliveries waiting to retry: how many are due now, and when the next one comes due."""

    due_now: int = Field(alias="dueNow")
    next_due_at: Timestamp | None = Field(alias="nextDueAt")


class BrokerFigures(_Figures):
    """Messages of the delivery queue waiting on the broker; null counts when unreadable."""

    queue: str
    messages: int | None
    delayed: int | None
    dead_lettered: int | None = Field(alias="deadLettered")
    error: str | None = Field(
        default=None, description="present only when the broker could not be read"
    )


class LastHourFigures(_Figures):
    """Outcomes of the last hour; latency runs from createdAt to deliveredAt."""

    delivered: int
    failed: int
    latency_p50_ms: float | None = Field(alias="latencyP50Ms")
    latency_p95_ms: float | None = Field(alias="latencyP95Ms")


class QueueFigures(_Figures):
    """The operations figures of every workspace."""

    outbox: OutboxFigures
    deliveries: DeliveryCounts
    retries: RetryFigures
    broker: BrokerFigures
    last_hour: LastHourFigures = Field(alias="lastHour")


def require_operator(caller: Annotated[Caller, Depends(authenticate)]) -> Operator:
    """Return the calling operator; a member token is refused.

    Raises:
        Forbidden: the token is a member token.
    """
    if not isinstance(caller, Operator):
        raise Forbidden(
            "not permitted: the operations figures of every workspace need an operator token "
            "(create one with `handoff tokens create --operator`)"
        )
    return caller


@router.get(
    "/api/v1/ops/queues",
    responses={200: {"model": QueueFigures}, **error_responses(401, 403)},
    summary="Backlog, retry and broker figures of every workspace (operator token)",
)
def ops_queues(
    operator: Annotated[Operator, Depends(require_operator)],
    engine: CurrentEngine,
    settings: CurrentSettings,
) -> dict[str, Any]:
    # The dict goes out as it is: the broker's `error` key is present only on failure.
    return queue_figures(engine, settings.broker_url)
