"""Validation of a friction-themes JSON file and its all-or-nothing upsert into `themes`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from outbox.text import clean_text
from schema.tables import themes, workspaces

LEVELS = ("High", "Medium", "Low")
# Rows per INSERT statement, well under Postgres's 65,535 bound parameters.
_UPSERT_CHUNK = 500


class ThemesFileError(Exception):
    """Raised when a themes file cannot be read or one of its items is invalid.

    Attributes:
        index: position of the invalid item in the list, from 0, or None for the whole file.
        theme_id: the item's `id` when it has a readable one.
        field: the JSON field at fault, such as "recommendation.nextStep".
    """

    def __init__(
        self,
        problem: str,
        *,
        index: int | None = None,
        theme_id: str | None = None,
        field: str | None = None,
    ) -> None:
        where = ""
        if index is not None:
            where = f"item {index}"
            if theme_id is not None:
                where += f" (id {theme_id!r})"
            where += ": "
        if field is not None:
            where += f"{field}: "
        super().__init__(where + problem)
        self.index = index
        self.theme_id = theme_id
        self.field = field


@dataclass(frozen=True)
class ThemeRecord:
    """One validated theme with cleaned text, in the shape of a `themes` row."""

    workspace_id: str
    id: str
    assistant_id: str
    label: str
    conversation_count: int
    impact_tier: str
    confidence: str
    recommendation_title: str
    recommendation_next_step: str
    evidence: tuple[str, ...]

    def row(self) -> dict[str, Any]:
        """Return the values of the `themes` row."""
        return {
            "workspace_id": self.workspace_id,
            "id": self.id,
            "assistant_id": self.assistant_id,
            "label": self.label,
            "conversation_count": self.conversation_count,
            "impact_tier": self.impact_tier,
            "confidence": self.confidence,
            "recommendation_title": self.recommendation_title,
            "recommendation_next_step": self.recommendation_next_step,
            "evidence": list(self.evidence),
        }


class _ItemReader:
    """Reads the fields of one item, raising `ThemesFileError` that names the item and field."""

    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.item = item
        raw_id = item.get("id")
        self.theme_id = raw_id if isinstance(raw_id, str) else None

    def fail(self, field: str, problem: str) -> ThemesFileError:
        return ThemesFileError(problem, index=self.index, theme_id=self.theme_id, field=field)

    def text(self, field: str, value: object, *, allow_empty: bool = False) -> str:
        if value is None:
            raise self.fail(field, "missing; set a string")
        if not isinstance(value, str):
            raise self.fail(field, f"must be a string, not {_json_type(value)}")
        cleaned = clean_text(value)
        if not allow_empty and not cleaned.strip():
            raise self.fail(field, "must not be empty")
        return cleaned

    def level(self, field: str) -> str:
        value = self.item.get(field)
        if isinstance(value, str):
            for level in LEVELS:
                if value.strip().lower() == level.lower():
                    return level
        raise self.fail(field, f"must be High, Medium or Low, not {_shown(value)}")

    def count(self, field: str) -> int:
        value = self.item.get(field)
        # bool is a subclass of int, and `true` is no conversation count.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(field, f"must be an integer >= 0, not {_shown(value)}")
        return value


def parse_themes(data: object) -> list[ThemeRecord]:
    """Validate the decoded JSON of a themes file.

    Fields other than the documented ones are ignored. Text is cleaned so Postgres and JSON
    can carry it; lengths are not limited here, because the event builder cuts them.

    Raises:
        ThemesFileError: `data` is not a list, or an item is invalid or repeats an `id`
            within its workspace; the message names the item and the field.
    """
    if not isinstance(data, list):
        raise ThemesFileError(f"the file must hold a JSON list of themes, not {_json_type(data)}")

    records: list[ThemeRecord] = []
    first_index: dict[tuple[str, str], int] = {}
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise ThemesFileError(f"must be a JSON object, not {_json_type(item)}", index=index)
        record = _parse_item(_ItemReader(index, item))
        key = (record.workspace_id, record.id)
        if key in first_index:
            raise ThemesFileError(
                f"duplicate id {record.id!r} in workspace {record.workspace_id!r}, "
                f"already used by item {first_index[key]}",
                index=index,
                theme_id=record.id,
                field="id",
            )
        first_index[key] = index
        records.append(record)
    return records


def _parse_item(reader: _ItemReader) -> ThemeRecord:
    item = reader.item
    workspace_id = reader.text("workspaceId", item.get("workspaceId"))
    theme_id = reader.text("id", item.get("id"))
    assistant_id = reader.text("assistantId", item.get("assistantId"))
    label = reader.text("label", item.get("label"))
    conversation_count = reader.count("conversationCount")
    impact_tier = reader.level("impactTier")
    confidence = reader.level("confidence")

    recommendation = item.get("recommendation")
    if not isinstance(recommendation, dict):
        raise reader.fail(
            "recommendation",
            f"must be an object with title and nextStep, not {_shown(recommendation)}",
        )
    title = reader.text("recommendation.title", recommendation.get("title"))
    next_step = reader.text(
        "recommendation.nextStep", recommendation.get("nextStep"), allow_empty=True
    )

    evidence = item.get("evidence")
    if not isinstance(evidence, list):
        raise reader.fail(
            "evidence", f"must be a list of {{snippet}} objects, not {_shown(evidence)}"
        )
    snippets: list[str] = []
    for position, entry in enumerate(evidence):
        field = f"evidence[{position}].snippet"
        if not isinstance(entry, dict):
            raise reader.fail(f"evidence[{position}]", f"must be an object, not {_shown(entry)}")
        snippets.append(reader.text(field, entry.get("snippet"), allow_empty=True))

    return ThemeRecord(
        workspace_id=workspace_id,
        id=theme_id,
        assistant_id=assistant_id,
        label=label,
        conversation_count=conversation_count,
        impact_tier=impact_tier,
        confidence=confidence,
        recommendation_title=title,
        recommendation_next_step=next_step,
        evidence=tuple(snippets),
    )


def read_themes_file(path: Path) -> list[ThemeRecord]:
    """Read and validate a themes file.

    Raises:
        ThemesFileError: the file cannot be read, is not JSON, or holds an invalid item.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ThemesFileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        # json.loads detects UTF-8, UTF-16 and UTF-32 from the bytes themselves.
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ThemesFileError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except UnicodeDecodeError as error:
        raise ThemesFileError(f"{path} is not UTF-8 text: {error.reason}") from error
    return parse_themes(data)


