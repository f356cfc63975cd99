"""Peak memory of a fit on a million rows: the engine evaluates starts × rows in bounded chunks.

Issue #19's target: ``scalinglab fit --search full`` (every one of Chinchilla's 3,125 starts)
on 1,000,000 rows stays under 4 GB, and so does a law without linear parameters (Kaplan's,
144 starts, no projection). Before chunking, the full search was killed by the kernel at
24.2 GB and Kaplan's needed more than 10 GB. Memory does not grow with iterations, so each fit
runs one optimiser iteration (``max_iter=1``); each case runs in a fresh process whose peak
resident set (``ru_maxrss``) is read when it ends, beside the same process's peak after only
building the table (the data's own share).

Run: ``python benchmarks/fit_memory.py [--rows 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

TARGET_BYTES = 4 * 2**30
CASES = (("chinchilla", "full"), ("kaplan", "fast"))


def _worker(law: str, search: str, rows: int) -> dict[str, Any]:
    import numpy as np

    from scalinglab.examples import isoflop_sweep
    from scalinglab.fitting import fit

    base = isoflop_sweep(noise=0.0)
    table = base.iloc[np.arange(rows) % len(base)].reset_index(drop=True)
    table["loss"] = table["loss"] * np.exp(np.random.default_rng(0).normal(0, 0.01, rows))
    table["run_id"] = np.arange(rows).astype(str)
    data_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    result = fit(table, law, search=search, max_iter=1)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "law": law,
        "search": search,
        "rows": rows,
        "starts": result.n_starts,
        "peak_rss_bytes": peak,
        "data_peak_rss_bytes": data_peak,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--worker", nargs=2, metavar=("LAW", "SEARCH"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.rows)))
        return 0
    results = []
    for law, search in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--rows", str(args.rows), "--worker", law, search],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    ok = all(r["peak_rss_bytes"] < TARGET_BYTES for r in results)
    summary = "; ".join(
        f"{r['law']} --search {r['search']} ({r['starts']:,} starts) on {r['rows']:,} rows: "
        f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB (the table alone "
        f"{r['data_peak_rss_bytes'] / 2**30:.2f} GiB), {r['seconds']:.0f} s for one iteration"
        for r in results
    )
    summary += f"; target < 4 GiB: {'yes' if ok else 'NO'}"
    record("fit_memory", {"cases": results, "target_bytes": TARGET_BYTES, "met": ok}, summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
