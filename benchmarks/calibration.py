"""Calibration: do scalinglab's intervals cover the truth as often as they say?

Three parts, each written to ``benchmarks/results/calibration.json`` and one line of
``docs/benchmarks.md``:

1. **Synthetic, known truth.** For each case (a compute law on final losses, the same runs
   with checkpoints, a curve law, a loss-to-loss law) ``--replicates`` data sets are drawn at a
   realistic design (5 model sizes × 3 budgets or schedules) with realistic noise: 1%
   lognormal per point plus a 0.5% per-run offset. Each is fitted with scalinglab's defaults
   (``bootstrap_kind="auto"``), and we count how often the nominal 50/80/95% intervals cover
   the true parameters (confidence intervals) and a new run's loss at 10× and 100× the largest
   fitted compute (prediction intervals; the confidence interval of the law's mean there is
   scored too). Goal: every coverage within ±5 points of nominal.
2. **Chinchilla.** Interval widths on Hoffmann et al.'s data (the 5 highest-loss points
   dropped) against Besiroglu et al.'s published 95% intervals. Goal: 0.75–1.33×.
3. **Real backtests** on ``../shared/data`` (skipped when absent): fit on the smaller models
   or the first schedules, forecast the rest; coverage of the 95% prediction interval and its
   mean width, beside the intervals scalinglab gave before (bootstrap refits warm-started at
   the point estimate, parameter uncertainty only).

Rules: nothing here is tuned on the numbers it reports. The synthetic truths are fixed before
the run; ``bootstrap_kind="auto"``'s threshold (``CASES_MIN_RUNS_PER_PARAMETER``) was set on the
synthetic designs alone; the real backtests only score.

Usage: ``python benchmarks/calibration.py [--replicates 200] [--bootstrap 200]
[--curve-bootstrap 100] [--real-bootstrap 100] [--workers 2]``. The parts run in ``--workers``
processes, side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record
from scalinglab.fitting import Fit, LawObjective, RobustLoss, bootstrap_fits, fit_law
from scalinglab.fitting.optimize import batched_lbfgs
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws import get_law
from scalinglab.laws.base import FloatArray, Law

SHARED = ROOT.parent / "shared" / "data"
LEVELS = (0.5, 0.8, 0.95)
#: noise of the synthetic data: per point, and per run (log scale, ≈ relative)
SD_POINT, SD_RUN = 0.01, 0.005
#: forecasts this many times the largest fitted compute
MULTIPLES = (10, 100)
#: Besiroglu et al. 2024's published 95% intervals on the Chinchilla data
BESIROGLU_CI = {
    "E": (1.769, 1.871),
    "A": (285.2, 743.6),
    "B": (1042.4, 5810.3),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}


Inputs = dict[str, FloatArray]


@dataclass
class Case:
    """A synthetic design: the law, its truth, the inputs, and how a data set is drawn."""

    name: str
    law: Law
    truth: dict[str, float]
    x: dict[str, FloatArray]
    groups: FloatArray  # run of each point
    forecasts: dict[int, dict[str, FloatArray]]  # multiple → inputs of the forecast point
    draw: Callable[[np.random.Generator], tuple[Inputs, FloatArray, dict[int, float]]]
    # draw → (inputs, observed losses, multiple → a new run's loss at the forecast point)


# -- synthetic designs -----------------------------------------------------------------------

SIZES = np.array([20e6, 50e6, 100e6, 200e6, 400e6])
TOKENS_PER_PARAM = np.array([5.0, 20.0, 80.0])
CHINCHILLA_TRUTH = {"E": 1.82, "A": 482.0, "alpha": 0.348, "B": 2085.0, "beta": 0.366}


def _runs_grid() -> tuple[FloatArray, FloatArray]:
    params = np.repeat(SIZES, TOKENS_PER_PARAM.size)
    return params, params * np.tile(TOKENS_PER_PARAM, SIZES.size)


def _compute_forecasts(params: FloatArray, tokens: FloatArray) -> dict[int, dict[str, FloatArray]]:
    """Points at 10× and 100× the largest run's compute, at 20 tokens per parameter."""
    largest = float(np.max(6.0 * params * tokens))
    out = {}
    for m in MULTIPLES:
        n = np.sqrt(m * largest / (6.0 * 20.0))
        out[m] = {"params": np.array([n]), "tokens": np.array([20.0 * n])}
    return out


