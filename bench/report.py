"""The run's results: medians, ratios to the limits and the reference, the table and the JSON."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One line of the table: a median figure, its limit and reference, and its target."""

    name: str
    unit: str
    value: float
    limit: float | None = None
    reference: float | None = None
    target: str = ""
    met: bool | None = None

    def ratio_to_limit(self) -> float | None:
        """The figure divided by its limit."""
        return None if self.limit is None else self.value / self.limit

    def ratio_to_reference(self) -> float | None:
        """The figure divided by the reference's."""
        return None if self.reference is None else self.value / self.reference

    def as_dict(self) -> dict[str, Any]:
        """The row for the JSON file."""
        return {
            "name": self.name,
            "unit": self.unit,
            "value": round(self.value, 3),
            "limit": None if self.limit is None else round(self.limit, 3),
            "ratio_to_limit": _rounded(self.ratio_to_limit()),
            "reference": None if self.reference is None else round(self.reference, 3),
            "ratio_to_reference": _rounded(self.ratio_to_reference()),
            "target": self.target,
            "met": self.met,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def median(values: list[float]) -> float:
    """The median of the repetitions."""
    return float(statistics.median(values))


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(rows: list[Row]) -> str:
    """Format `rows` as a Markdown table, the form docs/performance.md shows."""
    header = (
        "| figure | median | limit | x limit | reference | x reference | target | met |\n"
        "|---|---:|---:|---:|---:|---:|---|---|"
    )
    lines = [header]
    for row in rows:
        digits = 1 if row.value < 100 else 0
        met = {True: "yes", False: "no", None: ""}[row.met]
        lines.append(
            f"| {row.name} ({row.unit}) | {_cell(row.value, digits)} | "
            f"{_cell(row.limit, digits)} | {_cell(row.ratio_to_limit(), 2)} | "
            f"{_cell(row.reference, digits)} | {_cell(row.ratio_to_reference(), 2)} | "
            f"{row.target} | {met} |"
        )
    return "\n".join(lines)


def write_json(document: dict[str, Any], folder: Path) -> Path:
    """Write `document` to `folder/<UTC timestamp>.json` and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
