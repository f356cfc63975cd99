"""The whole ``backtest all`` grid on ColPret, against the 2-minute budget and unbatched fits.

Issue 5 asks the full grid (every family with 3+ sizes, every k, p, target fraction and fitting
choice) to finish in under 2 minutes on 2 cores, "the batched engine should make it far less".
This runs the grid as ``scalinglab backtest all`` does (2 worker processes) and, in the same
run, fits a subset of the scenarios one by one with the fitting engine (``fit_checkpoints``:
multi-start L-BFGS plus polishing, the same starts) to measure what batching buys.
"""

from __future__ import annotations

import os

# BLAS threads only contend on problems this small (and slow scipy's L-BFGS-B badly on a
# busy machine); set before numpy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record  # noqa: E402
from scalinglab.evaluation.backtest import (  # noqa: E402
    CHOICES,
    DEFAULT_MAX_PER_RUN,
    BacktestReport,
    backtest_all,
    backtest_family,
    starting_grid,
)
from scalinglab.evaluation.checkpoints import (  # noqa: E402
    GUIDE_MIN_TOKENS,
    fit_checkpoints,
    run_lengths,
    select_checkpoints,
)
from scalinglab.evaluation.families import load_families  # noqa: E402
from scalinglab.evaluation.metrics import are  # noqa: E402
from scalinglab.laws import get_law  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "colpret" / "colpret_checkpoints.csv.gz"
BUDGET_S = 120.0
WORKERS = 2
#: families whose default-choice scenarios are also fitted one by one (the unbatched peer)
PEER_FAMILIES = ("GPT2-c4-1.0", "OPT")


def unbatched(obs: pd.DataFrame, family: str) -> tuple[float, int, list[float]]:
    """Fit every default-choice scenario of a family separately; seconds, fits, |ΔARE|."""
    law = get_law("chinchilla")
    results = backtest_family(obs, family, choices={"default": CHOICES["default"]})
    rows = obs[obs["family"] == family]
    lengths = run_lengths(rows)
    start = time.perf_counter()
    n, diffs = 0, []
    for r in results:
        if r.error is not None:
            continue
        seen = [
            select_checkpoints(
                rows[rows["run_id"].isin(r.train_runs)],
                min_tokens=GUIDE_MIN_TOKENS,
                max_fraction=r.fraction,
                max_per_run=DEFAULT_MAX_PER_RUN,
                run_tokens=lengths,
            )
        ]
        if r.target_fraction > 0:
            seen.append(
                select_checkpoints(
                    rows[rows["run_id"] == r.target],
                    min_tokens=GUIDE_MIN_TOKENS,
                    max_fraction=r.target_fraction,
                    run_tokens=lengths,
                )
            )
        points = pd.concat(seen)
        fit = fit_checkpoints(
            points, law, grid=starting_grid(law, points["loss"].to_numpy(dtype=float))
        )
        target = rows[rows["run_id"] == r.target]
        test = target[target["tokens"] >= 0.7 * lengths[r.target]]
        diffs.append(abs(are(fit.predict(law.features(test)), test["loss"]) - r.are))
        n += 1
    return time.perf_counter() - start, n, diffs


def main() -> int:
    if not DATA.is_file():
        print(f"[backtest_grid] skipped: reference data not found at {DATA}")
        return 0
    start = time.perf_counter()
    obs = load_families(DATA, columns={"model_name": "run_id"}, perplexity="auto")
    loaded = time.perf_counter()
    report = backtest_all(obs, workers=WORKERS)
    grid_s = time.perf_counter() - start
    table = report.table()
    fitted = int(table["are"].notna().sum())

    # the unbatched peer: the same scenarios, one engine fit each
    peer_s, peer_n, diffs = 0.0, 0, []
    batched_s, batched_n = 0.0, 0
    for family in PEER_FAMILIES:
        t0 = time.perf_counter()
        res = backtest_family(obs, family, choices={"default": CHOICES["default"]})
        batched_s += time.perf_counter() - t0
        batched_n += sum(r.error is None for r in res)
        s, n, d = unbatched(obs, family)
        peer_s, peer_n = peer_s + s, peer_n + n
        diffs.extend(d)
    per_fit_batched = batched_s / batched_n
    per_fit_peer = peer_s / peer_n

    comparisons = {
        factor: {
            k: (None if not math.isfinite(v) else round(float(v), 4))
            for k, v in comp.loc["all"].items()
        }
        for factor, comp in report.comparisons().items()
    }
    gpt2 = BacktestReport([r for r in report.results if r.family == "GPT2-c4-1.0"]).best()
    top = gpt2.iloc[0]
    result = {
        "data": str(DATA.name),
        "workers": WORKERS,
        "cpu_count": os.cpu_count(),
        "load_s": round(loaded - start, 2),
        "grid_s": round(grid_s, 2),
        "budget_s": BUDGET_S,
        "grid_over_budget": round(grid_s / BUDGET_S, 3),
        "families": sorted({r.family for r in report.results}),
        "skipped": report.skipped,
        "results": len(table),
        "forecasts": fitted,
        "peer": "one fit_checkpoints (engine: multi-start L-BFGS + polish) per scenario",
        "peer_families": list(PEER_FAMILIES),
        "per_fit_batched_s": round(per_fit_batched, 4),
        "per_fit_unbatched_s": round(per_fit_peer, 4),
        "unbatched_over_batched": round(per_fit_peer / per_fit_batched, 2),
        "median_abs_are_difference": float(np.median(diffs)),
        "pooled_median_are": comparisons,
        "gpt2_c4_1_best": {
            "choice": str(gpt2.index[0]),
            "median_are": float(top["median_are"]),
            "median_are_last_loss": float(top["median_are_last_loss"]),
            "median_are_mean_last_5": float(top["median_are_mean_last_5"]),
        },
    }
    summary = (
        f"full ColPret grid ({len(result['families'])} families, {len(table)} results, "
        f"{fitted} forecasts) in {grid_s:.1f} s with {WORKERS} workers = "
        f"{grid_s / BUDGET_S:.2f}x the 120 s budget; batched fits "
        f"{per_fit_peer / per_fit_batched:.1f}x faster per scenario than one engine fit each "
        f"({per_fit_batched * 1e3:.0f} vs {per_fit_peer * 1e3:.0f} ms on "
        f"{', '.join(PEER_FAMILIES)}); "
        f"GPT2-c4-1.0 best '{gpt2.index[0]}' median ARE {top['median_are']:.3f} vs "
        f"baselines {top['median_are_last_loss']:.3f}/{top['median_are_mean_last_5']:.3f}"
    )
    record("backtest_grid", result, summary)
    return 0 if grid_s < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