def _new_run(mean: float, rng: np.random.Generator) -> float:
    """The loss a new run measures where the law says ``mean``."""
    return mean * float(np.exp(rng.normal(0, SD_RUN) + rng.normal(0, SD_POINT)))


def compute_case(checkpoints: Sequence[float]) -> Case:
    """The Chinchilla law at 5 sizes × 3 budgets, final losses or several checkpoints a run."""
    law = get_law("chinchilla")
    theta = law.theta_vector(CHINCHILLA_TRUTH)
    params, tokens = _runs_grid()
    fractions = np.asarray(checkpoints)
    run = np.repeat(np.arange(params.size), fractions.size)
    x = {
        "params": np.repeat(params, fractions.size),
        "tokens": np.repeat(tokens, fractions.size) * np.tile(fractions, params.size),
    }
    mean = law.predict(theta, x)
    forecasts = _compute_forecasts(params, tokens)
    truth_at = {m: float(law.predict(theta, f)[0]) for m, f in forecasts.items()}

    def draw(
        rng: np.random.Generator,
    ) -> tuple[Inputs, FloatArray, dict[int, float]]:
        offsets = rng.normal(0, SD_RUN, params.size)[run]
        y = mean * np.exp(offsets + rng.normal(0, SD_POINT, run.size))
        return x, y, {m: _new_run(v, rng) for m, v in truth_at.items()}

    name = "compute_final" if fractions.size == 1 else f"compute_{fractions.size}_checkpoints"
    return Case(name, law, dict(CHINCHILLA_TRUTH), x, run.astype(float), forecasts, draw)


#: the annealing-size law's truth: a 1.8-nat floor, ~0.5 nats from the learning-rate area and
#: ~0.3-0.9 nats from model size at these scales, a ~0.1-nat annealing drop
CURVE_TRUTH = {"L0": 1.8, "A": 0.55, "alpha": 0.5, "B": 250.0, "beta": 0.33, "C": 0.35}
CURVE_SCHEDULES = ("constant", "cosine", "wsd")
CURVE_STEPS, CURVE_EVERY, CURVE_WARMUP, CURVE_PEAK = 4000, 800, 200, 1e-3


def _schedule(kind: str, total: int) -> str:
    common = f"peak={CURVE_PEAK},warmup={CURVE_WARMUP},total={total}"
    if kind == "constant":
        return f"constant:{common}"
    if kind == "cosine":
        return f"cosine:{common},final={CURVE_PEAK / 10}"
    return f"wsd:{common},decay=0.2,final={CURVE_PEAK / 10}"


def curve_case() -> Case:
    """The annealing law with model size, 5 sizes × 3 schedules, a checkpoint every 500 steps."""
    law = get_law("annealing_size")
    theta = law.theta_vector(CURVE_TRUTH)
    steps = np.arange(CURVE_EVERY, CURVE_STEPS + 1, CURVE_EVERY)
    rows = [
        {
            "run_id": f"{n:g}-{kind}",
            "params": n,
            "step": s,
            "schedule": _schedule(kind, CURVE_STEPS),
        }
        for n in SIZES
        for kind in CURVE_SCHEDULES
        for s in steps
    ]
    table = pd.DataFrame(rows)
    x = law.features(table)
    run = pd.factorize(table["run_id"])[0]
    mean = law.predict(theta, x)
    forecasts = {}
    for m in MULTIPLES:
        # m× the compute of the largest run: m× the parameters, the same cosine schedule
        point = pd.DataFrame(
            {
                "run_id": ["forecast"],
                "params": [SIZES[-1] * m],
                "step": [CURVE_STEPS],
                "schedule": [_schedule("cosine", CURVE_STEPS)],
            }
        )
        forecasts[m] = law.features(point)
    truth_at = {m: float(law.predict(theta, f)[0]) for m, f in forecasts.items()}

    def draw(
        rng: np.random.Generator,
    ) -> tuple[Inputs, FloatArray, dict[int, float]]:
        offsets = rng.normal(0, SD_RUN, run.max() + 1)[run]
        y = mean * np.exp(offsets + rng.normal(0, SD_POINT, run.size))
        return x, y, {m: _new_run(v, rng) for m, v in truth_at.items()}

    return Case(
        "curve_annealing_size", law, dict(CURVE_TRUTH), x, run.astype(float), forecasts, draw
    )


