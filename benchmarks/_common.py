"""Shared by every benchmark: where results go and how they are recorded.

Each benchmark writes ``benchmarks/results/<name>.json`` and appends one line per measurement
to ``docs/benchmarks.md`` with the machine and the date, so that numbers are never quoted
without the run that produced them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    """A short description of this machine: CPU model, cores, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def record(name: str, result: dict[str, Any], summary: str) -> None:
    """Write the JSON result and append a dated line to docs/benchmarks.md.

    Parameters
    ----------
    name
        Benchmark name (file stem of the JSON result).
    result
        Everything measured, JSON-serialisable.
    summary
        One line of Markdown for the table in docs/benchmarks.md.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    payload = {"benchmark": name, "date": stamp, "machine": machine(), **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
        DOC.write_text(
            "# Benchmarks\n\nEvery line is written by a run of `make bench` (or the benchmark "
            "named), with its machine and date. JSON results are in `benchmarks/results/`.\n\n"
            "| date | benchmark | machine | result |\n|---|---|---|---|\n"
        )
    with DOC.open("a") as fh:
        fh.write(f"| {stamp} | {name} | {machine()} | {summary} |\n")
    print(f"[{name}] {summary}")
