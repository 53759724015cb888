"""Shared machinery of the web UI's pages: the visit (session and caller), rendering, refusals."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from api.auth import Caller, Member, Operator, find_caller
from api.errors import ApiError
from api.ui.session import (
    COOKIE_NAME,
    CSRF_FIELD,
    UiSession,
    csrf_matches,
    decode_session,
    encode_session,
    new_session,
    session_key,
)
from handoff.settings import Settings
from outbox.errors import HandoffError

log = structlog.get_logger(__name__)

UI_PAGE_BLOCKED_EVENT = "ui_page_blocked"
UI_ACTION_REJECTED_EVENT = "ui_action_rejected"

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
SIGN_IN_PATH = "/sign-in"
INTEGRATIONS_PATH = "/account/integrations"
WEBHOOK_PATH = "/account/integrations/webhook"
INSIGHTS_PATH = "/dashboard/insights"
HISTORY_PATH = "/deliveries"
OPS_PATH = "/ops"

ADMIN_FIX = "Ask an Admin or Owner of your workspace."
CSRF_REJECTED = (
    "The form was rejected because its security token is missing or out of date. "
    "Reload the page and submit the form again."
)
OPERATOR_PAGES_ONLY = (
    "not permitted: an operator token only opens the Operations page. "
    "Sign in with a member token of the workspace."
)

# Pages may show a signing secret once, so no copy is cached. The policy allows no script,
# style or frame from anywhere but this server.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

STATUS_LABELS = {
    "pending": ("◷", "Pending"),
    "queued": ("◷", "Queued"),
    "sending": ("➜", "Sending"),
    "retrying": ("↻", "Retrying"),
    "delivered": ("✓", "Delivered"),
    "failed": ("✕", "Failed"),
    "cancelled": ("⊘", "Cancelled"),
    "will_retry": ("↻", "Will retry"),
    "interrupted": ("⚠", "Interrupted"),
}


def format_moment(value: str | None) -> str:
    """Format an API timestamp (`2026-02-15T12:34:56.000Z`) as `2026-02-15 12:34:56 UTC`."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _status_icon(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", ("•", ""))[0]


def _status_text(status: str | None) -> str:
    if status is None:
        return "In flight"
    return STATUS_LABELS.get(status, ("", status.replace("_", " ").capitalize()))[1]


templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.filters["moment"] = format_moment
templates.env.filters["status_icon"] = _status_icon
templates.env.filters["status_text"] = _status_text


class SignInRequired(Exception):
    """Raised when a page needs a signed-in caller, so the handler redirects to sign-in."""

    def __init__(self, visit: Visit, next_path: str) -> None:
        super().__init__(next_path)
        self.visit = visit
        self.next_path = next_path


class PageBlocked(Exception):
    """Raised when the caller may not use a page, so the handler shows why and who can fix it.

    Attributes:
        visit: the visit that was refused, for the page's navigation and session.
        status: the HTTP status of the page.
        message: what blocked the user, in the product guide's words.
        fix: the sentence that names who can fix it.
        fix_link: an optional (path, label) the caller can follow to fix it.
        code: the error code logged with the refusal, as the API would name it.
    """

    def __init__(
        self,
        visit: Visit,
        status: int,
        message: str,
        fix: str | None = None,
        fix_link: tuple[str, str] | None = None,
        code: str = "not_permitted",
    ) -> None:
        super().__init__(message)
        self.visit = visit
        self.status = status
        self.message = message
        self.fix = fix
        self.fix_link = fix_link
        self.code = code


@dataclass
class Visit:
    """One request to a page: its session, the signed-in caller and the app's services."""

    request: Request
    session: UiSession
    caller: Caller | None
    settings: Settings
    engine: Engine
    # True when the response must store a new session cookie.
    session_changed: bool

    @property
    def member(self) -> Member | None:
        """The signed-in member, or None for an operator or an anonymous visit."""
        return self.caller if isinstance(self.caller, Member) else None

    def require_member(self) -> Member:
        """Return the signed-in member.

        Raises:
            SignInRequired: no one is signed in.
            PageBlocked: the caller signed in with an operator token.
        """
        if self.caller is None:
            raise SignInRequired(self, _local_path(self.request))
        if isinstance(self.caller, Operator):
            raise PageBlocked(self, 403, OPERATOR_PAGES_ONLY)
        return self.caller

    def require_admin(self, page_name: str) -> Member:
        """Return the signed-in member if it is an owner or admin.

        Raises:
            SignInRequired: no one is signed in.
            PageBlocked: an operator, or a member with the role `member`.
        """
        member = self.require_member()
        if not member.is_admin:
            raise PageBlocked(
                self,
                403,
                f"not permitted: only an Admin or Owner of the workspace can use {page_name}.",
                fix=ADMIN_FIX,
            )
        return member

    def require_caller(self) -> Caller:
        """Return the signed-in member or operator.

        Raises:
            SignInRequired: no one is signed in.
        """
        if self.caller is None:
            raise SignInRequired(self, _local_path(self.request))
        return self.caller

    def check_csrf(self, submitted: str | None) -> None:
        """Refuse a form whose CSRF field does not match this session's token.

        Raises:
            PageBlocked: 403, the field is missing or wrong.
        """
        if not csrf_matches(self.session, submitted):
            raise PageBlocked(self, 403, CSRF_REJECTED, code="csrf_rejected")

    def start_session(self, session: UiSession) -> None:
        """Replace the session (at sign-in and sign-out); the response stores the new cookie."""
        self.session = session
        self.session_changed = True