#: the shifted power law between a code and a web corpus, in the range Brandfonbrener et al.
#: measured (κ ≈ 1.1, K ≈ 0.6)
TRANSFER_TRUTH = {"K": 0.65, "kappa": 1.1, "E_x": 1.6, "E_y": 0.9}


def transfer_case() -> Case:
    """Loss on y from loss on x (shifted power law) for 5 sizes × 3 budgets.

    Each run's loss on x is taken as measured (the design); its loss on y follows the law,
    times a run offset and a point's noise.
    """
    law = get_law("shifted_power")
    source = get_law("chinchilla")
    theta_x = source.theta_vector(CHINCHILLA_TRUTH)
    theta = law.theta_vector(TRANSFER_TRUTH)
    params, tokens = _runs_grid()
    x = {"loss_x": source.predict(theta_x, {"params": params, "tokens": tokens})}
    mean = law.predict(theta, x)
    forecasts = {
        m: {"loss_x": source.predict(theta_x, f)}
        for m, f in _compute_forecasts(params, tokens).items()
    }
    truth_at = {m: float(law.predict(theta, f)[0]) for m, f in forecasts.items()}
    runs = np.arange(params.size)

    def draw(rng: np.random.Generator) -> tuple[Inputs, FloatArray, dict[int, float]]:
        y = mean * np.exp(rng.normal(0, SD_RUN, runs.size) + rng.normal(0, SD_POINT, runs.size))
        return x, y, {m: _new_run(v, rng) for m, v in truth_at.items()}

    return Case(
        "transfer_shifted_power", law, dict(TRANSFER_TRUTH), x, runs.astype(float), forecasts, draw
    )


# -- scoring ---------------------------------------------------------------------------------


def _covers(lo: float, hi: float, value: float) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi) and lo <= value <= hi)


