"""The Operations page: backlog, retry and broker figures, refreshing every few seconds.

An operator token reads every workspace and the broker's queue. An admin reads its own
workspace, whose figures leave out the broker because its messages carry no workspace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Operator
from api.ui.pages import ADMIN_FIX, OPS_PATH, PageBlocked, open_visit, render
from outbox.events import format_timestamp
from outbox.ops import queue_figures

DEFAULT_REFRESH_S = 5
MIN_REFRESH_S = 2
MAX_REFRESH_S = 60

router = APIRouter(include_in_schema=False)


def _refresh_interval(value: str | None) -> int | None:
    """Return the seconds between refreshes that `?refresh=` asks for, or None for `off`.

    A number is clamped to 2 to 60 seconds; anything else means the default of 5.
    """
    if value == "off":
        return None
    try:
        seconds = int(value or DEFAULT_REFRESH_S)
    except ValueError:
        return DEFAULT_REFRESH_S
    return min(MAX_REFRESH_S, max(MIN_REFRESH_S, seconds))


@router.get(OPS_PATH)
def operations_page(request: Request, refresh: Annotated[str | None, Query()] = None) -> Response:
    visit = open_visit(request)
    caller = visit.require_caller()
    if isinstance(caller, Operator):
        workspace_id = None
    elif caller.is_admin:
        workspace_id = caller.workspace_id
    else:
        raise PageBlocked(
            visit,
            403,
            "not permitted: only operators and the Admins and Owners of a workspace can "
            "open Operations.",
            fix=ADMIN_FIX,
        )

    figures = queue_figures(visit.engine, visit.settings.broker_url, workspace_id)
    refresh_s = _refresh_interval(refresh)
    return render(
        visit,
        "ops.html",
        {
            "figures": figures,
            "workspace_id": workspace_id,
            "refresh_s": refresh_s,
            "read_at": format_timestamp(datetime.now(UTC)),
        },
        title="Operations",
    )
