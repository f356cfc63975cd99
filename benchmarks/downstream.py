"""Over-training and downstream forecasts on Gadre et al. 2024's testbed (98 models).

Split, inside the shared data, per training corpus (C4, RedPajama, RefinedWeb): fit on the
models of at most 0.411B parameters trained at up to M = 160 tokens per parameter; forecast
the 1.4B runs (M = 20) and the heavily over-trained runs (M = 320 and 640) of the smaller
sizes (26 targets in all). The split is read as "all M that are not themselves targets":
the M >= 320 runs are forecast, so they are not fitted on.

A second split fits the models of at most 0.411B at every M (5 to 640) and forecasts the
three 1.4B runs only.

Measured:

1. Loss ARE on each of the eight validation sets. Ours: the loss law (Gadre et al.'s
   over-training law or Chinchilla along fixed M) and the shortest runs it is fitted on
   (every run, M >= 10 or M >= 20), both chosen per corpus and set by cross-validation
   inside the training split (hold out its largest size; hold out its two largest M), then
   fitted by the engine with 200 exploring bootstrap refits; 95% prediction intervals as
   ``downstream predict`` gives them (run-to-run noise widened to the scatter of the split's
   own backtest), and the engine's plain ``predict_interval(kind="prediction")`` beside them.
2. ARE of the 17-task average top-1 error, two steps (compute → C4-eval loss → error), the
   downstream form chosen by the training split's own backtest (fit on its smaller-compute
   runs, forecast its largest quarter); intervals propagate the loss law's replicates.
3. The peer: Gadre et al.'s fitting procedure as published in mlfoundations/scaling
   (``scaling/laws.py``, ``scaling/shared.py``), reimplemented: scipy ``curve_fit`` (least
   squares on the loss itself) of ``L = α·N^b + β·6^(b/2)·(M·N)^b + E`` from 128 starting
   points (α, β ∈ {1e2, 3e2, 1e3, 3e3}, b ∈ {−0.1, −0.3}, E ∈ {0, 1, 2, 10}), keeping the
   lowest residual; then ``curve_fit`` of ``Err = E − a·exp(−b·L)`` from its default start.
   Run twice: on the same training runs as ours, and on the paper's own choice of runs
   (the four sizes at M = 20 plus the smallest size at its largest M, here 160).
4. Per-task verdicts (predictable, near chance, non-monotone, too noisy) from the training
   split alone, and how the verdict held on the targets.
5. Time of the point fits of every law on this data.
6. The loss targets' noise floor, context and not a forecast: per validation set, the scatter
   of a single run's loss around its own model size's curve. Each size of at most 0.411B
   (six runs at M = 20 to 640 per corpus) gets the engine's ``tokens_only`` law
   ``E + B/D^β`` fitted by least squares in log loss to all its runs, targets included; the
   relative noise sd σ pools the residuals over sizes and corpora (n − 3 degrees of freedom
   per size), and σ·√(2/π) is the mean absolute relative error that even a forecast knowing
   every size's true curve would make on Gaussian noise of that size. M = 5 and 10 are left
   out: their warmup takes a large share of the run (a quarter to all of it at 0.411B).

Every setting is chosen inside the training split; the targets are only scored.
Run: ``.venv/bin/python benchmarks/downstream.py``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record
from scalinglab.evaluation.downstream import (
    FORMS,
    LOSS_LAWS,
    choose_loss_settings,
    fit_downstream,
)
from scalinglab.evaluation.downstream_backtest import backtest_downstream
from scalinglab.evaluation.downstream_data import DownstreamTable, load_downstream
from scalinglab.fitting import fit_law
from scalinglab.laws import get_law
from scalinglab.laws.overtraining import overtraining_features

DATA = ROOT.parent / "shared" / "data" / "downstream"
CORPORA = ("c4", "rpj", "rw")
#: the loss the paper forecasts error from (its default), used by both methods
ERROR_LOSS = "loss_c4_val"
AVERAGE = "avg17"
BOOTSTRAP = 200
LEVEL = 0.95


@dataclass(frozen=True)
class Split:
    """Which runs are fitted and which forecast."""

    name: str
    max_train_multiplier: float  # models <= 0.411B at M up to this are fitted
    over_trained_targets: bool  # the M >= 320 runs of the smaller sizes are targets too

    def train(self, runs: pd.DataFrame) -> np.ndarray:
        return (
            (runs["params"] < 1e9) & (runs["multiplier"] <= self.max_train_multiplier)
        ).to_numpy()

    def target(self, runs: pd.DataFrame) -> np.ndarray:
        big = runs["params"] > 1e9
        if self.over_trained_targets:
            big |= runs["multiplier"] >= 320
        return big.to_numpy()


#: the issue's split: fit <= 0.411B at M <= 160, forecast the 1.4B runs and every M >= 320 run
PRIMARY = Split("primary", 160.0, True)
#: fit <= 0.411B at every M (5 to 640), forecast the three 1.4B runs only
ALL_M = Split("all_m_to_1.4b", 640.0, False)


def load(corpus: str, loss: str) -> DownstreamTable:
    return load_downstream(
        DATA / "evals.csv",
        runs=DATA / "models.csv",
        loss=loss,
        columns={"train_dataset": "family"},
        family=corpus,
    )


# -- the peer: Gadre et al.'s procedure --------------------------------------------------------


def gadre_loss_law(
    x: tuple[np.ndarray, np.ndarray], alpha: float, beta: float, b: float, e: float
) -> np.ndarray:
    n, m = x
    return alpha * np.power(n, b) + beta * np.power(6.0, b / 2) * np.power(m * n, b) + e


def gadre_fit_loss(params: np.ndarray, mult: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Their multi-start ``curve_fit``: the start with the lowest residual RMS wins."""
    best, best_rms = None, np.inf
    for a0 in (1e2, 3e2, 1e3, 3e3):
        for b0 in (1e2, 3e2, 1e3, 3e3):
            for c0 in (-0.1, -0.3):
                for e0 in (0.0, 1.0, 2.0, 10.0):
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", OptimizeWarning)
                            warnings.simplefilter("ignore", RuntimeWarning)
                            popt, _ = curve_fit(
                                gadre_loss_law,
                                (params, mult),
                                loss,
                                p0=[a0, b0, c0, e0],
                                maxfev=10000,
                            )
                    except RuntimeError:  # no convergence from this start
                        continue
                    residual = loss - gadre_loss_law((params, mult), *popt)
                    rms = float(np.sqrt(np.sum(residual**2) / (residual.size - 2)))
                    if rms < best_rms:
                        best, best_rms = popt, rms
    if best is None:
        raise RuntimeError("no start of the peer's loss fit converged")
    return np.asarray(best)