def score_synthetic(case: Case, replicates: int, n_boot: int, seed: int) -> dict[str, Any]:
    """Coverage of the case's intervals over ``replicates`` data sets."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    fits: list[Fit] = []
    losses: list[FloatArray] = []
    new_runs: list[dict[int, float]] = []
    designs: list[dict[str, FloatArray]] = []
    failed = 0
    for _ in range(replicates):
        x, y, new = case.draw(rng)
        try:
            fits.append(fit_law(case.law, x, y, groups=case.groups))
        except Exception:  # a data set the law cannot fit counts as not covered
            failed += 1
            continue
        losses.append(y)
        new_runs.append(new)
        designs.append(x)
    point_seconds = time.perf_counter() - started
    # the transfer case's inputs are noisy too (every data set has its own): bootstrap those
    # one by one; the others share one design and are bootstrapped in one batch
    started = time.perf_counter()
    same_design = all(all(np.array_equal(d[k], designs[0][k]) for k in d) for d in designs)
    if same_design:
        booted = bootstrap_fits(
            fits, designs[0], losses, n_boot, groups=case.groups, seeds=list(range(len(fits)))
        )
    else:
        booted = [
            bootstrap_fits([f], d, [y], n_boot, groups=case.groups, seeds=[i])[0]
            for i, (f, d, y) in enumerate(zip(fits, designs, losses, strict=True))
        ]
    boot_seconds = time.perf_counter() - started
    coverage: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for fit_result, new in zip(booted, new_runs, strict=True):
        for level in LEVELS:
            key = f"{level:.0%}"
            ci = fit_result.ci(level)
            for name, true_value in case.truth.items():
                counts.setdefault(name, {}).setdefault(key, 0)
                counts[name][key] += _covers(*ci[name], true_value)
            for m, point in case.forecasts.items():
                truth_mean = float(case.law.predict(case.law.theta_vector(case.truth), point)[0])
                conf = fit_result.predict_interval(point, level, kind="confidence")
                counts.setdefault(f"mean_{m}x", {}).setdefault(key, 0)
                counts[f"mean_{m}x"][key] += _covers(conf[0][0], conf[1][0], truth_mean)
                if fit_result.noise is None:
                    continue
                pred = fit_result.predict_interval(point, level, kind="prediction")
                counts.setdefault(f"new_run_{m}x", {}).setdefault(key, 0)
                counts[f"new_run_{m}x"][key] += _covers(pred[0][0], pred[1][0], new[m])
    total = len(booted) + failed
    for name, by_level in counts.items():
        coverage[name] = {k: 100.0 * v / total for k, v in by_level.items()}

    def worst_gap(names: Sequence[str]) -> float:
        return max(
            abs(cov - 100 * level)
            for name in names
            for level, cov in zip(LEVELS, coverage[name].values(), strict=True)
        )

    worst = worst_gap(list(coverage))
    forecast_worst = worst_gap([n for n in coverage if n not in case.truth])
    kinds = sorted({str(f.options.get("bootstrap_kind")) for f in booted})
    return {
        "case": case.name,
        "law": case.law.name,
        "replicates": total,
        "failed_fits": failed,
        "bootstrap": n_boot,
        "bootstrap_kind": kinds,
        "coverage_percent": coverage,
        "worst_gap_points": worst,
        "forecast_worst_gap_points": forecast_worst,
        "within_5_points": worst <= 5.0,
        "seconds": {"point_fits": point_seconds, "bootstraps": boot_seconds},
    }


# -- Chinchilla ------------------------------------------------------------------------------


def chinchilla_widths(n_boot: int) -> dict[str, Any] | None:
    """Our 95% interval widths on the Chinchilla data against Besiroglu et al.'s."""
    path = SHARED / "chinchilla" / "svg_extracted_data.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path)
    params = df["Model Size"].to_numpy(float)
    tokens = df["Training FLOP"].to_numpy(float) / (6 * params)
    loss = df["loss"].to_numpy(float)
    keep = np.argsort(loss)[:-5]
    law = get_law("chinchilla")
    x = {"params": params[keep], "tokens": tokens[keep]}
    result = fit_law(law, x, loss[keep], bootstrap=n_boot, seed=0)
    old = old_bootstrap(result, x, loss[keep], None, n_boot, seed=0)
    ours = result.ci()
    old_ci = {
        name: tuple(np.percentile(old[:, j], [2.5, 97.5])) for j, name in enumerate(law.param_names)
    }
    ratio = {
        name: (ours[name][1] - ours[name][0]) / (hi - lo) for name, (lo, hi) in BESIROGLU_CI.items()
    }
    old_ratio = {
        name: (old_ci[name][1] - old_ci[name][0]) / (hi - lo)
        for name, (lo, hi) in BESIROGLU_CI.items()
    }
    return {
        "bootstrap": n_boot,
        "bootstrap_kind": result.options["bootstrap_kind"],
        "ours": {k: list(v) for k, v in ours.items()},
        "published": {k: list(v) for k, v in BESIROGLU_CI.items()},
        "width_ratio": ratio,
        "old_width_ratio": old_ratio,
        "within_0.75_1.33": all(0.75 <= r <= 1.33 for r in ratio.values()),
    }