def _local_path(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def open_visit(request: Request) -> Visit:
    """Read the session cookie and look up the signed-in caller.

    A missing, altered or expired cookie starts an anonymous session. A cookie whose token
    no longer exists (the member or token was removed) is treated as signed out.
    """
    settings: Settings = request.app.state.settings
    engine: Engine = request.app.state.engine
    key = session_key(str(settings.require("secret_key").secret_key))

    cookie = request.cookies.get(COOKIE_NAME)
    session = decode_session(cookie, key) if cookie else None
    changed = False
    caller: Caller | None = None
    if session is not None and session.token_hash is not None:
        caller = find_caller(engine, session.token_hash)
        if caller is None:
            session = None
    if session is None:
        session = new_session()
        changed = True
    return Visit(
        request=request,
        session=session,
        caller=caller,
        settings=settings,
        engine=engine,
        session_changed=changed,
    )


def _finish(visit: Visit, response: Response) -> Response:
    for name, value in _PAGE_HEADERS.items():
        response.headers[name] = value
    if visit.session_changed:
        key = session_key(str(visit.settings.secret_key))
        response.set_cookie(
            COOKIE_NAME,
            encode_session(visit.session, key),
            max_age=max(0, visit.session.expires_at - int(time.time())),
            path="/",
            httponly=True,
            samesite="lax",
            # NOTE: behind a TLS-terminating proxy the request scheme is https only when
            # uvicorn trusts the proxy's X-Forwarded-Proto (by default from 127.0.0.1 only).
            secure=visit.request.url.scheme == "https",
        )
    return response


def _navigation(caller: Caller | None) -> list[tuple[str, str]]:
    if caller is None:
        return []
    if isinstance(caller, Operator):
        return [(OPS_PATH, "Operations")]
    items = [(INSIGHTS_PATH, "Friction Insights")]
    if caller.is_admin:
        items += [
            (HISTORY_PATH, "Delivery history"),
            (INTEGRATIONS_PATH, "Integrations"),
            (OPS_PATH, "Operations"),
        ]
    return items


def render(
    visit: Visit,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    title: str = "",
) -> Response:
    """Render a page template with the layout's context: caller, navigation and CSRF token."""
    path = visit.request.url.path
    values: dict[str, Any] = {
        "title": title,
        "viewer": visit.caller,
        "member": visit.member,
        "is_operator": isinstance(visit.caller, Operator),
        "navigation": _navigation(visit.caller),
        "current_path": path,
        "csrf_field": CSRF_FIELD,
        "csrf_token": visit.session.csrf_token,
        "paths": {
            "sign_in": SIGN_IN_PATH,
            "integrations": INTEGRATIONS_PATH,
            "webhook": WEBHOOK_PATH,
            "insights": INSIGHTS_PATH,
            "history": HISTORY_PATH,
            "ops": OPS_PATH,
        },
    }
    values.update(context or {})
    response = templates.TemplateResponse(visit.request, template, values, status_code=status)
    return _finish(visit, response)


def redirect(visit: Visit, location: str) -> Response:
    """Answer 303 See Other to `location`, storing the session cookie if it changed."""
    return _finish(visit, RedirectResponse(location, status_code=303))


def blocked_by_error(visit: Visit, error: ApiError | HandoffError) -> PageBlocked:
    """Turn an error of the service code into a refusal page with its status and message."""
    fix = ADMIN_FIX if error.code == "not_permitted" else None
    return PageBlocked(visit, error.status, error.message, fix=fix, code=error.code)


def _caller_fields(caller: Caller | None) -> dict[str, str | None]:
    if isinstance(caller, Member):
        return {"member_id": caller.id, "workspace_id": caller.workspace_id}
    if isinstance(caller, Operator):
        return {"operator_id": caller.id}
    return {}


def log_rejected(visit: Visit, error: ApiError | HandoffError) -> None:
    """Log a form action that the service code rejected and the page reports inline."""
    log.info(
        UI_ACTION_REJECTED_EVENT,
        path=visit.request.url.path,
        code=error.code,
        status=error.status,
        **_caller_fields(visit.caller),
    )


async def show_sign_in(request: Request, error: Exception) -> Response:
    """Redirect to the sign-in page, which returns the user to the page they asked for."""
    assert isinstance(error, SignInRequired)
    return redirect(error.visit, f"{SIGN_IN_PATH}?next={quote(error.next_path)}")


async def show_blocked(request: Request, error: Exception) -> Response:
    """Render the refusal page of a `PageBlocked`."""
    assert isinstance(error, PageBlocked)
    log.info(
        UI_PAGE_BLOCKED_EVENT,
        path=request.url.path,
        code=error.code,
        status=error.status,
        **_caller_fields(error.visit.caller),
    )
    return render(
        error.visit,
        "blocked.html",
        {"message": error.message, "fix": error.fix, "fix_link": error.fix_link},
        status=error.status,
        title="Not available",
    )