def gadre_error_law(loss: np.ndarray, a: float, b: float, e: float) -> np.ndarray:
    return e - a * np.exp(-b * loss)


def gadre_fit_error(loss: np.ndarray, error: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        popt, _ = curve_fit(gadre_error_law, loss, error, maxfev=10000)
    return np.asarray(popt)


def paper_runs(runs: pd.DataFrame, split: Split) -> np.ndarray:
    """The paper's choice within the training split: every size at M = 20, and the smallest
    size at M = 320 or, where that is a target, at its largest fitted M."""
    fitted = split.train(runs)
    train = runs[fitted]
    smallest = train["params"].min()
    top_m = min(320.0, train.loc[train["params"] == smallest, "multiplier"].max())
    pick = (runs["multiplier"] == 20) | (
        (runs["params"] == smallest) & (runs["multiplier"] == top_m)
    )
    return pick.to_numpy() & fitted


@functools.cache
def peer_forecasts(
    corpus: str, loss: str, split: Split
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The peer's two steps on both choices of runs: name → (loss, 17-task error) forecasts
    of the split's targets (the C4-eval fits serve both the loss and the error measurement)."""
    table = load(corpus, loss)
    runs = table.runs
    held = runs[split.target(runs)]
    out = {}
    for name, pick in (("same_runs", split.train(runs)), ("paper_runs", paper_runs(runs, split))):
        rows = runs[pick]
        popt = gadre_fit_loss(
            rows["params"].to_numpy(float),
            rows["multiplier"].to_numpy(float),
            rows["loss"].to_numpy(float),
        )
        loss_hat = gadre_loss_law(
            (held["params"].to_numpy(float), held["multiplier"].to_numpy(float)), *popt
        )
        err_fit = gadre_fit_error(
            rows["loss"].to_numpy(float), table.error(AVERAGE).loc[rows.index].to_numpy(float)
        )
        out[name] = (loss_hat, gadre_error_law(loss_hat, *err_fit))
    return out


# -- measurement ---------------------------------------------------------------------------------


def are(predicted: np.ndarray, observed: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - observed) / observed))


