"""The chaos table: one row per fault, printed, saved as JSON and rendered as a Markdown page."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chaos.accounting import Tally

PAGE_START = "<!-- chaos-results:start -->"
PAGE_END = "<!-- chaos-results:end -->"

HEADER = (
    "fault",
    "committed",
    "delivered",
    "lost",
    "duplicates",
    "recovery s",
    "rolled back (sent)",
    "what was done",
)


@dataclass
class FaultRow:
    """The result of one fault.

    Attributes:
        fault: the fault's name, such as "worker SIGKILL".
        note: what the injection did, such as how many kills landed mid-request.
        tally: the delivery counts.
        recovery_s: seconds from the fault's end until every handoff committed by then, and
            the first one committed after it, was received; None when that did not happen
            within the wait.
        drained: whether the whole backlog drained within the wait.
        api_errors: handoff requests that failed (during a Postgres outage, for example).
        p99_ms: the healthy workspace's p99 latency from commit to arrival, where measured.
        problems: every reason this row fails.
    """

    fault: str
    note: str
    tally: Tally
    recovery_s: float | None
    drained: bool
    api_errors: int
    p99_ms: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether nothing was lost, nothing rolled back was sent and every bound held."""
        return not self.problems

    def cells(self) -> tuple[str, ...]:
        """Return the row's cells in `HEADER` order."""
        recovery = "not recovered" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        note = self.note
        if self.p99_ms is not None:
            note += f"; healthy p99 {self.p99_ms:.0f} ms"
        if self.api_errors:
            note += f"; {self.api_errors} API requests failed"
        return (
            self.fault,
            str(self.tally.committed),
            str(self.tally.delivered),
            str(self.tally.lost),
            str(self.tally.duplicates),
            recovery,
            f"{self.tally.rolled_back} ({self.tally.rolled_back_sent})",
            note,
        )


def machine() -> dict[str, str]:
    """Return the machine's core count, CPU model and memory, for the record."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kilobytes = int(meminfo.readline().split()[1])
            memory = f"{kilobytes / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "memory": memory}


def markdown_table(rows: list[FaultRow]) -> str:
    """Return the rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        lines.append("| " + " | ".join(row.cells()) + " |")
    return "\n".join(lines)


def text_table(rows: list[FaultRow]) -> str:
    """Return the rows as aligned plain text for a terminal."""
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(cells[index]) for cells in table) for index in range(len(HEADER) - 1)]
    lines = []
    for cells in table:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]))
    return "\n".join(lines)


@dataclass
class RunReport:
    """A whole run: when, where, its rows and its overall checks."""

    started_at: datetime
    seconds: float
    rows: list[FaultRow]
    handoffs: int
    problems: list[str]
    notes: list[str]
    settings: dict[str, str]
    machine: dict[str, str] = field(default_factory=machine)

    @property
    def passed(self) -> bool:
        """Whether every row and every overall check passed."""
        return not self.problems and all(row.passed for row in self.rows)

    def to_json(self) -> str:
        """Return the report as indented JSON."""
        document = {
            "startedAt": self.started_at.astimezone(UTC).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
            "handoffs": self.handoffs,
            "problems": self.problems,
            "notes": self.notes,
            "machine": self.machine,
            "settings": self.settings,
            "faults": [
                {
                    "fault": row.fault,
                    "note": row.note,
                    **asdict(row.tally),
                    "recoverySeconds": row.recovery_s,
                    "drained": row.drained,
                    "apiErrors": row.api_errors,
                    "p99Ms": row.p99_ms,
                    "problems": row.problems,
                }
                for row in self.rows
            ],
        }
        return json.dumps(document, indent=2)

    def write(self, folder: Path) -> Path:
        """Write results.json and table.md into `folder`; return the JSON file's path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "results.json"
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        (folder / "table.md").write_text(markdown_table(self.rows) + "\n", encoding="utf-8")
        return path


def results_section(report: RunReport) -> str:
    """Return the Markdown of one run for the reliability page: date, machine, table."""
    when = report.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    box = report.machine
    lines = [
        f"Run of {when} on {box['nproc']} cores ({box['cpu']}), {box['memory']} of memory: "
        f"{report.handoffs} handoffs in {report.seconds:.0f} s, "
        f"{'passed' if report.passed else 'FAILED'}.",
        "",
        markdown_table(report.rows),
    ]
    for note in report.notes:
        lines += ["", f"NOTE: {note}."]
    for problem in report.problems:
        lines += ["", f"FAILED: {problem}."]
    return "\n".join(lines)


def update_page(path: Path, report: RunReport) -> None:
    """Replace the run between the page's result markers with `report`.

    Raises:
        ValueError: the page lacks the markers.
    """
    page = path.read_text(encoding="utf-8")
    if PAGE_START not in page or PAGE_END not in page:
        raise ValueError(f"{path} has no {PAGE_START} ... {PAGE_END} markers")
    before, rest = page.split(PAGE_START, 1)
    _, after = rest.split(PAGE_END, 1)
    section = results_section(report)
    path.write_text(f"{before}{PAGE_START}\n{section}\n{PAGE_END}{after}", encoding="utf-8")
