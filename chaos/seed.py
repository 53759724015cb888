"""Seeding through the product's own interfaces: `handoff` commands, then the integration API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from chaos.processes import ProcessError, run_handoff

ASSISTANT_ID = "asst_chaos"
# Handoffs of this theme are only ever enqueued in transactions that roll back.
ROLLBACK_THEME_ID = "rollback-marker"


@dataclass(frozen=True)
class SeededWorkspace:
    """A workspace with an owner (configures the webhook) and an exporting member."""

    workspace_id: str
    owner_token: str
    member_id: str
    member_token: str


def _member(
    environment: dict[str, str], workspace_id: str, name: str, role: str
) -> tuple[str, str]:
    """Add a member; return its id and its token."""
    args = ["members", "add", "--workspace", workspace_id, "--name", name, "--role", role]
    if role == "member":
        args += ["--permission", "insights.export", "--assistant", ASSISTANT_ID]
    lines = run_handoff(args, environment).strip().splitlines()
    # The first line is "member <id> (...)"; the token is the last word of the last line.
    if len(lines) < 2 or not lines[0].startswith("member "):
        raise ProcessError(f"unexpected output of `handoff members add`: {lines!r}")
    return lines[0].split()[1], lines[-1].split()[-1]


def _theme(workspace_id: str, theme_id: str) -> dict[str, object]:
    return {
        "workspaceId": workspace_id,
        "assistantId": ASSISTANT_ID,
        "id": theme_id,
        "label": f"Chaos suite theme {theme_id}",
        "conversationCount": 12,
        "impactTier": "High",
        "confidence": "Medium",
        "recommendation": {
            "title": "Keep handoffs flowing",
            "nextStep": "Check the receiver's records.",
        },
        "evidence": [{"snippet": "a snippet of a customer conversation"}],
    }


def seed_workspaces(
    environment: dict[str, str], folder: Path, themes: dict[str, list[str]]
) -> dict[str, SeededWorkspace]:
    """Create each workspace of `themes` with an owner, a member and its themes.

    Args:
        environment: the product environment; only `DATABASE_URL` is used.
        folder: where the themes file is written.
        themes: theme ids by workspace id.

    Raises:
        ProcessError: a `handoff` command failed.
    """
    seeded = {}
    for workspace_id in themes:
        run_handoff(
            [
                "workspaces",
                "create",
                "--id",
                workspace_id,
                "--name",
                "Chaos Inc",
                "--plan",
                "growth",
            ],
            environment,
        )
        _, owner_token = _member(environment, workspace_id, "Olive Owner", "owner")
        member_id, member_token = _member(environment, workspace_id, "Mel Member", "member")
        seeded[workspace_id] = SeededWorkspace(workspace_id, owner_token, member_id, member_token)

    items = [
        _theme(workspace_id, theme_id) for workspace_id, ids in themes.items() for theme_id in ids
    ]
    path = folder / "themes.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    run_handoff(["themes", "load", str(path)], environment)
    return seeded


def configure_webhook(api_url: str, owner_token: str, url: str) -> None:
    """Save a generic webhook to `url`, with a generated secret, through the API.

    Raises:
        ProcessError: the API did not respond 200.
    """
    response = httpx.put(
        f"{api_url}/api/v1/integrations/webhook",
        json={"provider": "generic", "url": url, "enabled": True, "generateSecret": True},
        headers={"Authorization": f"Bearer {owner_token}"},
        timeout=30.0,
    )
    if response.status_code != 200:
        raise ProcessError(
            f"PUT /api/v1/integrations/webhook failed with HTTP {response.status_code}: "
            f"{response.text[:500]}"
        )