def old_bootstrap(
    result: Fit, x: Mapping[str, FloatArray], y: FloatArray, groups: Any, n_boot: int, seed: int
) -> FloatArray:
    """The intervals scalinglab gave before: case refits warm-started at the point estimate."""
    law = result.law
    opts = result.options
    pmap = ParameterMap.build(
        law,
        fixed=opts["fixed"],
        tie=opts["tie"],
        bounds={k: (v[0], v[1]) for k, v in opts["bounds"].items()},
    )
    codes = np.arange(y.size) if groups is None else pd.factorize(np.asarray(groups))[0]
    rng = np.random.default_rng(seed)
    n_groups = int(codes.max()) + 1
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_groups), draws.reshape(-1)), 1.0)
    objective = LawObjective(
        law,
        pmap,
        {k: np.asarray(v, float) for k, v in x.items()},
        np.log(y),
        counts[:, codes],
        RobustLoss(opts["loss"], opts["delta"], opts["overestimate_penalty"]),
    )
    z0 = np.repeat(pmap.z_from_theta(result.theta[None, :]), n_boot, axis=0)
    res = batched_lbfgs(objective, z0, pmap.lower, pmap.upper, merge_every=0)
    return pmap.theta(res.z)


# -- real backtests --------------------------------------------------------------------------

#: Luo et al.'s two training schedules; the other seven are forecast
LUO_TRAIN = ("constant_24000", "cosine_24000")


def luo_backtest(n_boot: int) -> dict[str, Any] | None:
    """The default curve law fitted on two schedules of Luo et al.'s models, the rest forecast.

    As ``scalinglab curve fit --bootstrap`` does: the default law and its reference shape, the
    bootstrap, and the noise widened by the law's error forecasting the end of its training
    curves (:func:`~scalinglab.evaluation.curve_forecast.with_forecast_noise`). Scores the
    95% prediction interval at every held-out point (every 128 steps of 7 schedules) and at
    each held-out run's final point, beside the old intervals.
    """
    folder = SHARED / "lr_schedules"
    if not folder.exists():
        return None
    from scalinglab.evaluation.curve_forecast import with_forecast_noise
    from scalinglab.fitting import fit
    from scalinglab.laws.curve import default_curve_law, reference_shape
    from scalinglab.schedules.reference import luo2025_spec

    out: dict[str, Any] = {}
    for size in (25, 100):
        frames = [
            pd.read_csv(path).assign(run_id=path.stem, schedule=luo2025_spec(path.stem))
            for path in sorted((folder / f"csv_{size}").glob("*.csv"))
        ]
        data = pd.concat(frames, ignore_index=True)
        train = data[data["run_id"].isin(LUO_TRAIN)]
        test = data[~data["run_id"].isin(LUO_TRAIN)]
        last = (test.groupby("run_id")["step"].transform("max") == test["step"]).to_numpy()
        law = default_curve_law()
        options = {"fixed": reference_shape(law) or None}
        result = with_forecast_noise(fit(train, law, bootstrap=n_boot, **options), train, **options)
        x_test = law.features(test)
        y = test["loss"].to_numpy(float)
        lo, hi = result.predict_interval(x_test, 0.95, kind="prediction")
        x_train = law.features(train)
        old = old_bootstrap(
            result, x_train, train["loss"].to_numpy(float), train["run_id"].to_numpy(), n_boot, 0
        )
        old_lo, old_hi = np.nanpercentile(np.exp(law.log_predict(old, x_test)), [2.5, 97.5], 0)
        inside = (lo <= y) & (y <= hi)
        old_inside = (old_lo <= y) & (y <= old_hi)
        assert result.noise is not None
        out[f"{size}M"] = {
            "law": law.name,
            "law_config": law.config(),
            "bootstrap_kind": result.options["bootstrap_kind"],
            "noise_sd_percent": 100 * result.noise.sd_log,
            "noise_source": result.noise.source,
            "points": int(y.size),
            "coverage_95_percent": 100 * float(np.mean(inside)),
            "final_point_coverage_95_percent": 100 * float(np.mean(inside[last])),
            "mean_width_percent": 100 * float(np.mean((hi - lo) / y)),
            "old_coverage_95_percent": 100 * float(np.mean(old_inside)),
            "old_mean_width_percent": 100 * float(np.mean((old_hi - old_lo) / y)),
            "mean_abs_error_percent": 100 * float(np.mean(np.abs(result.predict(x_test) / y - 1))),
        }
    return out


