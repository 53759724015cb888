"""Limits of the event builder on inputs at the edges: calendar ends and oversized ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outbox.errors import InvalidHandoff
from outbox.events import Actor, DateRange, Theme, Workspace, build_handoff_body, parse_range

NOW = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"from": "2020-01-01", "to": "9999-12-31T23:59:59-01:00"}, "range.to"),
        ({"from": "0001-01-01T00:00:00+01:00", "to": "2020-01-01"}, "range.from"),
        ({"to": "0001-01-02", "preset": "90d"}, "range.to"),
    ],
)
def test_range_beyond_calendar_is_invalid(value: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidHandoff) as caught:
        parse_range(value, NOW)
    assert field == caught.value.field


def test_range_offset_converted_to_utc() -> None:
    parsed = parse_range({"from": "2026-01-01T00:00:00+05:30", "to": "2026-01-02"}, NOW)
    assert datetime(2025, 12, 31, 18, 30, tzinfo=UTC) == parsed.start
    assert parsed.start is not None
    assert UTC == parsed.start.tzinfo


@pytest.mark.timeout(10)
def test_oversized_ids_raise_instead_of_looping() -> None:
    theme = Theme(
        id="x" * 70_000,
        assistant_id="asst_123",
        label="Permissions confusion",
        conversation_count=1,
        impact_tier="High",
        confidence="High",
        recommendation_title="Title",
        recommendation_next_step="Next",
        evidence=["one"],
    )
    with pytest.raises(InvalidHandoff) as caught:
        build_handoff_body(
            delivery_id="d-1",
            created_at=NOW,
            workspace=Workspace("acme", "Acme Inc", "GROWTH"),
            actor=Actor("u-1", "Olive", "owner"),
            theme=theme,
            date_range=DateRange(start=None, end=None, preset="7d"),
            sources=[],
            app_base_url="https://app.solhelps.com",
        )
    assert "event" == caught.value.field
    assert "65536 bytes" in str(caught.value)
