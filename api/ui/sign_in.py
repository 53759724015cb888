"""Sign-in with an API token, sign-out, and the site root that leads to one or the other."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from api.auth import MAX_TOKEN_LENGTH, Caller, Operator, find_caller
from api.tokens import hash_token
from api.ui.pages import INSIGHTS_PATH, OPS_PATH, SIGN_IN_PATH, open_visit, redirect, render
from api.ui.session import CSRF_FIELD, new_session

log = structlog.get_logger(__name__)

UI_SIGNED_IN_EVENT = "ui_signed_in"
UI_SIGN_IN_REJECTED_EVENT = "ui_sign_in_rejected"
UI_SIGNED_OUT_EVENT = "ui_signed_out"

SIGN_IN_REJECTED = (
    "invalid token: no member or operator has this token. Paste the whole token that "
    "`handoff members add` printed, or ask an Owner for a new one."
)

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]


def _landing(caller: Caller) -> str:
    return OPS_PATH if isinstance(caller, Operator) else INSIGHTS_PATH


def _safe_next(value: str | None) -> str | None:
    """Return `value` if it is a path on this site, else None (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    # Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    # "/\t/host" or "/\\host" would lead to another site.
    if any(ord(character) < 0x20 or character in "\x7f\\" for character in value):
        return None
    return value


@router.get("/")
def home(request: Request) -> Response:
    visit = open_visit(request)
    if visit.caller is None:
        return redirect(visit, SIGN_IN_PATH)
    return redirect(visit, _landing(visit.caller))


@router.get(SIGN_IN_PATH)
def sign_in_page(
    request: Request,
    next_path: Annotated[str | None, Query(alias="next")] = None,
    signed_out: Annotated[str | None, Query()] = None,
) -> Response:
    visit = open_visit(request)
    if visit.caller is not None:
        return redirect(visit, _safe_next(next_path) or _landing(visit.caller))
    return render(
        visit,
        "sign_in.html",
        {"next_path": _safe_next(next_path) or "", "signed_out": signed_out is not None},
        title="Sign in",
    )


@router.post(SIGN_IN_PATH)
def sign_in(
    request: Request,
    token: FormText = "",
    next_path: Annotated[str, Form(alias="next")] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    visit = open_visit(request)
    # The sign-in form has a CSRF token too, so another site cannot sign a browser in
    # with the attacker's token.
    visit.check_csrf(csrf_token)

    token = token.strip()
    caller = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        caller = find_caller(visit.engine, hash_token(token))
    if caller is None:
        log.info(UI_SIGN_IN_REJECTED_EVENT, token_given=bool(token))
        return render(
            visit,
            "sign_in.html",
            {"next_path": _safe_next(next_path) or "", "error": SIGN_IN_REJECTED},
            status=401,
            title="Sign in",
        )

    # A new session gets a new CSRF token, so a token seen before sign-in is useless after.
    visit.start_session(new_session(hash_token(token)))
    if isinstance(caller, Operator):
        log.info(UI_SIGNED_IN_EVENT, operator_id=caller.id)
    else:
        log.info(
            UI_SIGNED_IN_EVENT,
            member_id=caller.id,
            workspace_id=caller.workspace_id,
            role=caller.role,
        )
    return redirect(visit, _safe_next(next_path) or _landing(caller))


@router.post("/sign-out")
def sign_out(
    request: Request,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    visit = open_visit(request)
    visit.check_csrf(csrf_token)
    member = visit.member
    log.info(UI_SIGNED_OUT_EVENT, member_id=member.id if member else None)
    visit.start_session(new_session())
    return redirect(visit, f"{SIGN_IN_PATH}?signed_out=1")
