"""Importing a TensorBoard log of 1,000,000 scalar points: scalinglab against tbparse.

The log is written once by torch's ``SummaryWriter`` (4 tags × 250,000 steps, kept in
``benchmarks/.cache``). Each reader runs in a fresh process of its own virtual environment
(tbparse 0.0.9 in ``.venv-bench-tbparse``), ``REPEATS`` times alternately; a run reports its
wall time for reading every point, the peak resident memory of the process and the memory
it had after its imports (so the difference is what reading took). For scalinglab, both the
reader alone (``read_tensorboard``: points of every tag, as tbparse returns them) and the
whole import (``import_runs``: stitched, mapped, validated Observations) are timed. Both
readers must return all 1,000,000 points with the same values, or the benchmark fails.

Run: ``.venv/bin/python benchmarks/import_speed.py``. The ratios compare runs made in the
same invocation on the same machine; absolute seconds depend on the machine's load (the load
average is recorded).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import ROOT, record
from fit_speed import ensure_venv

CACHE = ROOT / "benchmarks" / ".cache" / "tb-1m"
TBPARSE_VENV = ROOT / ".venv-bench-tbparse"
TBPARSE_REQ = ("tbparse", "0.0.9")
TAGS = ("train/loss", "val/loss", "lr", "grad_norm")
STEPS = 250_000
REPEATS = 3

WRITER = """
import sys
from torch.utils.tensorboard import SummaryWriter
tags = {tags!r}
with SummaryWriter(sys.argv[1], max_queue=100_000, flush_secs=3600) as writer:
    for step in range({steps}):
        for k, tag in enumerate(tags):
            writer.add_scalar(tag, 3.0 / (1 + step) ** 0.1 + k, step)
"""

# both workers print {"seconds", "peak_rss_mb", "base_rss_mb", "points", "checksum"}
PROLOGUE = """
import json, resource, sys, time
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
OURS = (
    PROLOGUE
    + """
from pathlib import Path
from scalinglab.data import import_runs
from scalinglab.data.importers.tensorboard import read_tensorboard
import numpy as np
base = rss_mb()
tick = time.perf_counter()
if sys.argv[2] == "read":
    (run,) = read_tensorboard(Path(sys.argv[1]))
    values = run.points["value"].to_numpy()
else:
    table = import_runs(sys.argv[1], params=1e8, tokens_per_step=2**19)
    values = table["loss"].to_numpy()
seconds = time.perf_counter() - tick
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb(), "base_rss_mb": base,
                  "points": int(values.size), "checksum": float(np.sum(values))}))
"""
)
TBPARSE = (
    PROLOGUE
    + """
from tbparse import SummaryReader
base = rss_mb()
tick = time.perf_counter()
frame = SummaryReader(sys.argv[1]).scalars
seconds = time.perf_counter() - tick
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb(), "base_rss_mb": base,
                  "points": len(frame), "checksum": float(frame["value"].astype("float64").sum())}))
"""
)


def write_log() -> Path:
    """The event file with 1,000,000 points, written once by torch's SummaryWriter."""
    if not list(CACHE.glob("events.out.tfevents.*")):
        print(f"writing {len(TAGS) * STEPS:,} points with SummaryWriter into {CACHE}", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        script = WRITER.format(tags=TAGS, steps=STEPS)
        subprocess.run([sys.executable, "-c", script, str(CACHE)], check=True)
    return CACHE


def run(python: str | Path, script: str, *args: str) -> dict[str, Any]:
    """One measurement in a fresh process, with the load average around it."""
    load = os.getloadavg()[0]
    done = subprocess.run(
        [str(python), "-c", script, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"load_before": load, "load_after": os.getloadavg()[0]}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time and memory of repeated runs, and every run."""
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "reading_rss_mb": statistics.median(r["peak_rss_mb"] - r["base_rss_mb"] for r in runs),
        "points": runs[0]["points"],
        "runs": runs,
    }


def main() -> int:
    log = write_log()
    tbparse = ensure_venv(TBPARSE_VENV, sys.executable, TBPARSE_REQ)
    measured: dict[str, list[dict[str, Any]]] = {"read": [], "import": [], "tbparse": []}
    for _ in range(REPEATS):
        measured["read"].append(run(sys.executable, OURS, str(log), "read"))
        measured["import"].append(run(sys.executable, OURS, str(log), "import"))
        measured["tbparse"].append(run(tbparse, TBPARSE, str(log)))
    read, full, peer = (summary(measured[k]) for k in ("read", "import", "tbparse"))
    points = len(TAGS) * STEPS
    if read["points"] != points or peer["points"] != points:
        print(f"points read: scalinglab {read['points']}, tbparse {peer['points']}")
        return 1
    ours_sum, peer_sum = measured["read"][0]["checksum"], measured["tbparse"][0]["checksum"]
    if abs(ours_sum - peer_sum) > 1e-9 * abs(peer_sum):
        print(f"values differ: checksum {ours_sum} vs tbparse {peer_sum}")
        return 1
    result = {
        "points": points,
        "file_mb": sum(f.stat().st_size for f in log.iterdir()) / 2**20,
        "repeats": REPEATS,
        "scalinglab_read": read,
        "scalinglab_import": full,
        "tbparse": peer,
        "speedup_read": peer["seconds"] / read["seconds"],
        "speedup_import": peer["seconds"] / full["seconds"],
        "memory_ratio_read": read["reading_rss_mb"] / peer["reading_rss_mb"],
        "load_average": os.getloadavg(),
    }
    record(
        "import_speed",
        result,
        f"TensorBoard log of {points:,} scalars: scalinglab reads every point in "
        f"{read['seconds']:.2f} s ({read['reading_rss_mb']:.0f} MB above its imports) and "
        f"imports them as Observations in {full['seconds']:.2f} s; tbparse "
        f"{TBPARSE_REQ[1]} {peer['seconds']:.1f} s ({peer['reading_rss_mb']:.0f} MB): "
        f"{result['speedup_read']:.1f}x faster to read, {result['speedup_import']:.1f}x "
        f"to import, {result['memory_ratio_read']:.2f}x the memory "
        f"(median of {REPEATS}, load average {result['load_average'][0]:.1f})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