def loss_forecasts(corpus: str, loss: str, split: Split) -> dict[str, Any]:
    table = load(corpus, loss)
    runs = table.runs
    train_ids = list(runs.index[split.train(runs)])
    target_ids = list(runs.index[split.target(runs)])
    train = table.subset(train_ids)
    law, min_m, scores = choose_loss_settings(train)
    fit = fit_downstream(
        train,
        forms=("exp",),
        targets=[AVERAGE],
        loss_law=law,
        min_multiplier=min_m,
        bootstrap=BOOTSTRAP,
    )
    held = runs.loc[target_ids]
    x_held = overtraining_features(held)
    samples = fit.predict_loss_samples(x_held["flops"], x_held["multiplier"], "prediction", seed=1)
    assert fit.loss_fit is not None
    predicted = fit.loss_fit.predict(x_held)
    tail = 50 * (1 - LEVEL)
    low, high = np.percentile(samples, tail, axis=0), np.percentile(samples, 100 - tail, axis=0)
    # the engine's own prediction interval (in-sample run-to-run noise only), for comparison
    engine_low, engine_high = fit.loss_fit.predict_interval(x_held, LEVEL, kind="prediction")
    observed = held["loss"].to_numpy(float)
    # context, not a forecast: the same law fitted on training runs and targets together
    both = runs.loc[train_ids + target_ids]
    both = both[both["multiplier"] >= (min_m or 0.0)]
    in_sample = fit_law(get_law(law), overtraining_features(both), both["loss"].to_numpy(float))
    floor = in_sample.predict(x_held)
    peer = {
        name: are(loss_hat, observed)
        for name, (loss_hat, _) in peer_forecasts(corpus, loss, split).items()
    }
    return {
        "corpus": corpus,
        "loss": loss,
        "law": law,
        "min_multiplier": min_m,
        "cv": scores,
        "are": are(predicted, observed),
        "in_sample_are": are(floor, observed),
        "coverage": float(np.mean((observed >= low) & (observed <= high))),
        "relative_width": float(np.mean((high - low) / predicted)),
        "engine_coverage": float(np.mean((observed >= engine_low) & (observed <= engine_high))),
        "engine_relative_width": float(np.mean((engine_high - engine_low) / predicted)),
        "peer_are": peer,
        "per_run": [
            {
                "run_id": r,
                "observed": float(o),
                "predicted": float(p),
                "low": float(lo),
                "high": float(hi),
            }
            for r, o, p, lo, hi in zip(target_ids, observed, predicted, low, high, strict=True)
        ],
    }


def noise_floor(models: pd.DataFrame, loss: str) -> dict[str, float]:
    """Relative run-to-run scatter of ``loss`` around each model size's own curve."""
    rows = models[(models["params"] < 1e9) & (models["multiplier"] >= 20)]
    squares, dof = 0.0, 0
    for _, size in rows.groupby(["train_dataset", "params"]):
        tokens = size["tokens"].to_numpy(float)
        observed = size[loss].to_numpy(float)
        fit = fit_law(get_law("tokens_only"), {"tokens": tokens}, observed, loss="squares")
        squares += float(np.sum(np.log(observed / fit.predict({"tokens": tokens})) ** 2))
        dof += observed.size - len(fit.law.parameters())
    sigma = float(np.sqrt(squares / dof))
    return {"relative_sd": sigma, "expected_are": sigma * float(np.sqrt(2 / np.pi)), "dof": dof}


