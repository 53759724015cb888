"""The admin web UI: server-rendered pages at the site root, mounted on the API application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui import history, insights, integrations, operations, sign_in
from api.ui.pages import PageBlocked, SignInRequired, show_blocked, show_sign_in

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def install_ui(app: FastAPI) -> None:
    """Add the UI's pages, its stylesheet under /static and its two page-level error handlers."""
    for router in (
        sign_in.router,
        insights.router,
        integrations.router,
        history.router,
        operations.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(SignInRequired, show_sign_in)
    app.add_exception_handler(PageBlocked, show_blocked)
