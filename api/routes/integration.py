"""Endpoints of the webhook integration: read, save, remove, rotate the secret, send a test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Response
from pydantic import ValidationError
from sqlalchemy import Engine, Row, delete, insert, select, update
from sqlalchemy.orm import Session

from api.auth import CurrentAdmin, CurrentEngine, CurrentSettings
from api.errors import (
    DestinationRejected,
    IntegrationMissing,
    ValidationFailed,
    validation_failed_from,
)
from api.rate_limit import check_test_send_rate
from api.schemas import (
    Integration,
    IntegrationUpdate,
    SecretRotated,
    WebhookTestResult,
    error_responses,
    parse_json_object,
    read_body,
    request_body,
)
from api.test_send import describe_attempt, pending_result, wait_for_attempt
from handoff.db import libpq_url
from handoff.redaction import mask_url, redact_url
from handoff.secret_box import SecretBox
from handoff.settings import Settings
from outbox.cancellation import cancel_open_deliveries
from outbox.enqueue import enqueue_test_event
from outbox.events import format_timestamp
from schema.tables import integrations, workspaces
from worker.egress import check_destination
from worker.errors import DestinationNotAllowed, DestinationUnresolvable
from worker.resolver import resolver_from_settings
from worker.signing import generate_secret

log = structlog.get_logger(__name__)

PATH = "/api/v1/integrations/webhook"
ZAPIER_HOOK_PREFIX = "https://hooks.zapier.com/hooks/catch/"
PREVIOUS_SECRET_GRACE = timedelta(hours=24)
DISABLED_BY_ADMIN = "switched off by an Admin or Owner in Account -> Integrations"
# Shorter secrets are masked entirely, because their last 4 characters would be half of them.
MIN_SECRET_LENGTH_TO_SHOW_TAIL = 9
TEST_WAIT_MARGIN_S = 5.0

INTEGRATION_SAVED_EVENT = "integration_saved"
INTEGRATION_REMOVED_EVENT = "integration_removed"
SECRET_ROTATED_EVENT = "signing_secret_rotated"  # noqa: S105 - an event name
TEST_SEND_FINISHED_EVENT = "webhook_test_finished"

router = APIRouter(tags=["integration"])


def mask_secret(secret: str) -> str:
    """Return the form in which a saved secret is shown: `whsec_…` and its last 4 characters."""
    if len(secret) < MIN_SECRET_LENGTH_TO_SHOW_TAIL:
        return "••••"
    return "whsec_…" + secret[-4:]


def integration_warnings(provider: str, url: str) -> list[str]:
    """Return the warnings about a saved configuration that is accepted but probably wrong."""
    warnings = []
    if provider == "zapier" and not url.startswith(ZAPIER_HOOK_PREFIX):
        warnings.append(
            f"the URL is not a Zapier Catch Hook URL (those start with {ZAPIER_HOOK_PREFIX}); "
            "check it, or choose the generic provider"
        )
    return warnings


def _lock_workspace(session: Session, workspace_id: str) -> None:
    # Serializes changes to one workspace's integration, the first save included, when no
    # integration row exists yet to lock. FOR NO KEY UPDATE leaves inserts of deliveries,
    # whose foreign key takes KEY SHARE on this row, free to proceed.
    session.execute(
        select(workspaces.c.id)
        .where(workspaces.c.id == workspace_id)
        .with_for_update(key_share=True)
    )


def _load(session: Session, workspace_id: str) -> Row[Any] | None:
    return session.execute(
        select(integrations).where(integrations.c.workspace_id == workspace_id)
    ).one_or_none()


def _as_json(row: Row[Any], box: SecretBox, revealed_secret: str | None = None) -> dict[str, Any]:
    secret = box.decrypt(row.secret_encrypted) if row.secret_encrypted is not None else None
    shown = revealed_secret
    if shown is None and secret is not None:
        shown = mask_secret(secret)
    return {
        "provider": row.provider,
        # The path of a hook URL is a credential, so only its masked form leaves the server.
        "url": mask_url(row.url),
        "enabled": row.enabled,
        "signingSecret": shown,
        "hasSecret": secret is not None,
        "disabledReason": row.disabled_reason,
        "disabledAt": format_timestamp(row.disabled_at) if row.disabled_at else None,
        "updatedAt": format_timestamp(row.updated_at),
        "warnings": integration_warnings(row.provider, row.url),
    }


def _secret_box(settings: Settings) -> SecretBox:
    return SecretBox.from_settings(settings)


def _unmasked_url(url: str, workspace_id: str, engine: Engine) -> str:
    """Return the saved URL when `url` is its masked form as GET returned it, else `url`.

    So a client that sends back what it read (the admin UI's toggle, for one) keeps the
    saved URL instead of saving the mask.
    """
    with Session(engine) as session:
        saved = session.execute(
            select(integrations.c.url).where(integrations.c.workspace_id == workspace_id)
        ).scalar_one_or_none()
    if saved is not None and url == mask_url(saved):
        return str(saved)
    return url


def _check_url(url: str, settings: Settings) -> None:
    """Run the egress check the worker runs before every attempt, without connecting."""
    try:
        check_destination(
            url,
            allow_private=settings.allow_private_targets,
            resolver=resolver_from_settings(settings),
        )
    except DestinationNotAllowed as error:
        raise DestinationRejected("destination_not_allowed", str(error)) from None
    except DestinationUnresolvable as error:
        raise DestinationRejected("destination_unresolvable", str(error)) from None


@router.get(
    PATH,
    response_model=Integration,
    responses=error_responses(401, 403, 404),
    summary="Read the webhook integration; the signing secret is masked",
)
def read_integration(
    member: CurrentAdmin, engine: CurrentEngine, settings: CurrentSettings
) -> dict[str, Any]:
    with Session(engine) as session:
        row = _load(session, member.workspace_id)
    if row is None:
        raise IntegrationMissing()
    return _as_json(row, _secret_box(settings))


@router.put(
    PATH,
    response_model=Integration,
    responses=error_responses(401, 403, 422),
    openapi_extra=request_body(IntegrationUpdate),
    summary="Save the webhook integration",
)
def save_integration(
    member: CurrentAdmin,
    engine: CurrentEngine,
    settings: CurrentSettings,
    body: Annotated[bytes, Depends(read_body)],
) -> dict[str, Any]:
    try:
        request = IntegrationUpdate.model_validate(parse_json_object(body))
    except ValidationError as error:
        raise validation_failed_from(error) from None
    given = request.model_fields_set
    if request.generateSecret and "signingSecret" in given:
        raise ValidationFailed(
            "generateSecret", "cannot be combined with signingSecret; send one of them"
        )
    url = request.url.strip()
    if not url:
        raise ValidationFailed("url", "must not be empty")
    url = _unmasked_url(url, member.workspace_id, engine)
    _check_url(url, settings)

    box = _secret_box(settings)
    generated = generate_secret() if request.generateSecret else None
    new_secret: str | None = generated
    if "signingSecret" in given:
        # A pasted secret often carries a newline or spaces; an empty one means no secret.
        new_secret = (request.signingSecret or "").strip() or None
    secret_changes = generated is not None or "signingSecret" in given

    now = datetime.now(UTC)
    cancelled = 0
    with Session(engine) as session, session.begin():
        _lock_workspace(session, member.workspace_id)
        existing = _load(session, member.workspace_id)
        enabled = request.enabled
        if enabled is None:
            enabled = True if existing is None else bool(existing.enabled)

        values: dict[str, Any] = {
            "provider": request.provider,
            "url": url,
            "enabled": enabled,
            "updated_at": now,
        }
        if secret_changes:
            # A secret set by hand replaces the old one at once; rotation is the way to
            # keep the old one signing for a while.
            values["secret_encrypted"] = box.encrypt(new_secret) if new_secret else None
            values["previous_secret_encrypted"] = None
            values["previous_secret_valid_until"] = None
        was_enabled = existing is not None and bool(existing.enabled)
        if not enabled and (existing is None or was_enabled):
            values["disabled_reason"] = DISABLED_BY_ADMIN
            values["disabled_at"] = now
        if enabled:
            values["disabled_reason"] = None
            values["disabled_at"] = None

        if existing is None:
            session.execute(
                insert(integrations).values(
                    workspace_id=member.workspace_id, created_at=now, **values
                )
            )
        else:
            session.execute(
                update(integrations)
                .where(integrations.c.workspace_id == member.workspace_id)
                .values(**values)
            )
        if was_enabled and not enabled:
            cancelled = cancel_open_deliveries(session, member.workspace_id, "integration disabled")
        row = _load(session, member.workspace_id)

    assert row is not None
    log.info(
        INTEGRATION_SAVED_EVENT,
        workspace_id=member.workspace_id,
        member_id=member.id,
        provider=request.provider,
        url=redact_url(url),
        enabled=enabled,
        has_secret=row.secret_encrypted is not None,
        secret_changed=secret_changes,
        cancelled_deliveries=cancelled,
    )
    return _as_json(row, box, revealed_secret=generated)


@router.delete(
    PATH,
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404),
    summary="Remove the webhook integration; its undelivered deliveries become cancelled",
)
def remove_integration(member: CurrentAdmin, engine: CurrentEngine) -> Response:
    with Session(engine) as session, session.begin():
        _lock_workspace(session, member.workspace_id)
        existing = _load(session, member.workspace_id)
        if existing is None:
            raise IntegrationMissing()
        cancelled = cancel_open_deliveries(session, member.workspace_id, "integration removed")
        session.execute(
            delete(integrations).where(integrations.c.workspace_id == member.workspace_id)
        )
    log.info(
        INTEGRATION_REMOVED_EVENT,
        workspace_id=member.workspace_id,
        member_id=member.id,
        cancelled_deliveries=cancelled,
    )
    return Response(status_code=204)


@router.post(
    f"{PATH}/secret/rotate",
    response_model=SecretRotated,
    responses=error_responses(401, 403, 404),
    summary="Generate a new signing secret; the previous one keeps signing for 24 hours",
)
def rotate_secret(
    member: CurrentAdmin, engine: CurrentEngine, settings: CurrentSettings
) -> dict[str, Any]:
    box = _secret_box(settings)
    secret = generate_secret()
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        _lock_workspace(session, member.workspace_id)
        existing = _load(session, member.workspace_id)
        if existing is None:
            raise IntegrationMissing()
        # Only two secrets sign at a time, so a secret still in its grace period from an
        # earlier rotation stops signing now.
        previous = existing.secret_encrypted
        valid_until = now + PREVIOUS_SECRET_GRACE if previous is not None else None
        session.execute(
            update(integrations)
            .where(integrations.c.workspace_id == member.workspace_id)
            .values(
                secret_encrypted=box.encrypt(secret),
                previous_secret_encrypted=previous,
                previous_secret_valid_until=valid_until,
                updated_at=now,
            )
        )
    log.info(
        SECRET_ROTATED_EVENT,
        workspace_id=member.workspace_id,
        member_id=member.id,
        previous_kept=previous is not None,
    )
    return {
        "signingSecret": secret,
        "previousValidUntil": format_timestamp(valid_until) if valid_until else None,
    }


@router.post(
    f"{PATH}/test",
    response_model=WebhookTestResult,
    responses=error_responses(401, 403, 409, 429),
    summary="Send solhelps.webhook.test and wait for its single attempt",
)
def send_test_webhook(
    member: CurrentAdmin, engine: CurrentEngine, settings: CurrentSettings
) -> dict[str, Any]:
    # A sync route: FastAPI runs it in its thread pool, so the wait below blocks one
    # thread and never the event loop.
    # NOTE: every route shares that pool (AnyIO's default is 40 threads), and each waiting
    # test holds a thread for up to the delivery timeout plus 5 s. The per-workspace rate
    # limit does not bound waits across many workspaces.
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        delivery_id = enqueue_test_event(
            session, workspace_id=member.workspace_id, actor_id=member.id, settings=settings
        )
        check_test_send_rate(session, member.workspace_id, now)

    wait_s = settings.delivery_timeout_s + TEST_WAIT_MARGIN_S
    database_url = libpq_url(engine.url.render_as_string(hide_password=False))
    attempt = wait_for_attempt(database_url, delivery_id, wait_s)
    if attempt is None:
        result = pending_result(delivery_id, wait_s)
    else:
        result = describe_attempt(delivery_id, attempt)
    log.info(
        TEST_SEND_FINISHED_EVENT,
        workspace_id=member.workspace_id,
        delivery_id=delivery_id,
        outcome=result.outcome,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
    )
    return result.as_json()
