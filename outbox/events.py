"""Construction of event bodies: the JSON a receiver gets, serialized once to bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from outbox.errors import InvalidHandoff
from outbox.text import clean_text, cut_text

HANDOFF_EVENT = "solhelps.insight.handoff"
TEST_EVENT = "solhelps.webhook.test"

MAX_EVIDENCE_SNIPPETS = 10
MAX_SNIPPET_CODE_POINTS = 1000
MAX_BODY_BYTES = 64 * 1024
PRESET_DAYS = {"7d": 7, "30d": 30, "90d": 90}


@dataclass(frozen=True)
class Workspace:
    """The workspace block of an event."""

    company_id: str
    company_name: str
    plan_tier: str


@dataclass(frozen=True)
class Actor:
    """The member who sent the event."""

    user_id: str
    name: str
    role: str


@dataclass(frozen=True)
class Theme:
    """A friction theme as stored, with its evidence in ranked order."""

    id: str
    assistant_id: str
    label: str
    conversation_count: int
    impact_tier: str
    confidence: str
    recommendation_title: str
    recommendation_next_step: str
    evidence: list[str]


@dataclass(frozen=True)
class DateRange:
    """A validated range of a handoff request, as UTC date-times."""

    start: datetime | None
    end: datetime | None
    preset: str | None


def format_timestamp(moment: datetime) -> str:
    """Format `moment` as UTC with milliseconds and `Z`, as every event timestamp is."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_moment(field: str, value: object) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise InvalidHandoff(field, "must be an ISO 8601 date or date-time")
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # Converting to UTC overflows for offsets at the ends of the calendar, such as
        # 9999-12-31T23:59:59-01:00.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidHandoff(field, f"invalid date {text[:40]!r}; use ISO 8601") from None


def parse_range(value: object, now: datetime) -> DateRange:
    """Validate a request's `range`; a preset alone spans the last 7, 30 or 90 days.

    Raises:
        InvalidHandoff: the range is missing, malformed or ends before it starts.
    """
    if not isinstance(value, dict):
        raise InvalidHandoff("range", "must be an object with from and to, or a preset")
    preset = value.get("preset")
    if preset is not None and preset not in PRESET_DAYS:
        raise InvalidHandoff("range.preset", "must be 7d, 30d or 90d")
    raw_start, raw_end = value.get("from"), value.get("to")
    if preset is None and (raw_start is None or raw_end is None):
        raise InvalidHandoff("range", "from and to are required unless preset is 7d, 30d or 90d")

    end = _parse_moment("range.to", raw_end) if raw_end is not None else now
    if raw_start is not None:
        start = _parse_moment("range.from", raw_start)
    else:
        try:
            start = end - timedelta(days=PRESET_DAYS[str(preset)])
        except OverflowError:
            raise InvalidHandoff("range.to", "too early for the preset's days before it") from None
    if start > end:
        raise InvalidHandoff("range", "from must not be after to")
    return DateRange(start=start, end=end, preset=preset)


def parse_sources(value: object) -> list[str]:
    """Validate `sources`: omitted means all sources, sent as an empty list.

    Raises:
        InvalidHandoff: sources is not a list of short strings.
    """
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidHandoff("sources", "must be a list of strings")
    if len(value) > 50:
        raise InvalidHandoff("sources", "at most 50 sources")
    return [cut_text(clean_text(item), 100) for item in value]


