"""Forecast accuracy of the loss-curve laws on Luo et al.'s published curves (issue #14, 1–2).

Data: the 25M and 100M GPT curves of Luo et al. 2025 (``../shared/data/lr_schedules``), nine
schedules each, schedules rebuilt from the curve names.

1. **Two curves predict seven.** Fitted on ``constant_24000`` + ``cosine_24000`` of one size,
   each law predicts that size's other seven curves. Errors are relative, per curve the mean
   and the max over its points; reported are the mean over curves of the per-curve mean
   (Luo et al.'s PredE), the mean over curves of the per-curve max (their WorstE: their
   README's "max" is this average, not the largest error) and the largest error anywhere.
   Beside ours: the README figures, and Luo et al.'s published parameters evaluated here on
   the same points (with their code's warmup convention, ``warmup="both"``).
2. **Across sizes.** Fitted on all nine 25M curves plus the 100M ``constant_24000``, the law
   predicts the other eight 100M curves; and, with no 100M curve at all, the size-aware law.

Selection rule (stated before measuring, never using the test curves of the size reported):
two curves whose learning rate decays smoothly fix the backbone ``L0, A, α`` (the constant
curve) and the depth of the loss drop ``B`` (the cosine's), but not how the drop develops in
time and with training progress: the drop's shape ``C, β, γ, δ``. That shape is a property of
the recipe (Luo et al. find it the same from 25M to 400M parameters), so the default takes it
from a reference: here, for each size, the shape fitted on all nine curves of the *other*
size; in the package (``REFERENCE_SHAPE``), the mean of both, which this benchmark re-derives
and checks. No setting was chosen on the test curves of the size being reported.

Run: ``.venv/bin/python benchmarks/schedules_accuracy.py``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from _common import ROOT, record
from scalinglab.fitting import fit
from scalinglab.laws import get_law
from scalinglab.laws.base import Law
from scalinglab.laws.curve import (
    REFERENCE_SHAPE,
    SHAPE_PARAMETERS,
    MultiPowerLaw,
    curve_errors,
    default_curve_law,
)
from scalinglab.schedules.reference import luo2025_spec
from schedules_speed import LUO_PARAMS  # their published parameters (same README)

DATA = ROOT.parent / "shared" / "data" / "lr_schedules"
TRAIN = ("constant_24000", "cosine_24000")
SIZES = {25: 25e6, 100: 100e6}
#: Luo et al.'s README (thu-yao-01-luo/MultiPowerLaw): PredE and WorstE on the held-out curves
PUBLISHED = {25: (0.00110, 0.00409), 100: (0.00142, 0.00583)}
#: a shape fitted on curves with sudden drops may go below the default bound β >= 0.5
WIDE_BETA = {"beta": (0.05, 5.0)}


class Known:
    """Parameters of a law, shaped like a Fit for ``curve_errors``."""

    def __init__(self, law: Law, params: dict[str, float]) -> None:
        self.law = law
        self.params = params


def load_size(size: int) -> pd.DataFrame:
    frames = []
    for path in sorted((DATA / f"csv_{size}").glob("*.csv")):
        df = pd.read_csv(path)
        frames.append(
            df.assign(run_id=path.stem, schedule=luo2025_spec(path.stem), params=SIZES[size])
        )
    return pd.concat(frames, ignore_index=True)


def scores(errors: pd.DataFrame) -> dict[str, Any]:
    """Mean of per-curve means, mean of per-curve maxima, largest error; per curve too."""
    return {
        "mean": float(errors["mean_rel_error"].mean()),
        "mean_of_max": float(errors["max_rel_error"].mean()),
        "max": float(errors["max_rel_error"].max()),
        "per_curve": {
            r.run_id: {"mean": r.mean_rel_error, "max": r.max_rel_error}
            for r in errors.itertuples(index=False)
        },
    }


def timed_fit(table: pd.DataFrame, law: Law, **options: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fit(table, law, **options)
    return result, time.perf_counter() - start


def two_curves(data: dict[int, pd.DataFrame], shapes: dict[int, dict[str, float]]) -> dict:
    """Part 1: fit constant + cosine of each size, predict its other seven curves."""
    out: dict[str, Any] = {}
    progress = MultiPowerLaw(progress=True)
    default = default_curve_law()
    for size, table in data.items():
        train = table[table["run_id"].isin(TRAIN)]
        test = table[~table["run_id"].isin(TRAIN)]
        other = 125 - size
        cases: dict[str, Any] = {
            "published_readme": {"mean": PUBLISHED[size][0], "mean_of_max": PUBLISHED[size][1]},
            "published_params": scores(
                curve_errors(Known(get_law("multipower", warmup="both"), LUO_PARAMS[size]), test)
            ),
        }
        runs = {
            "annealing": (get_law("annealing"), {}),
            "multipower": (get_law("multipower"), {}),
            "multipower_progress_free": (progress, {}),
            f"ours (shape from {other}M)": (default, {"fixed": shapes[other]}),
            "default, packaged shape (in-sample)": (default, {"fixed": dict(REFERENCE_SHAPE)}),
        }
        for name, (law, options) in runs.items():
            result, seconds = timed_fit(train, law, **options)
            cases[name] = scores(curve_errors(result, test)) | {
                "params": result.params,
                "fit_s": seconds,
                "converged": result.converged,
            }
            print(
                f"{size}M {name}: mean {cases[name]['mean']:.3%}, mean of max "
                f"{cases[name]['mean_of_max']:.3%}, max {cases[name]['max']:.3%}",
                flush=True,
            )
        out[f"{size}M"] = cases
    return out


def across_sizes(data: dict[int, pd.DataFrame], shape_25: Any) -> dict[str, Any]:
    """Part 2: all 25M curves (+ the 100M constant curve) predict the other 100M curves."""
    small, large = (data[s].assign(run_id=f"{s}M/" + data[s]["run_id"]) for s in (25, 100))
    given = large[large["run_id"] == "100M/constant_24000"]
    test = large[large["run_id"] != "100M/constant_24000"]
    out: dict[str, Any] = {}
    # the shape and the drop's depth come from 25M; 100M's constant curve gives its backbone
    borrowed = {k: shape_25.params[k] for k in (*SHAPE_PARAMETERS, "B")}
    result, _ = timed_fit(given, default_curve_law(), fixed=borrowed)
    out["default law, shape and B from 25M"] = scores(curve_errors(result, test)) | {
        "params": result.params
    }
    size_law = get_law("annealing_size")
    both = pd.concat([small, given], ignore_index=True)
    result, _ = timed_fit(both, size_law)
    out["annealing_size, 25M + 100M constant"] = scores(curve_errors(result, test)) | {
        "params": result.params
    }
    # no curve of the target size: one model size cannot separate L0 from B·N^(−β)
    result, _ = timed_fit(small, size_law)
    out["annealing_size, 25M only"] = scores(curve_errors(result, large)) | {
        "params": result.params,
        "warnings": list(result.warnings),
    }
    out["default law 25M fit, no size term"] = scores(curve_errors(shape_25, large))
    for name, r in out.items():
        print(f"across sizes, {name}: mean {r['mean']:.3%}, max {r['max']:.3%}", flush=True)
    return out


def main() -> int:
    if not DATA.is_dir():
        print(f"no reference data at {DATA}: skipped")
        return 0
    data = {size: load_size(size) for size in SIZES}
    # the drop's shape of each size, from all nine of its curves
    shape_fits = {}
    shapes = {}
    for size, table in data.items():
        result, seconds = timed_fit(table, default_curve_law(), bounds=WIDE_BETA)
        shape_fits[size] = result
        shapes[size] = {k: result.params[k] for k in SHAPE_PARAMETERS}
        print(f"{size}M shape from nine curves ({seconds:.1f} s): {shapes[size]}", flush=True)
    derived = {
        k: float(np.exp(np.mean([np.log(s[k]) for s in shapes.values()])))
        if k == "C"
        else float(np.mean([s[k] for s in shapes.values()]))
        for k in SHAPE_PARAMETERS
    }
    result: dict[str, Any] = {
        "load_average": os.getloadavg(),
        "selection_rule": (
            "drop shape (C, beta, gamma, delta) from the other model size's nine curves; "
            "L0, A, alpha, B fitted on constant_24000 + cosine_24000"
        ),
        "shapes": {f"{s}M": v for s, v in shapes.items()},
        "reference_shape_packaged": dict(REFERENCE_SHAPE),
        "reference_shape_derived": derived,
        "two_curves": two_curves(data, shapes),
        "across_sizes": across_sizes(data, shape_fits[25]),
    }
    drift = max(abs(derived[k] / REFERENCE_SHAPE[k] - 1) for k in SHAPE_PARAMETERS)
    result["reference_shape_drift"] = drift
    parts = []
    for size in SIZES:
        cases = result["two_curves"][f"{size}M"]
        ours = cases[f"ours (shape from {125 - size}M)"]
        before = cases["multipower"]
        pub = cases["published_readme"]
        params = cases["published_params"]
        parts.append(
            f"{size}M, constant+cosine → 7 curves: mean/mean-of-max/max "
            f"{ours['mean']:.3%}/{ours['mean_of_max']:.3%}/{ours['max']:.3%} "
            f"(published {pub['mean']:.3%}/{pub['mean_of_max']:.3%}; their parameters here "
            f"{params['mean']:.3%}/{params['mean_of_max']:.3%}/{params['max']:.3%}; "
            f"before: multipower {before['mean']:.3%}/{before['mean_of_max']:.3%}/"
            f"{before['max']:.3%})"
        )
    across = result["across_sizes"]
    main_case = across["default law, shape and B from 25M"]
    no_target = across["annealing_size, 25M only"]
    parts.append(
        f"25M (9 curves) + 100M constant → 8 100M curves: mean {main_case['mean']:.3%}, max "
        f"{main_case['max']:.3%} (target ≤ 0.3% mean); no 100M curve (annealing_size): mean "
        f"{no_target['mean']:.3%}"
    )
    parts.append("rule: drop shape from the other size's curves")
    record("schedules_accuracy", result, "; ".join(parts))
    return 0 if drift < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