def error_forecasts(corpus: str, split: Split, targets: list[str] | None = None) -> dict[str, Any]:
    table = load(corpus, ERROR_LOSS)
    runs = table.runs
    train_ids = list(runs.index[split.train(runs)])
    target_ids = list(runs.index[split.target(runs)])
    train = table.subset(train_ids)
    law, min_m, _ = choose_loss_settings(train)
    start = time.perf_counter()
    backtest = backtest_downstream(
        table,
        train_ids,
        target_ids,
        level=LEVEL,
        loss_law=law,
        min_multiplier=min_m,
        bootstrap=BOOTSTRAP,
        targets=targets,
    )
    seconds = time.perf_counter() - start
    fit = backtest.fit
    verdicts = {t: v.status for t, v in fit.verdicts.items()}
    forecasts = backtest.forecasts
    avg = forecasts[(forecasts["target"] == AVERAGE) & forecasts["selected"]]
    inside = (avg["observed"] >= avg["low"]) & (avg["observed"] <= avg["high"])
    by_form = {form: backtest.are(AVERAGE, form) for form in FORMS}
    # how the verdicts held on the targets: absolute error of the selected form
    tasks = forecasts[forecasts["selected"] & (forecasts["target"] != AVERAGE)]
    tasks = tasks.assign(abs_error=(tasks["predicted"] - tasks["observed"]).abs())
    held_mae = tasks.groupby("status")["abs_error"].mean().to_dict()
    observed = table.error(AVERAGE).loc[target_ids].to_numpy(float)
    peer = {
        name: are(error_hat, observed)
        for name, (_, error_hat) in peer_forecasts(corpus, ERROR_LOSS, split).items()
    }
    return {
        "corpus": corpus,
        "loss_law": law,
        "min_multiplier": min_m,
        "form": fit.selected_form(AVERAGE),
        "verdict": fit.verdicts[AVERAGE].message,
        "are": backtest.are(AVERAGE),
        "are_by_form": by_form,
        "coverage": float(inside.mean()),
        "relative_width": float(np.mean((avg["high"] - avg["low"]) / avg["predicted"])),
        "peer_are": peer,
        "verdicts": verdicts,
        "target_mae_by_verdict": {str(k): float(v) for k, v in held_mae.items()},
        "seconds_fit_assess_bootstrap": seconds,
    }


def fit_times(models: pd.DataFrame) -> dict[str, float]:
    """Point fits of every law on the training split: loss laws on 8 sets x 3 corpora, the
    three downstream forms on the 17-task average and on all 46 tasks x 3 corpora."""
    times = {name: 0.0 for name in (*LOSS_LAWS, *FORMS.values())}
    times_tasks = {name: 0.0 for name in FORMS.values()}
    sets = [c for c in models.columns if c.startswith("loss_")]
    for corpus in CORPORA:
        table = load(corpus, ERROR_LOSS)
        runs = table.runs[PRIMARY.train(table.runs)]
        rows = models.set_index("run_id").loc[runs.index]
        x_loss = overtraining_features(runs)
        for law in LOSS_LAWS:
            for s in sets:
                t0 = time.perf_counter()
                fit_law(get_law(law), x_loss, rows[s].to_numpy(float))
                times[law] += time.perf_counter() - t0
        for target in table.targets:
            y = table.error(target).loc[runs.index].to_numpy(float)
            chance = table.chance_error(target)
            for form, law in FORMS.items():
                x = (
                    {"flops": x_loss["flops"]}
                    if form == "compute"
                    else {"loss": runs["loss"].to_numpy(float)}
                )
                fixed = {"chance": chance} if form != "exp" and chance is not None else None
                t0 = time.perf_counter()
                fit_law(get_law(law), x, np.maximum(y, 1e-3), fixed=fixed, loss="squares")
                spent = time.perf_counter() - t0
                (times if target == AVERAGE else times_tasks)[law] += spent
    return {
        **{f"{k}_s": v for k, v in times.items()},
        "all_laws_s": sum(times.values()),
        **{f"{k}_46_tasks_s": v for k, v in times_tasks.items()},
    }


def summarise_loss(results: list[dict[str, Any]], sets: list[str]) -> dict[str, dict[str, float]]:
    """Per validation set, target-weighted over the corpora."""
    per_set = {}
    for name in sets:
        rows = [r for r in results if r["loss"] == name]
        n = [len(r["per_run"]) for r in rows]
        per_set[name] = {
            key: float(np.average([get(r) for r in rows], weights=n))
            for key, get in (
                ("are", lambda r: r["are"]),
                ("in_sample_are", lambda r: r["in_sample_are"]),
                ("coverage", lambda r: r["coverage"]),
                ("relative_width", lambda r: r["relative_width"]),
                ("engine_coverage", lambda r: r["engine_coverage"]),
                ("engine_relative_width", lambda r: r["engine_relative_width"]),
                ("peer_same_runs", lambda r: r["peer_are"]["same_runs"]),
                ("peer_paper_runs", lambda r: r["peer_are"]["paper_runs"]),
            )
        }
    return per_set


