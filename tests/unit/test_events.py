import json
from datetime import UTC, datetime

import pytest

from outbox.errors import InvalidHandoff
from outbox.events import (
    MAX_BODY_BYTES,
    Actor,
    DateRange,
    Theme,
    Workspace,
    build_handoff_body,
    build_test_body,
    format_timestamp,
    parse_range,
    parse_sources,
)

NOW = datetime(2026, 2, 15, 12, 34, 56, 789000, tzinfo=UTC)
WORKSPACE = Workspace(company_id="acme", company_name="Acme Inc", plan_tier="GROWTH")
ACTOR = Actor(user_id="u1", name="Mel", role="member")


def make_theme(evidence: list[str], label: str = "Permissions confusion") -> Theme:
    return Theme(
        id="permissions",
        assistant_id="asst_123",
        label=label,
        conversation_count=24,
        impact_tier="High",
        confidence="Medium",
        recommendation_title="Reduce access/role ambiguity",
        recommendation_next_step="Add a clear permission boundary",
        evidence=evidence,
    )


def build(theme: Theme, date_range: DateRange | None = None) -> dict[str, object]:
    body = build_handoff_body(
        delivery_id="d1",
        created_at=NOW,
        workspace=WORKSPACE,
        actor=ACTOR,
        theme=theme,
        date_range=date_range or parse_range({"preset": "30d"}, NOW),
        sources=[],
        app_base_url="https://app.solhelps.com",
    )
    assert len(body) <= MAX_BODY_BYTES
    return json.loads(body)  # type: ignore[no-any-return]


def test_timestamp_has_milliseconds_and_z() -> None:
    assert "2026-02-15T12:34:56.789Z" == format_timestamp(NOW)


def test_handoff_body_layout() -> None:
    body = build(make_theme(["I can't upload"]))
    assert "solhelps.insight.handoff" == body["event"]
    assert "2026-02-15T12:34:56.789Z" == body["sentAt"]
    assert {"companyId": "acme", "companyName": "Acme Inc", "planTier": "GROWTH"} == body[
        "workspace"
    ]
    assert {"userId": "u1", "name": "Mel", "role": "member"} == body["actor"]
    scope = body["scope"]
    assert isinstance(scope, dict)
    assert "asst_123" == scope["assistantId"]
    assert [] == scope["sources"]
    assert "30d" == scope["range"]["preset"]
    assert "2026-01-16T12:34:56.789Z" == scope["range"]["from"]
    assert [{"snippet": "I can't upload"}] == body["evidence"]
    assert 1 == body["evidenceTotal"]
    links = body["links"]
    assert isinstance(links, dict)
    assert links["insight"].startswith(
        "https://app.solhelps.com/dashboard/insights?theme=permissions&assistant=asst_123"
    )


def test_evidence_limited_to_ten_with_total() -> None:
    body = build(make_theme([f"snippet {n}" for n in range(31)]))
    assert [{"snippet": f"snippet {n}"} for n in range(10)] == body["evidence"]
    assert 31 == body["evidenceTotal"]


def test_long_snippet_cut_with_ellipsis() -> None:
    body = build(make_theme(["é" * 5000]))
    evidence = body["evidence"]
    assert isinstance(evidence, list)
    snippet = evidence[0]["snippet"]
    assert 1000 == len(snippet)
    assert snippet.endswith("…")


def test_huge_text_fits_budget() -> None:
    body = build(make_theme(["😀" * 1000] * 10, label="漢" * 50_000))
    assert 10 >= len(body["evidence"])  # type: ignore[arg-type]


def test_nul_and_surrogates_replaced() -> None:
    body = build(make_theme(["a\x00b\ud800"], label="x\udfff"))
    assert [{"snippet": "a\ufffdb\ufffd"}] == body["evidence"]
    assert "x\ufffd" == body["theme"]["label"]  # type: ignore[index]


def test_test_body_shape() -> None:
    raw = build_test_body(
        delivery_id="d2",
        created_at=NOW,
        workspace=WORKSPACE,
        actor=ACTOR,
        app_base_url="https://app.solhelps.com",
    )
    body = json.loads(raw)
    assert "solhelps.webhook.test" == body["event"]
    assert "sample" == body["theme"]["id"]
    assert None is body["scope"]["assistantId"]
    assert None is body["scope"]["range"]
    assert 1 == len(body["evidence"])
    assert body["links"]["insight"].endswith("/account/integrations/webhook")


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        {"from": "2026-01-01"},
        {"preset": "12d"},
        {"from": "yesterday", "to": "2026-01-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
    ],
)
def test_invalid_range_rejected(value: object) -> None:
    with pytest.raises(InvalidHandoff):
        parse_range(value, NOW)


def test_dates_become_utc_datetimes() -> None:
    parsed = parse_range({"from": "2026-01-01", "to": "2026-01-31T10:00:00+02:00"}, NOW)
    assert "2026-01-01T00:00:00.000Z" == format_timestamp(parsed.start)  # type: ignore[arg-type]
    assert "2026-01-31T08:00:00.000Z" == format_timestamp(parsed.end)  # type: ignore[arg-type]


def test_sources_omitted_means_all() -> None:
    assert [] == parse_sources(None)
    assert ["chat", "email"] == parse_sources(["chat", "email"])
    with pytest.raises(InvalidHandoff):
        parse_sources("chat")
