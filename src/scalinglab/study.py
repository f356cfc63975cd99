"""A scaling study: every analysis scalinglab can make of one table of runs.

:func:`analyse` takes Observations (a file, a run store, or a DataFrame) and makes, as far as
the data allow, the compute-law fit with bootstrap intervals and plans, the isoFLOP analysis,
the schedule-aware curve fit, loss-to-loss transfer, and a backtest of the largest model. A part
the data cannot support is skipped with the reason recorded, never silently.
:func:`run_study` first trains a sweep (the ``training`` package, needs torch) into a run store.
The report package draws the result (:func:`scalinglab.report.study_report.build_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import ScalingLabError
from scalinglab.fitting import Fit, fit, select_dataset
from scalinglab.planning import IsoFlopResult, Plan, compute_optimal, isoflop_analysis

#: the budgets planned for, as multiples of the largest budget in the data
PLAN_MULTIPLES = (10.0, 100.0)


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


def final_rows(observations: pd.DataFrame) -> pd.DataFrame:
    """The last measurement of every run (most ``tokens`` per ``run_id``)."""
    if "run_id" not in observations.columns or "run_id" in observations.attrs.get("derived", ()):
        return observations
    idx = observations.groupby("run_id")["tokens"].idxmax()
    return observations.loc[np.sort(idx.to_numpy())]


def primary_dataset(observations: pd.DataFrame, preferred: str | None = None) -> str | None:
    """The dataset whose loss the compute law is fitted to.

    ``preferred`` when given; else the only one; else one named ``train``; else the one
    measured most often (the choice is reported).
    """
    if "dataset" not in observations.columns:
        return None
    names = observations["dataset"].astype(str)
    if preferred is not None:
        return preferred
    unique = sorted(names.unique())
    if len(unique) == 1:
        return unique[0]
    if "train" in unique:
        return "train"
    return str(names.value_counts().idxmax())


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
    parts: Sequence[str] = ("compute",),
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
    chosen = primary_dataset(observations, dataset)
    study = Study(observations=observations, dataset=chosen)
    if "compute" in parts:
        _compute_part(study, law, bootstrap, seed)
    return study


def _compute_part(study: Study, law: str, bootstrap: int, seed: int) -> None:
    rows = final_rows(select_dataset(study.observations, study.dataset))
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
    if study.plan is not None:
        for rec in study.plan.to_records():
            ci = ""
            if "params_lo" in rec:
                ci = f" [{rec['params_lo']:.3g}, {rec['params_hi']:.3g}]"
            study.summary.append(
                f"At {rec['flops']:.3g} FLOPs ({rec['flops'] / largest:.0f}× the largest run): "
                f"N* = {rec['params']:.3g}{ci}, D* = {rec['tokens']:.3g} tokens "
                f"({rec['tokens_per_param']:.1f} tokens/param), "
                f"loss {rec['loss']:.3f} nats"
            )


def load(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Observations from any source the data package reads."""
    from scalinglab.data import load_observations

    return load_observations(source)
