"""SQLAlchemy Core tables of the service; the Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

ROLES = ("owner", "admin", "member")
PROVIDERS = ("zapier", "generic")
DELIVERY_STATUSES = ("pending", "queued", "sending", "retrying", "delivered", "failed", "cancelled")
TRIGGERS = ("scheduled", "manual", "recovered")
ATTEMPT_OUTCOMES = ("delivered", "will_retry", "failed", "interrupted")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("plan_tier", Text, nullable=False),
    _created_at(),
    CheckConstraint(
        _in("plan_tier", ("FREE", "STARTER", "GROWTH", "ENTERPRISE")), name="plan_tier_known"
    ),
)

members = Table(
    "members",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("permissions", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("assistant_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # SHA-256 of the bearer token; the token itself is shown once and never stored.
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    _created_at(),
    CheckConstraint(_in("role", ROLES), name="role_known"),
)

operator_tokens = Table(
    "operator_tokens",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    _created_at(),
)

integrations = Table(
    "integrations",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("provider", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    # Fernet tokens; see handoff.secret_box for the key.
    Column("secret_encrypted", LargeBinary),
    Column("previous_secret_encrypted", LargeBinary),
    Column("previous_secret_valid_until", DateTime(timezone=True)),
    Column("disabled_reason", Text),
    Column("disabled_at", DateTime(timezone=True)),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_in("provider", PROVIDERS), name="provider_known"),
)

themes = Table(
    "themes",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("id", Text, nullable=False),
    Column("assistant_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("conversation_count", Integer, nullable=False),
    Column("impact_tier", Text, nullable=False),
    Column("confidence", Text, nullable=False),
    Column("recommendation_title", Text, nullable=False),
    Column("recommendation_next_step", Text, nullable=False),
    # A JSON list of snippet strings, in the order the insights engine ranked them.
    Column("evidence", JSONB, nullable=False, server_default=text("'[]'")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("workspace_id", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("event", Text, nullable=False),
    Column("theme_id", Text),
    # The event serialized once at enqueue; every attempt sends exactly these bytes.
    Column("body", LargeBinary, nullable=False),
    Column("status", Text, nullable=False),
    # Provider and redacted URL of the latest attempt (of the integration at enqueue before that).
    Column("provider", Text, nullable=False),
    Column("url_redacted", Text, nullable=False),
    _created_at(),
    Column("queued_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("next_trigger", Text, nullable=False, server_default=text("'scheduled'")),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    # Attempts triggered by the schedule or by recovery; manual redeliveries are not counted.
    Column("automatic_attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_automatic_attempts", Integer, nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("failure_reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_in("status", DELIVERY_STATUSES), name="status_known"),
    CheckConstraint(_in("next_trigger", TRIGGERS), name="next_trigger_known"),
    Index("deliveries_history", "workspace_id", text("created_at DESC"), text("id DESC")),
    Index("deliveries_leased", "lease_until", postgresql_where=text("status = 'sending'")),
    Index("deliveries_queued", "queued_at", postgresql_where=text("status = 'queued'")),
    Index("deliveries_retrying", "next_attempt_at", postgresql_where=text("status = 'retrying'")),
    Index(
        "deliveries_open_by_workspace",
        "workspace_id",
        postgresql_where=text("status IN ('pending', 'queued', 'retrying')"),
    ),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        UUID(as_uuid=False),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("number", Integer, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer),
    Column("url_redacted", Text),
    Column("request_headers", JSONB),
    Column("body_size", Integer),
    Column("status_code", Integer),
    Column("response_headers", JSONB),
    Column("response_body_excerpt", Text),
    # NULL while the attempt is in flight.
    Column("outcome", Text),
    Column("error_class", Text),
    Column("error_message", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    CheckConstraint(_in("trigger", TRIGGERS), name="attempt_trigger_known"),
    Index("delivery_attempts_number", "delivery_id", "number", unique=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        UUID(as_uuid=False),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trigger", Text, nullable=False, server_default=text("'scheduled'")),
    # The relay publishes a row once it is committed and this time has come.
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    _created_at(),
    Column("published_at", DateTime(timezone=True)),
    CheckConstraint(_in("trigger", TRIGGERS), name="outbox_trigger_known"),
    Index(
        "outbox_unpublished", "available_at", "id", postgresql_where=text("published_at IS NULL")
    ),
    Index("outbox_delivery", "delivery_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("workspace_id", Text, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    Column("delivery_id", UUID(as_uuid=False), nullable=False),
    _created_at(),
    PrimaryKeyConstraint("workspace_id", "endpoint", "key"),
)

# The relay LISTENs on this channel; a statement trigger on `outbox` sends it at commit.
OUTBOX_CHANNEL = "handoff_outbox"
# Workers NOTIFY this channel with the delivery id once an attempt is recorded.
ATTEMPT_CHANNEL = "handoff_attempt"
