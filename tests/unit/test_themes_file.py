"""Validation of themes files: every field checked, errors naming the item and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from handoff.themes_file import ThemesFileError, parse_themes, read_themes_file

THEME: dict[str, Any] = {
    "workspaceId": "acme",
    "assistantId": "asst_123",
    "id": "permissions",
    "label": "Permissions confusion",
    "conversationCount": 24,
    "impactTier": "High",
    "confidence": "Medium",
    "recommendation": {"title": "Reduce access/role ambiguity", "nextStep": "Add a boundary."},
    "evidence": [{"snippet": "I can't upload"}, {"snippet": "Who is admin?"}],
}


def _theme(**changes: Any) -> dict[str, Any]:
    theme = copy.deepcopy(THEME)
    theme.update(changes)
    return theme


def test_valid_theme_is_parsed() -> None:
    [record] = parse_themes([_theme()])

    assert "acme" == record.workspace_id
    assert "permissions" == record.id
    assert "asst_123" == record.assistant_id
    assert 24 == record.conversation_count
    assert ("High", "Medium") == (record.impact_tier, record.confidence)
    assert "Reduce access/role ambiguity" == record.recommendation_title
    assert "Add a boundary." == record.recommendation_next_step
    assert ("I can't upload", "Who is admin?") == record.evidence


def test_row_has_table_columns() -> None:
    [record] = parse_themes([_theme()])

    row = record.row()

    assert ["I can't upload", "Who is admin?"] == row["evidence"]
    assert "Permissions confusion" == row["label"]


def test_levels_are_case_insensitive() -> None:
    [record] = parse_themes([_theme(impactTier="low", confidence=" HIGH ")])

    assert ("Low", "High") == (record.impact_tier, record.confidence)


def test_text_is_cleaned() -> None:
    [record] = parse_themes(
        [_theme(label="a\x00b", evidence=[{"snippet": "x\ud800y"}, {"snippet": "tab\tkept"}])]
    )

    assert "a\ufffdb" == record.label
    assert ("x\ufffdy", "tab\tkept") == record.evidence


def test_extra_fields_are_ignored() -> None:
    [record] = parse_themes([_theme(trend="rising")])

    assert "permissions" == record.id


def test_empty_list_is_valid() -> None:
    assert [] == parse_themes([])


def test_same_id_in_two_workspaces_is_allowed() -> None:
    records = parse_themes([_theme(), _theme(workspaceId="globex")])

    assert 2 == len(records)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"workspaceId": None}, "workspaceId"),
        ({"workspaceId": ""}, "workspaceId"),
        ({"assistantId": 7}, "assistantId"),
        ({"label": "  "}, "label"),
        ({"conversationCount": -1}, "conversationCount"),
        ({"conversationCount": 2.5}, "conversationCount"),
        ({"conversationCount": "24"}, "conversationCount"),
        ({"conversationCount": True}, "conversationCount"),
        ({"impactTier": "Critical"}, "impactTier"),
        ({"confidence": None}, "confidence"),
        ({"recommendation": "fix it"}, "recommendation"),
        ({"recommendation": {"nextStep": "x"}}, "recommendation.title"),
        ({"recommendation": {"title": "x", "nextStep": 3}}, "recommendation.nextStep"),
        ({"evidence": "snippet"}, "evidence"),
        ({"evidence": ["plain string"]}, "evidence[0]"),
        ({"evidence": [{"snippet": "ok"}, {"snippet": None}]}, "evidence[1].snippet"),
    ],
)
def test_invalid_field_names_item_and_field(changes: dict[str, Any], field: str) -> None:
    items = [_theme(id="first"), _theme(id="second", **changes)]

    with pytest.raises(ThemesFileError) as caught:
        parse_themes(items)

    assert 1 == caught.value.index
    assert field == caught.value.field
    assert str(caught.value).startswith(f"item 1 (id 'second'): {field}: ")


def test_missing_id_is_named() -> None:
    item = _theme()
    del item["id"]

    with pytest.raises(ThemesFileError) as caught:
        parse_themes([item])

    assert "id" == caught.value.field
    assert str(caught.value).startswith("item 0: id: missing")


def test_duplicate_id_in_workspace_is_rejected() -> None:
    with pytest.raises(ThemesFileError) as caught:
        parse_themes([_theme(), _theme(label="Other")])

    assert 1 == caught.value.index
    assert "id" == caught.value.field
    assert "already used by item 0" in str(caught.value)


def test_item_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ThemesFileError) as caught:
        parse_themes([_theme(), "permissions"])

    assert 1 == caught.value.index


def test_top_level_object_is_rejected() -> None:
    with pytest.raises(ThemesFileError, match="JSON list"):
        parse_themes(THEME)


def test_file_with_invalid_json_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "themes.json"
    path.write_text('[{"id": "x",]', encoding="utf-8")

    with pytest.raises(ThemesFileError, match="not valid JSON: .* line 1"):
        read_themes_file(path)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ThemesFileError, match="cannot read"):
        read_themes_file(tmp_path / "absent.json")


def test_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "themes.json"
    path.write_text(json.dumps([_theme()]), encoding="utf-8")

    assert ["permissions"] == [record.id for record in read_themes_file(path)]
