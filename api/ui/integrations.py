"""Account -> Integrations -> Webhook Handoff: configure, test, toggle, rotate and remove.

Each form calls the JSON API's own route functions, so the page and the API share every
check and write. Those functions expect FastAPI to have checked the role already, so each
handler checks it first.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.auth import Member
from api.errors import ApiError
from api.routes.integration import (
    read_integration,
    remove_integration,
    rotate_secret,
    save_integration,
    send_test_webhook,
)
from api.ui.pages import (
    INTEGRATIONS_PATH,
    WEBHOOK_PATH,
    Visit,
    log_rejected,
    open_visit,
    render,
)
from api.ui.session import CSRF_FIELD
from outbox.errors import HandoffError

PAGE_NAME = "Account → Integrations"
PROVIDER_NAMES = {"zapier": "Zapier", "generic": "Generic webhook"}
ZAP_HISTORY_REMINDER = (
    "A Zapier Catch Hook answers 200 even when its Zap is turned off, so open the Zap's "
    "history in Zapier to check that this test ran."
)
REMOVE_NOT_CONFIRMED = (
    "confirmation missing: tick 'Yes, remove the configuration', then remove it again."
)
# The product guide's advice for each failed test outcome.
OUTCOME_ADVICE = {
    "endpoint_error": "The receiver rejected the payload; check the endpoint's logs.",
    "timeout": "The receiver took too long; retry, or make it respond before its work is done.",
    "connection_error": "Nothing accepted the connection; check the URL and that the "
    "receiver is running.",
    "dns_error": "The host name did not resolve; check the URL.",
    "tls_error": "Check the endpoint's TLS certificate.",
    "redirect": "Save the new URL, then send the test again.",
    "blocked": "Use an https URL on a public address.",
    "pending": "The attempt is still running; its outcome will appear in Delivery history.",
}

router = APIRouter(include_in_schema=False)

CsrfField = Annotated[str, Form(alias=CSRF_FIELD)]
FormText = Annotated[str, Form()]


def _current(visit: Visit, member: Member) -> dict[str, Any] | None:
    try:
        return read_integration(member, visit.engine, visit.settings)
    except ApiError as error:
        if error.code == "webhook_not_configured":
            return None
        raise


def _page(
    visit: Visit,
    member: Member,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    integration = _current(visit, member)
    values = form or {
        "provider": integration["provider"] if integration else "zapier",
        "url": integration["url"] if integration else "",
    }
    return render(
        visit,
        "webhook.html",
        {
            "integration": integration,
            "form": values,
            "provider_names": PROVIDER_NAMES,
            **context,
        },
        status=status,
        title="Webhook Handoff",
    )


def _open_admin_form(request: Request, csrf_token: str) -> tuple[Visit, Member]:
    """Open the visit of a posted form: the CSRF check first, then the role check."""
    visit = open_visit(request)
    visit.check_csrf(csrf_token)
    return visit, visit.require_admin(PAGE_NAME)


def _failed(
    visit: Visit, member: Member, error: ApiError | HandoffError, **context: Any
) -> Response:
    log_rejected(visit, error)
    return _page(visit, member, status=error.status, error=error.message, **context)


@router.get(INTEGRATIONS_PATH)
def integrations_page(request: Request) -> Response:
    visit = open_visit(request)
    member = visit.require_admin(PAGE_NAME)
    return render(
        visit,
        "integrations.html",
        {"integration": _current(visit, member), "provider_names": PROVIDER_NAMES},
        title="Integrations",
    )


@router.get(WEBHOOK_PATH)
def webhook_page(request: Request) -> Response:
    visit = open_visit(request)
    member = visit.require_admin(PAGE_NAME)
    return _page(visit, member)


@router.post(WEBHOOK_PATH)
def save_webhook(
    request: Request,
    csrf_token: CsrfField = "",
    provider: FormText = "",
    url: FormText = "",
    signing_secret: FormText = "",
    remove_secret: FormText = "",
    action: FormText = "save",
) -> Response:
    visit, member = _open_admin_form(request, csrf_token)

    body: dict[str, Any] = {"provider": provider, "url": url}
    if action == "generate":
        body["generateSecret"] = True
    elif remove_secret:
        body["signingSecret"] = None
    elif signing_secret.strip():
        body["signingSecret"] = signing_secret
    form = {"provider": provider, "url": url}
    try:
        saved = save_integration(
            member, visit.engine, visit.settings, json.dumps(body).encode("utf-8")
        )
    except (ApiError, HandoffError) as error:
        return _failed(visit, member, error, form=form)

    notice = "Configuration saved."
    if body.get("signingSecret", "") is None:
        notice = "Configuration saved without a signing secret."
    return _page(
        visit,
        member,
        notice=notice,
        new_secret=saved["signingSecret"] if action == "generate" else None,
        warnings=saved["warnings"],
    )


@router.post(f"{WEBHOOK_PATH}/test")
def send_webhook_test(request: Request, csrf_token: CsrfField = "") -> Response:
    visit, member = _open_admin_form(request, csrf_token)
    try:
        result = send_test_webhook(member, visit.engine, visit.settings)
    except (ApiError, HandoffError) as error:
        return _failed(visit, member, error)

    integration = _current(visit, member)
    zapier = integration is not None and integration["provider"] == "zapier"
    return _page(
        visit,
        member,
        test_result=result,
        test_reminder=ZAP_HISTORY_REMINDER if zapier and result["outcome"] == "delivered" else None,
        test_advice=OUTCOME_ADVICE.get(result["outcome"]),
    )


@router.post(f"{WEBHOOK_PATH}/enabled")
def toggle_webhook(
    request: Request, csrf_token: CsrfField = "", enabled: FormText = ""
) -> Response:
    visit, member = _open_admin_form(request, csrf_token)
    turn_on = enabled == "true"
    try:
        current = read_integration(member, visit.engine, visit.settings)
        body = {"provider": current["provider"], "url": current["url"], "enabled": turn_on}
        save_integration(member, visit.engine, visit.settings, json.dumps(body).encode("utf-8"))
    except (ApiError, HandoffError) as error:
        return _failed(visit, member, error)
    notice = (
        "Webhook handoff is enabled: members with insights.export can send handoffs."
        if turn_on
        else "Webhook handoff is disabled: handoffs not yet delivered were cancelled, and "
        "senders are told it is configured but disabled."
    )
    return _page(visit, member, notice=notice)


@router.post(f"{WEBHOOK_PATH}/rotate")
def rotate_webhook_secret(request: Request, csrf_token: CsrfField = "") -> Response:
    visit, member = _open_admin_form(request, csrf_token)
    try:
        rotated = rotate_secret(member, visit.engine, visit.settings)
    except (ApiError, HandoffError) as error:
        return _failed(visit, member, error)
    return _page(
        visit,
        member,
        notice="Signing secret rotated.",
        new_secret=rotated["signingSecret"],
        previous_valid_until=rotated["previousValidUntil"],
    )


@router.post(f"{WEBHOOK_PATH}/remove")
def remove_webhook(
    request: Request, csrf_token: CsrfField = "", confirm: FormText = ""
) -> Response:
    visit, member = _open_admin_form(request, csrf_token)
    if confirm != "yes":
        return _page(visit, member, status=422, error=REMOVE_NOT_CONFIRMED)
    try:
        remove_integration(member, visit.engine)
    except (ApiError, HandoffError) as error:
        return _failed(visit, member, error)
    return _page(
        visit,
        member,
        notice="Webhook handoff removed: handoffs not yet delivered were cancelled.",
    )