def summarise_error(results: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over the corpora (each forecasts the same number of targets)."""
    return {
        "are": float(np.mean([r["are"] for r in results])),
        "coverage": float(np.mean([r["coverage"] for r in results])),
        "relative_width": float(np.mean([r["relative_width"] for r in results])),
        "peer_same_runs": float(np.mean([r["peer_are"]["same_runs"] for r in results])),
        "peer_paper_runs": float(np.mean([r["peer_are"]["paper_runs"] for r in results])),
    }


def main() -> int:
    if not DATA.is_dir():
        print(f"reference data not found at {DATA}; nothing measured")
        return 0
    start = time.perf_counter()
    models = pd.read_csv(DATA / "models.csv")
    sets = [c for c in models.columns if c.startswith("loss_")]
    splits: dict[str, Any] = {}
    for split in (PRIMARY, ALL_M):
        loss_results = [loss_forecasts(c, s, split) for s in sets for c in CORPORA]
        # the primary split assesses every task (verdicts); the other forecasts the average
        targets = None if split is PRIMARY else [AVERAGE]
        error_results = [error_forecasts(c, split, targets) for c in CORPORA]
        splits[split.name] = {
            "loss_are_per_set": summarise_loss(loss_results, sets),
            "avg17_error": summarise_error(error_results),
            "loss_details": loss_results,
            "error_details": error_results,
        }
    times = fit_times(models)
    floors = {name: noise_floor(models, name) for name in sets}
    result = {
        "data": "downstream/ (Gadre et al. 2024, 98 models)",
        "splits": {
            PRIMARY.name: "fit <= 0.411B at M <= 160 per corpus; forecast the 1.4B runs and every "
            "M >= 320 run (26 targets)",
            ALL_M.name: "fit <= 0.411B at every M; forecast the 1.4B runs (3 targets)",
        },
        "bootstrap": BOOTSTRAP,
        "level": LEVEL,
        **splits,
        "noise_floor": floors,
        "fit_times": times,
        "load_average": os.getloadavg(),
        "seconds_total": time.perf_counter() - start,
    }
    primary, all_m = splits[PRIMARY.name], splits[ALL_M.name]
    per_set, avg = primary["loss_are_per_set"], primary["avg17_error"]
    c4 = per_set[ERROR_LOSS]

    def mean(key: str) -> float:
        return 100 * float(np.mean([v[key] for v in per_set.values()]))

    summary = (
        f"26 targets (1.4B, M>=320) from <=0.411B, M<=160: loss ARE c4_val "
        f"{100 * c4['are']:.2f}% (peer {100 * c4['peer_same_runs']:.2f}% same runs / "
        f"{100 * c4['peer_paper_runs']:.2f}% paper runs; the law fitted on the targets too "
        f"{100 * c4['in_sample_are']:.2f}%; noise floor "
        f"{100 * floors[ERROR_LOSS]['expected_are']:.2f}%), all 8 sets {mean('are'):.2f}% "
        f"(peer {mean('peer_same_runs'):.2f}% / {mean('peer_paper_runs'):.2f}%; noise floor "
        f"{100 * np.mean([f['expected_are'] for f in floors.values()]):.2f}%), "
        f"95% PI coverage {mean('coverage'):.0f}% (in-sample noise only "
        f"{mean('engine_coverage'):.0f}%); 17-task avg error ARE "
        f"{100 * avg['are']:.2f}% (peer {100 * avg['peer_same_runs']:.2f}% / "
        f"{100 * avg['peer_paper_runs']:.2f}%), coverage {100 * avg['coverage']:.0f}%; "
        f"all M -> 1.4B: loss c4_val {100 * all_m['loss_are_per_set'][ERROR_LOSS]['are']:.2f}%, "
        f"17-task {100 * all_m['avg17_error']['are']:.2f}%; point fits of every law "
        f"{times['all_laws_s']:.2f} s (load {os.getloadavg()[0]:.1f})"
    )
    record("downstream", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
