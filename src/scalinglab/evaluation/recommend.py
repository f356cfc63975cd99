"""Recommendations: which fitting choice backtests best on the user's own runs, and its forecast.

The user's family is backtested (its largest model forecast from the smaller ones, under every
fitting choice); the choice with the lowest median ARE is then fitted on *all* the family's
runs by the full fitting engine (multi-start grid, polishing, diagnostics) and used to forecast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import InputError
from scalinglab.evaluation.backtest import (
    CHOICES,
    BacktestReport,
    FitChoice,
    backtest_family,
    collection_for,
    parameterisation,
)
from scalinglab.evaluation.checkpoints import fit_checkpoints
from scalinglab.evaluation.subspace import SubspaceLaw
from scalinglab.fitting import Fit
from scalinglab.laws.base import get_law

#: fractions of the training runs the recommendation backtests
RECOMMEND_FRACTIONS: tuple[float, ...] = (0.3, 0.5, 1.0)


@dataclass
class Recommendation:
    """The best fitting choice on a family, how the choices ranked, and the forecast."""

    family: str
    best_choice: str
    ranking: pd.DataFrame
    fit: Fit
    params: dict[str, float]
    forecast: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    backtest: BacktestReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "family": self.family,
            "best_choice": self.best_choice,
            "choice": CHOICES[self.best_choice].describe()
            if self.best_choice in CHOICES
            else self.best_choice,
            "ranking": self.ranking.reset_index(names="choice").to_dict(orient="records"),
            "params": self.params,
            "forecast": self.forecast.to_dict(orient="records"),
            "fit": self.fit.to_dict(),
            "notes": list(self.notes),
        }


def recommend(
    observations: pd.DataFrame,
    *,
    family: str | None = None,
    reference: pd.DataFrame | None = None,
    choices: Mapping[str, FitChoice] | None = None,
    fractions: Iterable[float] = RECOMMEND_FRACTIONS,
    forecast_at: Mapping[str, Sequence[float]] | None = None,
) -> Recommendation:
    """Backtest the fitting choices on a family and forecast with the best.

    Parameters
    ----------
    observations
        The user's runs (``run_id``, ``params``, ``tokens``, ``loss``; ``family`` optional).
    family
        Which family, when ``observations`` holds several.
    reference
        Observations of *other* families (e.g. a published collection) whose fits the
        parameter-borrowing choices learn from. Without it, other families in
        ``observations`` serve; with none at all, those choices are left out (noted).
    choices
        Named fitting choices to compare; default :data:`~scalinglab.evaluation.backtest.CHOICES`.
    fractions
        Fractions of the smaller runs seen in the backtests.
    forecast_at
        ``{"params": [...], "tokens": [...]}``: points to forecast; default the largest run's
        size at its final token count.

    Returns
    -------
    Recommendation

    Raises
    ------
    InputError
        An ambiguous or unknown family, fewer than three model sizes, or no choice that
        produced a forecast.
    """
    names = (
        sorted(map(str, observations["family"].dropna().unique()))
        if "family" in observations.columns
        else []
    )
    if family is None:
        if len(names) > 1:
            raise InputError(
                f"the data hold {len(names)} families ({', '.join(names[:10])}"
                f"{' ...' if len(names) > 10 else ''}); choose one"
            )
        family = names[0] if names else "all"
    elif family not in names:
        raise InputError(f"no family '{family}'; the data have {', '.join(names) or 'none'}")
    rows = observations[observations["family"].astype(str) == family] if names else observations
    choices = dict(CHOICES if choices is None else choices)
    notes: list[str] = []
    base = get_law("chinchilla")
    collection = None
    if any(c.needs_collection for c in choices.values()):
        source = reference
        if source is None and len(names) > 1:
            source = observations[observations["family"].astype(str) != family]
        if source is not None and "family" in source.columns:
            collection = collection_for(source, base)
        if collection is None or len(collection) < 3:
            dropped = sorted(n for n, c in choices.items() if c.needs_collection)
            choices = {n: c for n, c in choices.items() if not c.needs_collection}
            notes.append(
                f"left out {', '.join(dropped)}: borrowing parameters needs fits of at least "
                "3 other families (give reference data)"
            )
    results = backtest_family(
        rows,
        family,
        fractions=fractions,
        target_fractions=(0.0,),
        choices=choices,
        collection=collection,
        law=base,
    )
    report = BacktestReport(results, collection=collection)
    table = report.table()
    if table["are"].notna().sum() == 0:
        reasons = sorted({str(e) for e in table["error"].dropna()})
        raise InputError(f"no fitting choice produced a forecast: {'; '.join(reasons[:3])}")
    ranking = report.best()
    best = str(ranking.index[0])
    choice = choices[best]

    # the recommended choice, fitted on every run of the family by the full engine
    variant = parameterisation(
        base, choice.parameters, collection, base.features(rows), rows["loss"].to_numpy()
    )
    fit = fit_checkpoints(
        rows,
        variant.law,
        min_tokens=choice.min_tokens,
        min_fraction=choice.min_fraction,
        final_only=choice.checkpoints == "final",
        weighting=choice.weighting,
        fixed=variant.fixed or None,
        grid=variant.pmap.theta(variant.starts),
    )
    params = (
        fit.law.base_params(fit.params) if isinstance(fit.law, SubspaceLaw) else dict(fit.params)
    )
    if forecast_at is None:
        largest = rows.iloc[int(np.argmax(rows["params"].to_numpy(dtype=float)))]
        longest = rows[rows["run_id"] == largest["run_id"]]["tokens"].max()
        forecast_at = {"params": [float(largest["params"])], "tokens": [float(longest)]}
    points = {k: np.asarray(forecast_at.get(k, []), dtype=float) for k in ("params", "tokens")}
    if points["params"].size != points["tokens"].size or points["params"].size == 0:
        raise InputError("forecast points need as many params as tokens values (at least one)")
    if not all(np.all(np.isfinite(v) & (v > 0)) for v in points.values()):
        raise InputError("forecast points must be positive params and tokens")
    forecast = pd.DataFrame({**points, "loss_nats": fit.predict(points)})
    if not math.isfinite(float(ranking["median_are"].iloc[0])):
        notes.append("the best choice's ARE is not finite; treat the forecast with care")
    return Recommendation(family, best, ranking, fit, params, forecast, notes, report)
