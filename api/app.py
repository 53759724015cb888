"""Construction of the FastAPI application: routers, error handlers and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine

import handoff
from api import metrics
from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.routes import deliveries, health, integration, ops
from api.routes import handoff as handoff_routes
from api.schemas import documented_body_schemas
from api.ui import install_ui
from handoff.db import make_engine
from handoff.settings import Settings

TITLE = "Sol Helps webhook handoff"


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the API application.

    Args:
        settings: the service's settings; `database_url` is required when `engine` is None,
            and `secret_key` by the integration endpoints.
        engine: the engine to use; by default one is made from `settings.database_url`.

    Raises:
        SettingError: `engine` is None and `DATABASE_URL` is not set.
    """
    if engine is None:
        database_url = settings.require("database_url").database_url
        assert database_url is not None  # require() raised otherwise
        engine = make_engine(database_url)

    app = FastAPI(title=TITLE, version=handoff.__version__)
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    for router in (
        integration.router,
        handoff_routes.router,
        deliveries.router,
        health.router,
        ops.router,
        metrics.router,
    ):
        app.include_router(router)
    install_ui(app)

    def openapi() -> dict[str, Any]:
        # Some bodies are parsed by their handlers, not by FastAPI, so their schemas are
        # added to the components here for the routes' `$ref`s to resolve.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=None
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(documented_body_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