def colpret_backtest(n_boot: int) -> dict[str, Any] | None:
    """Every ColPret family with 3+ sizes: fit on the smaller models, forecast the largest.

    The Chinchilla law is fitted with the defaults (every checkpoint after 10% of each run,
    the guide's practice, grouped by run) and scored by whether the 95% prediction interval
    holds each of the largest model's checkpoints after 10% of its run.
    """
    path = SHARED / "colpret" / "colpret_checkpoints.csv.gz"
    if not path.exists():
        return None
    from scalinglab.evaluation.families import load_families

    table = load_families(path, columns={"model_name": "run_id"}, perplexity="auto")
    law = get_law("chinchilla")
    families: dict[str, Any] = {}
    for name, fam in table.groupby("family"):
        fam = fam[fam["tokens"] >= 0.1 * fam.groupby("run_id")["tokens"].transform("max")]
        largest = fam["params"] == fam["params"].max()
        train, test = fam[~largest], fam[largest]
        groups = train["run_id"].to_numpy()
        x = {"params": train["params"].to_numpy(float), "tokens": train["tokens"].to_numpy(float)}
        y_train = train["loss"].to_numpy(float)
        try:
            result = fit_law(law, x, y_train, groups=groups, bootstrap=n_boot)
        except Exception as err:  # a family the law cannot fit is reported, not scored
            families[str(name)] = {"skipped": str(err)}
            continue
        x_test = {k: test[k].to_numpy(float) for k in ("params", "tokens")}
        y = test["loss"].to_numpy(float)
        entry: dict[str, Any] = {
            "runs_fitted": int(train["run_id"].nunique()),
            "points_scored": int(y.size),
            "bootstrap_kind": result.options["bootstrap_kind"],
            "flags": [d.code for d in result.diagnostics],
        }
        old = old_bootstrap(result, x, y_train, groups, n_boot, seed=0)
        old_pred = np.exp(law.log_predict(old, x_test))
        old_lo, old_hi = np.nanpercentile(old_pred, [2.5, 97.5], axis=0)
        entry["old_coverage_95_percent"] = 100 * float(np.mean((old_lo <= y) & (y <= old_hi)))
        entry["old_mean_width_percent"] = 100 * float(np.mean((old_hi - old_lo) / y))
        if result.noise is not None:
            lo, hi = result.predict_interval(x_test, 0.95, kind="prediction")
            entry["coverage_95_percent"] = 100 * float(np.mean((lo <= y) & (y <= hi)))
            entry["mean_width_percent"] = 100 * float(np.mean((hi - lo) / y))
        entry["mean_abs_error_percent"] = 100 * float(
            np.mean(np.abs(result.predict(x_test) / y - 1))
        )
        families[str(name)] = entry
    scored = [f for f in families.values() if "coverage_95_percent" in f]
    return {
        "families": families,
        "families_scored": len(scored),
        "mean_coverage_95_percent": float(np.mean([f["coverage_95_percent"] for f in scored])),
        "mean_width_percent": float(np.mean([f["mean_width_percent"] for f in scored])),
        "old_mean_coverage_95_percent": float(
            np.mean([f["old_coverage_95_percent"] for f in scored])
        ),
        "old_mean_width_percent": float(np.mean([f["old_mean_width_percent"] for f in scored])),
    }


# -- main ------------------------------------------------------------------------------------


#: seconds of each part at the defaults (a run alone on 2 cores), to start the longest first
PART_SECONDS = {
    "curve": 410.0,
    "colpret": 250.0,
    "transfer": 125.0,
    "compute_final": 90.0,
    "luo_curves": 60.0,
    "compute_checkpoints": 60.0,
    "chinchilla": 6.0,
}