def upsert_themes(db: Session | Connection, records: Sequence[ThemeRecord]) -> int:
    """Insert or update `records` in the caller's transaction; never commits.

    Run it inside one transaction so that the whole file loads or nothing does.

    Returns:
        How many themes were written.

    Raises:
        ThemesFileError: an item names a workspace that does not exist (nothing is written).
    """
    if not records:
        return 0
    workspace_ids = {record.workspace_id for record in records}
    existing = set(
        db.execute(select(workspaces.c.id).where(workspaces.c.id.in_(workspace_ids))).scalars()
    )
    for index, record in enumerate(records):
        if record.workspace_id not in existing:
            raise ThemesFileError(
                f"workspace {record.workspace_id!r} not found; create it first with "
                "`handoff workspaces create`",
                index=index,
                theme_id=record.id,
                field="workspaceId",
            )

    for start in range(0, len(records), _UPSERT_CHUNK):
        chunk = records[start : start + _UPSERT_CHUNK]
        statement = insert(themes).values([record.row() for record in chunk])
        updated = {
            name: statement.excluded[name]
            for name in (
                "assistant_id",
                "label",
                "conversation_count",
                "impact_tier",
                "confidence",
                "recommendation_title",
                "recommendation_next_step",
                "evidence",
            )
        }
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[themes.c.workspace_id, themes.c.id],
                set_={**updated, "updated_at": func.now()},
            )
        )
    return len(records)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _shown(value: object) -> str:
    if value is None:
        return "missing or null"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return repr(value)[:60]
    return _json_type(value)
