"""Dashboard -> Friction Insights: themes by assistant and range, and sending one as a handoff.

Sending calls the JSON API's handoff route function, so the page and the API run the same
checks in the same order and write the same outbox row.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Member
from api.errors import ApiError
from api.routes.handoff import send_handoff
from api.ui.pages import (
    ADMIN_FIX,
    INSIGHTS_PATH,
    WEBHOOK_PATH,
    Visit,
    log_rejected,
    open_visit,
    render,
)
from api.ui.session import CSRF_FIELD
from outbox.enqueue import can_export
from outbox.errors import HandoffError, NotPermitted, WebhookDisabled, WebhookNotConfigured
from outbox.events import MAX_EVIDENCE_SNIPPETS, PRESET_DAYS
from schema.tables import integrations, themes

RANGE_CHOICES = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days"}
CUSTOM_RANGE = "custom"
DEFAULT_PRESET = "30d"
SEND_LABELS = {"zapier": "Send to Zapier", "generic": "Send to webhook"}
DESTINATION_NAMES = {"zapier": "Zapier", "generic": "your webhook"}
_TIER_ORDER = {"High": 0, "Medium": 1, "Low": 2}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Scope:
    """The assistant and range the page is filtered by, as the query string gives them."""

    assistant: str
    preset: str
    start: str
    end: str

    def query(self, **extra: str) -> str:
        """Return the query string of this scope, with `extra` parameters added."""
        values = {"assistant": self.assistant, "preset": self.preset}
        if self.preset == CUSTOM_RANGE:
            values.update({"from": self.start, "to": self.end})
        values.update(extra)
        return urlencode({key: value for key, value in values.items() if value})

    def describe(self) -> str:
        """Return the range in words, as the send button's help text shows it."""
        if self.preset in RANGE_CHOICES:
            return RANGE_CHOICES[self.preset].lower()
        return f"from {self.start or '(no start date)'} to {self.end or '(no end date)'}"

    def handoff_range(self) -> dict[str, str]:
        """Return the handoff request's `range` for this scope."""
        if self.preset in PRESET_DAYS:
            return {"preset": self.preset}
        return {"from": self.start, "to": self.end}


def _load_themes(visit: Visit, workspace_id: str) -> list[Any]:
    with Session(visit.engine) as session:
        rows = session.execute(select(themes).where(themes.c.workspace_id == workspace_id)).all()
    return sorted(
        rows,
        key=lambda row: (_TIER_ORDER.get(row.impact_tier, 3), -row.conversation_count, row.label),
    )


def _integration_state(visit: Visit, workspace_id: str) -> Any:
    with Session(visit.engine) as session:
        return session.execute(
            select(integrations.c.provider, integrations.c.enabled).where(
                integrations.c.workspace_id == workspace_id
            )
        ).one_or_none()


def _blocked(member: Member, theme: Any, integration: Any) -> dict[str, Any] | None:
    """Return why `member` cannot send `theme`, in the order the API checks, or None."""
    permitted = can_export(
        member.role, list(member.permissions), list(member.assistant_ids), theme.assistant_id
    )
    if not permitted:
        message = NotPermitted().message
        return {"kind": "not_permitted", "message": message, "fix": None, "fix_link": None}
    if integration is None:
        kind, message, action = "not_configured", WebhookNotConfigured().message, "Configure"
    elif not integration.enabled:
        kind, message, action = "disabled", WebhookDisabled().message, "Enable"
    else:
        return None
    if member.is_admin:
        fix_link = (WEBHOOK_PATH, f"{action} it in Account → Integrations")
        return {"kind": kind, "message": message, "fix": None, "fix_link": fix_link}
    return {"kind": kind, "message": message, "fix": ADMIN_FIX, "fix_link": None}


def _scope(assistant: str | None, preset: str | None, start: str | None, end: str | None) -> Scope:
    chosen = preset if preset in RANGE_CHOICES or preset == CUSTOM_RANGE else DEFAULT_PRESET
    return Scope(
        assistant=(assistant or "").strip(),
        preset=chosen,
        start=(start or "").strip(),
        end=(end or "").strip(),
    )


def _page(
    visit: Visit,
    member: Member,
    scope: Scope,
    theme_id: str | None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    all_themes = _load_themes(visit, member.workspace_id)
    assistants = sorted({row.assistant_id for row in all_themes})
    shown = [
        row for row in all_themes if not scope.assistant or row.assistant_id == scope.assistant
    ]
    selected = next((row for row in all_themes if row.id == theme_id), None)
    integration = _integration_state(visit, member.workspace_id)
    blocked = _blocked(member, selected, integration) if selected is not None else None
    provider = integration.provider if integration is not None else None
    return render(
        visit,
        "insights.html",
        {
            "scope": scope,
            "assistants": assistants,
            "themes": shown,
            "selected": selected,
            "evidence": list(selected.evidence) if selected is not None else [],
            "max_evidence": MAX_EVIDENCE_SNIPPETS,
            "range_choices": RANGE_CHOICES,
            "custom_range": CUSTOM_RANGE,
            "blocked": blocked,
            "send_label": SEND_LABELS.get(provider or "", "Send to webhook"),
            "destination": DESTINATION_NAMES.get(provider or "", "your webhook"),
            # A key per rendered form makes a resubmitted form (a reload, a double click)
            # return the first delivery instead of sending the theme twice.
            "idempotency_key": secrets.token_urlsafe(24),
            **context,
        },
        status=status,
        title="Friction Insights",
    )


@router.get(INSIGHTS_PATH)
def insights_page(
    request: Request,
    assistant: Annotated[str | None, Query()] = None,
    preset: Annotated[str | None, Query()] = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    theme: Annotated[str | None, Query()] = None,
) -> Response:
    visit = open_visit(request)
    member = visit.require_member()
    return _page(visit, member, _scope(assistant, preset, start, end), theme)


@router.post(INSIGHTS_PATH + "/themes/{theme_id}/handoff")
def send_theme(
    request: Request,
    theme_id: Annotated[str, Path()],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    assistant: Annotated[str, Form()] = "",
    theme_assistant: Annotated[str, Form()] = "",
    preset: Annotated[str, Form()] = "",
    start: Annotated[str, Form(alias="from")] = "",
    end: Annotated[str, Form(alias="to")] = "",
    idempotency_key: Annotated[str, Form()] = "",
) -> Response:
    visit = open_visit(request)
    visit.check_csrf(csrf_token)
    member = visit.require_member()
    scope = _scope(assistant, preset, start, end)

    body = {"assistantId": theme_assistant, "range": scope.handoff_range()}
    try:
        accepted = send_handoff(
            theme_id,
            member,
            visit.engine,
            visit.settings,
            json.dumps(body).encode("utf-8"),
            idempotency_key or None,
        )
    except (ApiError, HandoffError) as error:
        log_rejected(visit, error)
        return _page(visit, member, scope, theme_id, status=error.status, error=error.message)
    return _page(visit, member, scope, theme_id, sent=accepted)