def _part(name: str, replicates: int, n_boot: int, seed: int) -> tuple[str, Any]:
    """One part of the benchmark (run in a worker process)."""
    makers: dict[str, Callable[[], Case]] = {
        "compute_final": lambda: compute_case([1.0]),
        "compute_checkpoints": lambda: compute_case([0.25, 0.5, 0.75, 1.0]),
        "curve": curve_case,
        "transfer": transfer_case,
    }
    if name in makers:
        return name, score_synthetic(makers[name](), replicates, n_boot, seed)
    if name == "chinchilla":
        return name, chinchilla_widths(4000)
    if name == "luo_curves":
        return name, luo_backtest(n_boot)
    return name, colpret_backtest(n_boot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument(
        "--curve-bootstrap",
        type=int,
        default=100,
        help="bootstrap refits per data set of the curve case (its refits cost ~5× the others)",
    )
    parser.add_argument(
        "--real-bootstrap",
        type=int,
        default=100,
        help="bootstrap refits per fit of the real backtests (each scores one fit, not 200)",
    )
    parser.add_argument("--cases", default="compute_final,compute_checkpoints,curve,transfer")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cases = args.cases.split(",")
    # the parts are independent: one process each, the longest first
    jobs = [
        (
            name,
            args.replicates,
            args.curve_bootstrap if name == "curve" else args.bootstrap,
            args.seed + i,
        )
        for i, name in enumerate(cases)
    ] + [(name, 0, args.real_bootstrap, 0) for name in ("luo_curves", "colpret", "chinchilla")]
    jobs.sort(key=lambda job: -PART_SECONDS.get(job[0], 0.0))
    done: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(_part, *job) for job in jobs]
        for future in as_completed(futures):
            name, result = future.result()
            done[name] = result
            print(name, "done", f"{time.perf_counter() - started:.0f} s", flush=True)
    synthetic = [done[name] for name in cases]
    chinchilla = done["chinchilla"]
    real = {"luo_curves": done["luo_curves"], "colpret": done["colpret"]}
    elapsed = time.perf_counter() - started
    summary = "; ".join(
        f"{r['case']} ({r['replicates']} data sets, {r['bootstrap_kind'][0]} bootstrap "
        f"B={r['bootstrap']}): worst coverage gap {r['worst_gap_points']:.1f} points "
        f"(forecasts {r['forecast_worst_gap_points']:.1f})"
        for r in synthetic
    )
    if chinchilla:
        summary += "; Chinchilla 95% widths / Besiroglu et al.: " + ", ".join(
            f"{k} {v:.2f}× (old {chinchilla['old_width_ratio'][k]:.2f}×)"
            for k, v in chinchilla["width_ratio"].items()
        )
    if real["luo_curves"]:
        summary += (
            "; Luo et al. curves, 95% prediction intervals on 7 held-out schedules: "
            + ", ".join(
                f"{k} coverage {v['coverage_95_percent']:.0f}% "
                f"(old {v['old_coverage_95_percent']:.0f}%), "
                f"width {v['mean_width_percent']:.2f}% (old {v['old_mean_width_percent']:.2f}%)"
                for k, v in real["luo_curves"].items()
            )
        )
    if real["colpret"]:
        c = real["colpret"]
        summary += (
            f"; ColPret, {c['families_scored']} families, 95% prediction intervals for the "
            f"largest model: coverage {c['mean_coverage_95_percent']:.0f}% "
            f"(old {c['old_mean_coverage_95_percent']:.0f}%), width "
            f"{c['mean_width_percent']:.1f}% (old {c['old_mean_width_percent']:.1f}%)"
        )
    summary += f"; {elapsed:.0f} s"
    record(
        "calibration",
        {"synthetic": synthetic, "chinchilla": chinchilla, "real": real, "seconds": elapsed},
        summary,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
