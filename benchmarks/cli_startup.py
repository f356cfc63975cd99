"""Startup time of the command line against ``python -c "import pandas"``.

Target (issue #17): ``scalinglab --help`` and ``scalinglab laws`` start in 0.6 s or less on
the project's 2-core machine. Absolute times swing with what else runs on the machine, so
every command is timed in alternation with the peer, ``python -c "import pandas"`` (what any
pandas-based tool pays before doing anything), and the median ratio is the number to compare
across runs. The load average is recorded with the result: absolute times measured under load
should be re-run on a quiet machine.

Rule: the median of ``--repeats`` runs of each command (default 15), interleaved, after one
warm-up run each (so that the file cache holds the modules), wall time of the whole process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import record

TARGET_S = 0.6
BIN = Path(sys.executable).parent


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    scalinglab = str(BIN / "scalinglab")
    commands = {
        "import pandas (peer)": [sys.executable, "-c", "import pandas"],
        "scalinglab --help": [scalinglab, "--help"],
        "scalinglab laws": [scalinglab, "laws"],
        "scalinglab laws --json": [scalinglab, "laws", "--json"],
        "scalinglab --version": [scalinglab, "--version"],
    }
    load_before = os.getloadavg()
    for argv in commands.values():
        _time(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(_time(argv))
    load_after = os.getloadavg()
    median = {name: statistics.median(t) for name, t in times.items()}
    peer = median["import pandas (peer)"]
    ratio = {name: m / peer for name, m in median.items()}
    loaded = max(load_before[0], load_after[0]) > 1.0
    result = {
        "repeats": args.repeats,
        "median_s": median,
        "ratio_to_import_pandas": ratio,
        "all_s": times,
        "target_s": TARGET_S,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "quiet_machine": not loaded,
    }
    parts = [f"{name} {median[name]:.3f} s ({ratio[name]:.2f}x)" for name in commands]
    verdict = ", ".join(
        f"{name} {'meets' if median[name] <= TARGET_S else 'misses'} {TARGET_S} s"
        for name in ("scalinglab --help", "scalinglab laws")
    )
    summary = (
        f'median of {args.repeats}, wall time, ratio to `python -c "import pandas"`: '
        + "; ".join(parts)
        + f"; {verdict}; load average {load_before[0]:.1f} → {load_after[0]:.1f}"
        + (" (loaded machine: re-run quietly for absolute times)" if loaded else "")
    )
    record("cli_startup", result, summary)


if __name__ == "__main__":
    main()
