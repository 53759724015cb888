"""Producer processes: commit the action alone, with a handoff, or with a message sent after commit.

Each producer runs in a process of its own (spawned, so it shares no connection with the
parent) and reports the wall-clock time of every commit, keyed by the `deliveryId`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import dramatiq
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from bench.seed import Seeded, bench_actions
from handoff.broker import enqueue_batch, make_broker
from handoff.db import make_engine
from handoff.settings import Settings
from outbox import enqueue_handoff
from outbox.events import Actor, Theme, Workspace, build_handoff_body, parse_range
from schema.tables import members, themes, workspaces

REFERENCE_QUEUE = "bench_reference"
REFERENCE_ACTOR = "bench_post"


class Kind(Enum):
    """Kind of work one producer transaction does."""

    ACTION = "action"  # the action alone
    HANDOFF = "handoff"  # the action and `enqueue_handoff`, one transaction
    REFERENCE = "reference"  # the action, then a Dramatiq message after the commit


@dataclass(frozen=True)
class ProducerJob:
    """The work of one producer process.

    Either `count` transactions, or as many as fit in `duration_s`. With `rate_per_s`,
    transaction k starts at `start_at + offset_s + k / rate_per_s` (or at once when late);
    without it, each starts as soon as the previous one committed.
    """

    kind: Kind
    database_url: str
    broker_url: str
    seeded: Seeded
    start_at: float  # wall-clock time.time() at which to begin
    count: int | None = None
    duration_s: float | None = None
    rate_per_s: float | None = None
    offset_s: float = 0.0


@dataclass
class ProducerResult:
    """Commits of one producer: how many, when, and the commit time of each delivery id."""

    commits: int = 0
    first_commit_at: float = 0.0
    last_commit_at: float = 0.0
    started_at: float = 0.0
    commit_times: dict[str, float] = field(default_factory=dict)


# Per-process caches: a spawned producer process keeps its engine and broker across jobs.
_engines: dict[str, Engine] = {}
_brokers: dict[str, dramatiq.Broker] = {}
_bodies: dict[str, tuple[Workspace, Actor, Theme]] = {}


def _engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url, pool_size=1, max_overflow=0)
    return _engines[url]


def _broker(url: str) -> dramatiq.Broker:
    if url not in _brokers:
        broker = make_broker(url)
        broker.declare_queue(REFERENCE_QUEUE)
        _brokers[url] = broker
    return _brokers[url]


def _action_payload(action_id: str) -> dict[str, Any]:
    return {
        "id": action_id,
        "kind": "insight_exported",
        "themeId": "permissions",
        "at": datetime.now(UTC).isoformat(),
        "note": "Exported from Friction Insights to the team's tracker.",
    }


def _body_parts(engine: Engine, seeded: Seeded) -> tuple[Workspace, Actor, Theme]:
    """Load what a reference body is built from, once per process."""
    key = str(engine.url)
    if key not in _bodies:
        with engine.connect() as connection:
            workspace = connection.execute(
                select(workspaces).where(workspaces.c.id == seeded.workspace_id)
            ).one()
            member = connection.execute(
                select(members).where(members.c.id == seeded.member_id)
            ).one()
            theme = connection.execute(
                select(themes).where(
                    themes.c.workspace_id == seeded.workspace_id, themes.c.id == seeded.theme_id
                )
            ).one()
        _bodies[key] = (
            Workspace(company_id=workspace.id, company_name=workspace.name, plan_tier="GROWTH"),
            Actor(user_id=member.id, name=member.name, role=member.role),
            Theme(
                id=theme.id,
                assistant_id=theme.assistant_id,
                label=theme.label,
                conversation_count=theme.conversation_count,
                impact_tier=theme.impact_tier,
                confidence=theme.confidence,
                recommendation_title=theme.recommendation_title,
                recommendation_next_step=theme.recommendation_next_step,
                evidence=list(theme.evidence),
            ),
        )
    return _bodies[key]


def _build_body(engine: Engine, seeded: Seeded, delivery_id: str, app_base_url: str) -> bytes:
    """Build a handoff body as `enqueue_handoff` does, from rows loaded once per process."""
    workspace, actor, theme = _body_parts(engine, seeded)
    now = datetime.now(UTC)
    return build_handoff_body(
        delivery_id=delivery_id,
        created_at=now,
        workspace=workspace,
        actor=actor,
        theme=theme,
        date_range=parse_range({"preset": "30d"}, now),
        sources=[],
        app_base_url=app_base_url,
    )


def _commit_one(job: ProducerJob, engine: Engine, settings: Settings) -> tuple[str, float]:
    """Run one transaction of `job.kind`.

    Returns:
        The delivery id (the action id if none) and the wall-clock time of the commit.
    """
    action_id = str(uuid.uuid4())
    delivery_id = action_id
    with Session(engine) as session, session.begin():
        session.execute(
            insert(bench_actions).values(id=action_id, payload=_action_payload(action_id))
        )
        if job.kind is Kind.HANDOFF:
            delivery_id = enqueue_handoff(
                session,
                workspace_id=job.seeded.workspace_id,
                actor_id=job.seeded.member_id,
                theme_id=job.seeded.theme_id,
                assistant_id=job.seeded.assistant_id,
                range={"preset": "30d"},
                settings=settings,
            )
    committed_at = time.time()
    if job.kind is Kind.REFERENCE:
        # Sent after the commit, as a service without an outbox would: a crash between the
        # commit and this call loses the event, which is what the outbox exists to prevent.
        body = _build_body(engine, job.seeded, delivery_id, settings.app_base_url)
        # enqueue_batch sends the message and the consumer's wake-up in one round trip, so
        # the reference's idle workers wake as the pipeline's do.
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=REFERENCE_QUEUE,
            actor_name=REFERENCE_ACTOR,
            args=(delivery_id, body.decode()),
            kwargs={},
            options={},
        )
        enqueue_batch(_broker(job.broker_url), [message])
    return delivery_id, committed_at


def run_producer(job: ProducerJob) -> ProducerResult:
    """Run `job` in this process and return its commits; the entry point of each producer."""
    engine = _engine(job.database_url)
    settings = Settings(database_url=job.database_url, broker_url=job.broker_url, secret_key=None)
    if job.kind is Kind.REFERENCE:
        _broker(job.broker_url)
        _body_parts(engine, job.seeded)
    # Open the pooled connection before the clock starts.
    with engine.connect():
        pass

    result = ProducerResult()
    delay = job.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    result.started_at = time.time()
    deadline = result.started_at + job.duration_s if job.duration_s is not None else None

    index = 0
    while job.count is None or index < job.count:
        if job.rate_per_s is not None:
            due = job.start_at + job.offset_s + index / job.rate_per_s
            wait_s = due - time.time()
            if wait_s > 0:
                time.sleep(wait_s)
        if deadline is not None and time.time() >= deadline:
            break
        delivery_id, committed_at = _commit_one(job, engine, settings)
        if result.commits == 0:
            result.first_commit_at = committed_at
        result.last_commit_at = committed_at
        result.commits += 1
        if job.kind is not Kind.ACTION:
            result.commit_times[delivery_id] = committed_at
        index += 1
    return result


def sample_body(engine: Engine, seeded: Seeded) -> bytes:
    """Return a handoff body like those the producers commit, for the bare client's requests."""
    return _build_body(engine, seeded, str(uuid.uuid4()), Settings(None, None, None).app_base_url)
