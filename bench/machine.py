"""A description of the machine a run measured on: cores, CPU model, memory and load."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _first_value(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def describe_machine() -> dict[str, Any]:
    """Return the core count, CPU model, memory in GiB, load averages and Python version."""
    memory_kb = _first_value("/proc/meminfo", "MemTotal")
    memory_gib = None
    if memory_kb is not None:
        memory_gib = round(int(memory_kb.split()[0]) / 2**20, 1)
    return {
        "cores": os.cpu_count(),
        "cpu_model": _first_value("/proc/cpuinfo", "model name"),
        "memory_gib": memory_gib,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
    }
