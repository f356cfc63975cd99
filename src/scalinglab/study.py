"""A scaling study: every analysis scalinglab can make of one table of runs.

:func:`analyse` takes Observations (a file, a run store, or a DataFrame) and makes, as far as
the data allow, the compute-law fit with bootstrap intervals and plans, the isoFLOP analysis,
the schedule-aware curve fit, loss-to-loss transfer, and a backtest of the largest model. A part
the data cannot support is skipped with the reason recorded, never silently.
:func:`run_study` first trains a sweep (the ``training`` package, needs torch) into a run store.
The report package draws the result (:func:`scalinglab.report.study_report.build_report`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.data import RunStore, load_observations
from scalinglab.data.loaders import store_url
from scalinglab.data.runs import final_rows
from scalinglab.data.schema import LossUnit
from scalinglab.data.store import is_store
from scalinglab.errors import FitError, InputError, ScalingLabError, SpecError
from scalinglab.evaluation.backtest import FitChoice, backtest_family
from scalinglab.evaluation.curve_forecast import forecast_cv
from scalinglab.evaluation.transfer import (
    LossRef,
    TransferFit,
    Translation,
    fit_transfer,
    translate_law,
)
from scalinglab.fitting import Diagnostic, Fit, fit, select_dataset
from scalinglab.laws import get_law
from scalinglab.laws.curve import (
    CurveLaw,
    curve_errors,
    default_curve_law,
    final_loss_model,
    reference_shape,
)
from scalinglab.planning import IsoFlopResult, Plan, compute_optimal, isoflop_analysis
from scalinglab.schedules import ScheduleChoice, choose_schedule, parse_schedule, resolve_schedule

#: every analysis a study can make
STUDY_PARTS = ("compute", "curve", "transfer", "backtest")
#: the budgets planned for, as multiples of the largest budget in the data
PLAN_MULTIPLES = (10.0, 100.0)
#: schedules a curve law is fitted on, in order of preference (Luo et al. fit on these two)
CURVE_FIT_PREFERENCE = ("constant", "cosine")
#: curve laws fitted on two schedules; the one that forecasts the last quarter of those two
#: curves best from the rest (never the held-out schedules) is used
CURVE_LAWS = ("annealing", "multipower")


@dataclass
class CurveStudy:
    """Curve laws fitted on two schedules of one model and budget, predicting the others."""

    fitted_runs: list[str]
    held_out_runs: list[str]
    fits: dict[str, Fit]
    errors: pd.DataFrame  # law, run_id, role, mean/max/final relative error
    best_law: str
    observations: pd.DataFrame  # the runs involved
    choice: ScheduleChoice | None = None
    #: per law, the mean error forecasting the last quarter of the fitted curves from the rest
    forecast_cv: dict[str, float] = field(default_factory=dict)


@dataclass
class Study:
    """What :func:`analyse` found. Parts that could not be made are ``None`` with a note."""

    observations: pd.DataFrame
    dataset: str | None
    compute_fit: Fit | None = None
    plan: Plan | None = None
    frontier: Plan | None = None
    isoflop: IsoFlopResult | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)

    def flags(self) -> dict[str, list[Diagnostic]]:
        """Each fitted law's diagnostics, by the part of the study it belongs to.

        Only fits with at least one flag are listed; a clean study gives ``{}``.
        """
        fits: dict[str, Fit | None] = {"compute law": self.compute_fit}
        curve = self.extras.get("curve")
        if isinstance(curve, CurveStudy):
            fits |= {f"curve law ({name})": f for name, f in curve.fits.items()}
        transfer = self.extras.get("transfer")
        if isinstance(transfer, TransferStudy):
            fits["loss-to-loss"] = transfer.fit.fit
        return {part: f.diagnostics for part, f in fits.items() if f is not None and f.diagnostics}


def primary_dataset(observations: pd.DataFrame, preferred: str | None = None) -> str | None:
    """The dataset whose loss the compute law is fitted to.

    ``preferred`` when given; else the only one; else the corpus the runs were trained on
    (a run store's ``train_data``); else one named ``train``; else the one measured most
    often (the choice is reported).
    """
    if "dataset" not in observations.columns:
        return None
    names = observations["dataset"].astype(str)
    if preferred is not None:
        return preferred
    unique = sorted(names.unique())
    if len(unique) == 1:
        return unique[0]
    trained_on = [d for d in observations.attrs.get("train_datasets", ()) if d in unique]
    if len(trained_on) == 1:
        return trained_on[0]
    if "train" in unique:
        return "train"
    return str(names.value_counts().idxmax())


def primary_family(observations: pd.DataFrame) -> str | None:
    """The recipe (``family``) measured most often; ``None`` for a table without families.

    A compute law describes one recipe: runs of another schedule or optimizer would bend it.
    """
    if "family" not in observations.columns or observations["family"].isna().all():
        return None
    return str(observations["family"].astype(str).mode()[0])


def _attempt(study: Study, part: str, action: Callable[[], Any]) -> Any:
    """Run one part; a user-level failure becomes a note instead of ending the study."""
    try:
        return action()
    except ScalingLabError as err:
        study.notes[part] = str(err)
        return None


def analyse(
    observations: pd.DataFrame,
    *,
    dataset: str | None = None,
    law: str = "chinchilla",
    bootstrap: int = 200,
    seed: int = 0,
    parts: Sequence[str] = STUDY_PARTS,
) -> Study:
    """Analyse a table of runs.

    Parameters
    ----------
    observations
        A validated Observations table (``scalinglab.data.load_observations``).
    dataset
        Dataset whose loss the compute law is fitted to (default: see
        :func:`primary_dataset`).
    law
        Compute law to fit.
    bootstrap
        Bootstrap replicates for the intervals.
    seed
        Seed of the bootstrap.
    parts
        Which analyses to make.

    Returns
    -------
    Study
    """
    if bootstrap < 0:
        raise SpecError(f"bootstrap must be non-negative, got {bootstrap}")
    unknown = sorted(set(parts) - set(STUDY_PARTS))
    if unknown:
        raise SpecError(f"unknown part(s) {', '.join(unknown)}; parts are {', '.join(STUDY_PARTS)}")
    chosen = primary_dataset(observations, dataset)
    study = Study(observations=observations, dataset=chosen)
    if "compute" in parts:
        _compute_part(study, law, bootstrap, seed)
    if "curve" in parts:
        study.extras["curve"] = _attempt(study, "loss curves", lambda: _curve_part(study))
    if "transfer" in parts:
        study.extras["transfer"] = _attempt(study, "loss-to-loss", lambda: _transfer_part(study))
    if "backtest" in parts:
        study.extras["backtest"] = _attempt(study, "backtest", lambda: _backtest_part(study))
    return study


def recipe_rows(study: Study) -> pd.DataFrame:
    """Rows of the primary dataset and recipe (see :func:`primary_family`)."""
    rows = select_dataset(study.observations, study.dataset)
    family = primary_family(rows)
    return rows if family is None else rows[rows["family"].astype(str) == family]


def _compute_part(study: Study, law: str, bootstrap: int, seed: int) -> None:
    rows = final_rows(recipe_rows(study))
    result = _attempt(study, "compute law", lambda: fit(rows, law, bootstrap=bootstrap, seed=seed))
    study.compute_fit = result
    if result is None:
        return
    largest = float((6.0 * rows["params"] * rows["tokens"]).max())
    budgets = np.array([largest * m for m in PLAN_MULTIPLES])
    study.plan = _attempt(study, "plan", lambda: compute_optimal(result, budgets))
    smallest = float((6.0 * rows["params"] * rows["tokens"]).min())
    grid = np.geomspace(smallest / 2, budgets[-1], 40)
    study.frontier = _attempt(study, "frontier", lambda: compute_optimal(result, grid))
    study.isoflop = _attempt(study, "isoflop", lambda: isoflop_analysis(rows, drop_invalid=True))
    p = result.params
    study.summary.append(
        f"Compute law ({law}, {result.n_points} runs on '{study.dataset}'): "
        + ", ".join(f"{k}={v:.4g}" for k, v in p.items())
        + ("" if result.converged else " — the fit did NOT converge")
    )
    if result.diagnostics:
        study.summary[-1] += f" ({len(result.diagnostics)} flag(s): see the report)"
    if study.plan is not None:
        for rec in study.plan.to_records():

            def bounds(name: str, rec: dict[str, float] = rec) -> str:
                lo, hi = rec.get(f"{name}_lo"), rec.get(f"{name}_hi")
                return "" if lo is None or hi is None else f" [{lo:.3g}, {hi:.3g}]"

            loss_name = "loss_new_run" if "loss_new_run_lo" in rec else "loss"
            point = {"params": np.array([rec["params"]]), "tokens": np.array([rec["tokens"]])}
            flags = sorted({d.code for d in result.forecast_diagnostics(point)})
            study.summary.append(
                f"At {rec['flops']:.3g} FLOPs ({rec['flops'] / largest:.0f}× the largest run): "
                f"N* = {rec['params']:.3g}{bounds('params')}, D* = {rec['tokens']:.3g}"
                f"{bounds('tokens')} tokens ({rec['tokens_per_param']:.1f} tokens/param), "
                f"loss {rec['loss']:.3f}{bounds(loss_name)} nats"
                + (" (a new run, 95% prediction interval)" if loss_name == "loss_new_run" else "")
                + (f"; flags: {', '.join(flags)}" if flags else "")
            )


def _schedule_kind(spec: object) -> str:
    return str(spec).partition(":")[0].strip()


def _study_curve_law(name: str) -> CurveLaw:
    """A curve law in the study's setting: the default's for multipower, its warmup else."""
    if name == default_curve_law().name:
        return default_curve_law()
    law = get_law(name, warmup=default_curve_law().warmup)
    assert isinstance(law, CurveLaw)
    return law


def _curve_part(study: Study) -> CurveStudy | None:
    obs = select_dataset(study.observations, study.dataset)
    if "schedule" not in obs.columns or obs["schedule"].isna().all():
        raise InputError(
            "no run has a schedule spec (curve laws need one per run, e.g. from a "
            "run store written by the trainer)"
        )
    runs = (
        obs.dropna(subset=["schedule"])
        .groupby("run_id")
        .agg(params=("params", "first"), tokens=("tokens", "max"), schedule=("schedule", "first"))
    )
    runs["kind"] = runs["schedule"].map(_schedule_kind)
    groups = runs.groupby(["params", "tokens"])["kind"].nunique()
    groups = groups[groups >= 3]
    if groups.empty:
        raise InputError(
            "no model was trained with three schedules at one budget: a curve "
            "law is fitted on two and judged on the third"
        )
    params, tokens = max(groups.index)  # the largest model and budget that qualify
    group = runs[(runs["params"] == params) & (runs["tokens"] == tokens)]
    pref = {k: i for i, k in enumerate(CURVE_FIT_PREFERENCE)}
    kinds = sorted(group["kind"].unique(), key=lambda k: (pref.get(k, len(pref)), k))
    fitted = [str(group.index[group["kind"] == k][0]) for k in kinds[:2]]
    held = [str(r) for r in group.index if str(r) not in fitted]
    table = obs[obs["run_id"].astype(str).isin(fitted + held)]
    # curve laws describe training after the warmup (Tissue et al., Luo et al. fit there)
    warmup = table["schedule"].map(lambda spec: parse_schedule(str(spec)).warmup_steps)
    table = table[table["step"] > warmup]
    train = table[table["run_id"].astype(str).isin(fitted)]
    test = table[table["run_id"].astype(str).isin(held)]
    fits: dict[str, Fit] = {}
    cv: dict[str, float] = {}
    error_tables = []
    for name in CURVE_LAWS:
        law = _study_curve_law(name)
        fixed = reference_shape(law) or None
        result = fit(train, law, fixed=fixed)
        fits[name] = result
        cv[name] = forecast_cv(law, train, fixed=fixed)
        for role, part in (("fitted", train), ("held out", test)):
            errs = curve_errors(result, part)
            errs.insert(0, "role", role)
            errs.insert(0, "law", name)
            error_tables.append(errs)
    errors = pd.concat(error_tables, ignore_index=True)
    best = min(cv, key=cv.__getitem__)  # chosen on the fitted curves alone
    curve = CurveStudy(fitted, held, fits, errors, best, table, forecast_cv=cv)
    ref = parse_schedule(str(group.loc[fitted[-1], "schedule"]))
    curve.choice = choose_schedule(
        final_loss_model(fits[best]),
        total=ref.total,
        peak=ref.peak,
        warmup=ref.warmup,
        final=float(getattr(ref, "final", 0.0)) or ref.peak / 10,
    )
    study.summary.append(
        f"Loss curves ({int(params):,} parameters, {int(tokens):,} tokens): fitted on "
        f"{', '.join(kinds[:2])}, the {best} law (chosen by forecasting the last quarter of "
        f"those curves: {100 * cv[best]:.2f}% mean error) predicts "
        + ", ".join(
            f"{r} within {100 * e:.2f}% mean, {100 * m:.2f}% max"
            for r, e, m in errors[(errors["law"] == best) & (errors["role"] == "held out")][
                ["run_id", "mean_rel_error", "max_rel_error"]
            ].itertuples(index=False)
        )
    )
    rec = curve.choice.recommended
    flags = sorted({d.code for d in fits[best].diagnostics})
    study.summary.append(
        f"Schedule choice at {ref.total} steps: {rec.name} is predicted "
        f"{curve.choice.gain_over(curve.choice.cosine, rec):.4f} nats below cosine and "
        f"{curve.choice.gain_over(curve.choice.wsd20, rec):.4f} below WSD-20%; gains under the "
        f"law's forecast error ({100 * cv[best]:.2f}% ≈ {cv[best] * rec.final_loss:.3f} nats) "
        "are not resolved" + (f"; flags: {', '.join(flags)}" if flags else "")
    )
    return curve


@dataclass
class TransferStudy:
    """Loss-to-loss from the primary dataset to another, and the translated compute law."""

    fit: TransferFit
    translation: Translation | None
    scores: dict[str, float]  # ARE of the translated and the direct law on held-out runs


def _transfer_part(study: Study) -> TransferStudy:
    obs = study.observations
    names = sorted(obs["dataset"].astype(str).unique()) if "dataset" in obs.columns else []
    others = [n for n in names if n != study.dataset]
    if study.dataset is None or not others:
        raise InputError("losses are measured on one dataset only: loss-to-loss needs two")
    family = primary_family(select_dataset(obs, study.dataset))
    x, y = LossRef(family, study.dataset), LossRef(family, others[0])
    result = fit_transfer(obs, x, y)
    y_rows = final_rows(select_dataset(obs, y.dataset))
    if family is not None:
        y_rows = y_rows[y_rows["family"].astype(str) == family]
    sizes = y_rows["params"].unique()
    # the translated law sees y's runs of every size but the largest, and forecasts those
    y_runs = None
    if len(sizes) >= 3:
        y_runs = list(y_rows.loc[y_rows["params"] < sizes.max(), "run_id"].astype(str))
    translation = _attempt(study, "translated law", lambda: translate_law(obs, x, y, y_runs=y_runs))
    scores: dict[str, float] = {}
    if translation is not None:
        scores = _attempt(study, "translated law", lambda: translation.evaluate(obs)) or {}
    p = result.params
    line = (
        f"Loss-to-loss ({x.dataset} → {y.dataset}): L_y = {p['K']:.3g}·(L_x − {p['E_x']:.3g})"
        f"^{p['kappa']:.3g} + {p['E_y']:.3g}"
    )
    if scores and translation is not None:
        line += (
            f"; {y.dataset}'s law translated from {len(translation.y_runs)} of its runs "
            f"forecasts the other {int(scores['n_heldout'])} with ARE "
            f"{100 * scores['are_translated']:.2f}% (fitting those runs alone: "
            f"{100 * scores['are_direct']:.2f}%)"
        )
    if result.fit.diagnostics:
        line += f" ({len(result.fit.diagnostics)} flag(s): see the report)"
    study.summary.append(line)
    return TransferStudy(result, translation, scores)


#: fitting choices the study's backtest compares (small runs: no early-token cutoff)
BACKTEST_CHOICES = {
    "all checkpoints": FitChoice(min_tokens=0.0),
    "final losses only": FitChoice(checkpoints="final", min_tokens=0.0),
}


@dataclass
class BacktestStudy:
    """Forecasts of the largest run from smaller models, scored by ARE."""

    target: str
    results: pd.DataFrame  # one row per (k, fraction, choice); are and baseline columns
    headline: dict[str, Any]  # the best choice with every smaller size and full runs seen


def _backtest_part(study: Study) -> BacktestStudy:
    rows = recipe_rows(study)
    family = primary_family(rows) or ""
    runs = rows.groupby("run_id").agg(params=("params", "first"), tokens=("tokens", "max"))
    target = str(runs.sort_values(["params", "tokens"]).index[-1])
    results = backtest_family(
        rows, family, target=target, choices=BACKTEST_CHOICES, target_fractions=(0.0,)
    )
    table = pd.DataFrame([r.to_dict() for r in results])
    table = pd.concat(
        [
            table.drop(columns=["baselines"]),
            pd.json_normalize(table["baselines"].tolist()).add_prefix("baseline_"),
        ],
        axis=1,
    )
    ok = table[table["error"].isna()]
    if ok.empty:
        raise FitError(f"no backtest fit succeeded: {table['error'].dropna().iloc[0]}")
    full = ok[(ok["k"] == ok["k"].max()) & (ok["fraction"] == ok["fraction"].max())]
    best = full.loc[full["are"].idxmin()]
    baselines = {
        c.removeprefix("baseline_"): float(best[c])
        for c in table.columns
        if c.startswith("baseline_")
    }
    headline = {
        "choice": best["choice"],
        "k": int(best["k"]),
        "are": float(best["are"]),
        **{f"baseline {k}": v for k, v in baselines.items()},
    }
    study.summary.append(
        f"Backtest: forecasting {target} from the {int(best['k'])} smaller model sizes "
        f"({best['choice']}) misses by ARE {100 * best['are']:.2f}%; no-fit baselines: "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in baselines.items())
    )
    return BacktestStudy(target, table, headline)


#: the sweeps the end-to-end study trains: the scaling sweep, then a third schedule
STUDY_PRESETS = ("cpu-tiny", "cpu-tiny-constant")


def run_study(
    store: str | Path,
    out_dir: str | Path,
    *,
    presets: Sequence[str] = STUDY_PRESETS,
    workers: int | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    on_run: Callable[[Any, int, int], None] | None = None,
) -> list[Any]:
    """Train (or reuse from ``store``) the study's sweeps. Needs torch.

    Runs the store marks finished are skipped, so a second call trains nothing.
    ``executor`` (``local``, ``slurm``, ``ray``) and ``ray_address`` choose where the runs
    train, as for :func:`~scalinglab.training.sweep.run_sweep`.

    Returns
    -------
    list of scalinglab.training.sweep.SweepResult
    """
    from scalinglab.training.sweep import load_sweep, run_sweep

    specs = [load_sweep(name) for name in presets]  # every spec is checked before training
    checkpoints = Path(out_dir) / "checkpoints"
    total = sum(len(spec.configs(out_dir=checkpoints, store=store)) for spec in specs)
    done = 0
    lock = threading.Lock()

    def count(outcome: Any, _done: int, _total: int) -> None:
        # each sweep counts its own runs: report progress over all of them
        nonlocal done
        with lock:
            done += 1
            if on_run is not None:
                on_run(outcome, done, total)

    def one(spec: Any) -> Any:
        return run_sweep(
            spec,
            store=store,
            out_dir=checkpoints,
            workers=workers,
            executor=executor,
            ray_address=ray_address,
            on_run=count,
        )

    if (executor or "local") != "local" or ray_address is not None:
        # a cluster runs each sweep's runs side by side already
        return [one(spec) for spec in specs]
    # the sweeps run side by side, so that a short one fills a core the long one leaves idle
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return [f.result() for f in [pool.submit(one, spec) for spec in specs]]


def load(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    loss_unit: LossUnit = "nats",
) -> pd.DataFrame:
    """Observations from any source the data package reads (``columns``, ``loss_unit`` as
    :func:`~scalinglab.data.load_observations` takes them).

    From a run store, each run's learning-rate schedule (its config's spec, resolved to the
    run's length) is attached as a ``schedule`` column: curve laws need the schedule at every
    step, not only the learning rate logged at evaluations. Its optimizer is attached as an
    ``optimizer`` column (the report's runs table shows it).
    """
    table = load_observations(source, columns=columns, loss_unit=loss_unit)
    if isinstance(source, pd.DataFrame) or not is_store(source):
        return table
    runs = RunStore(store_url(source) or source, create=False).runs()
    last_step = table.groupby("run_id")["step"].max()
    specs, optimizers = {}, {}
    trained_on = set()
    for rec in runs.to_dict(orient="records"):
        config = rec.get("config") or {}
        run_id = str(rec["run_id"])
        if not isinstance(config, dict) or run_id not in last_step.index:
            continue
        if config.get("schedule"):
            specs[run_id] = resolve_schedule(str(config["schedule"]), int(last_step[run_id]))
        if config.get("train_data"):
            trained_on.add(str(config["train_data"]))
        if config.get("optimizer"):
            optimizers[run_id] = str(config["optimizer"])
    if specs:
        table["schedule"] = table["run_id"].astype(str).map(specs)
    if optimizers:
        table["optimizer"] = table["run_id"].astype(str).map(optimizers)
    table.attrs["train_datasets"] = sorted(trained_on)
    return table