def _serialize(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _fit_budget(body: dict[str, Any]) -> bytes:
    """Serialize `body`, dropping evidence and then halving long text until it fits 64 KiB.

    Raises:
        InvalidHandoff: the body is still too large with every text cut to one character,
            because its ids are that long (only a themes file can load such ids).
    """
    encoded = _serialize(body)
    while len(encoded) > MAX_BODY_BYTES and body["evidence"]:
        body["evidence"].pop()
        encoded = _serialize(body)
    while len(encoded) > MAX_BODY_BYTES:
        holders = [
            (body["theme"], "label"),
            (body["recommendation"], "title"),
            (body["recommendation"], "nextStep"),
            (body["actor"], "name"),
            (body["workspace"], "companyName"),
        ]
        holder, name = max(holders, key=lambda pair: len(pair[0][pair[1]]))
        if len(holder[name]) <= 1:
            raise InvalidHandoff(
                "event",
                f"the theme, assistant and workspace ids make it larger than {MAX_BODY_BYTES} "
                "bytes; shorten them",
            )
        holder[name] = cut_text(holder[name], max(1, len(holder[name]) // 2))
        encoded = _serialize(body)
    return encoded


def _envelope(
    event: str, delivery_id: str, created_at: datetime, workspace: Workspace, actor: Actor
) -> dict[str, Any]:
    return {
        "event": event,
        "deliveryId": delivery_id,
        "sentAt": format_timestamp(created_at),
        "workspace": {
            "companyId": workspace.company_id,
            "companyName": clean_text(workspace.company_name),
            "planTier": workspace.plan_tier,
        },
        "actor": {"userId": actor.user_id, "name": clean_text(actor.name), "role": actor.role},
    }


def build_handoff_body(
    *,
    delivery_id: str,
    created_at: datetime,
    workspace: Workspace,
    actor: Actor,
    theme: Theme,
    date_range: DateRange,
    sources: list[str],
    app_base_url: str,
) -> bytes:
    """Build and serialize a `solhelps.insight.handoff` body within the size budget."""
    start = format_timestamp(date_range.start) if date_range.start else None
    end = format_timestamp(date_range.end) if date_range.end else None
    query = {"theme": theme.id, "assistant": theme.assistant_id}
    query.update({key: value for key, value in (("from", start), ("to", end)) if value})
    if date_range.preset:
        query["preset"] = date_range.preset

    snippets = [clean_text(snippet) for snippet in theme.evidence]
    body = _envelope(HANDOFF_EVENT, delivery_id, created_at, workspace, actor)
    body.update(
        {
            "scope": {
                "assistantId": theme.assistant_id,
                "range": {"from": start, "to": end, "preset": date_range.preset},
                "sources": sources,
            },
            "theme": {
                "id": theme.id,
                "label": clean_text(theme.label),
                "conversationCount": theme.conversation_count,
                "impactTier": theme.impact_tier,
                "confidence": theme.confidence,
            },
            "recommendation": {
                "title": clean_text(theme.recommendation_title),
                "nextStep": clean_text(theme.recommendation_next_step),
            },
            "evidence": [
                {"snippet": cut_text(snippet, MAX_SNIPPET_CODE_POINTS)}
                for snippet in snippets[:MAX_EVIDENCE_SNIPPETS]
            ],
            "evidenceTotal": len(snippets),
            "links": {"insight": f"{app_base_url}/dashboard/insights?{urlencode(query)}"},
        }
    )
    return _fit_budget(body)


def build_test_body(
    *,
    delivery_id: str,
    created_at: datetime,
    workspace: Workspace,
    actor: Actor,
    app_base_url: str,
) -> bytes:
    """Build and serialize a `solhelps.webhook.test` body: the handoff envelope, sample content."""
    body = _envelope(TEST_EVENT, delivery_id, created_at, workspace, actor)
    body.update(
        {
            "scope": {"assistantId": None, "range": None, "sources": []},
            "theme": {
                "id": "sample",
                "label": "Sample theme: password reset confusion",
                "conversationCount": 12,
                "impactTier": "Medium",
                "confidence": "High",
            },
            "recommendation": {
                "title": "This is a test event from Sol Helps",
                "nextStep": "Map theme, recommendation and links.insight in your receiver.",
            },
            "evidence": [{"snippet": "I never got the reset email, where do I look?"}],
            "evidenceTotal": 1,
            "links": {"insight": f"{app_base_url}/account/integrations/webhook"},
        }
    )
    return _fit_budget(body)
