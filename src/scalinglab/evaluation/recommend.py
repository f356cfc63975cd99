"""Recommendations: which fitting choice to trust on the user's runs, its forecast, and the
error to expect of it.

How the choices are ranked (the rule ``benchmarks/backtest_recommend.py`` checks, leave one
ColPret family out):

1. **In-family evidence first.** With 3 or more model sizes, the family is backtested (its
   largest model forecast from the smaller ones, every choice, fractions
   :data:`RECOMMEND_FRACTIONS` of the smaller runs) and the choices are ranked by median ARE.
2. **Otherwise, the ColPret backtests.** With fewer sizes there is nothing to backtest inside
   the family: the choices are ranked by the median realized ARE of each choice in the ColPret
   backtests that extrapolated about as far as the forecast asked for
   (:func:`~scalinglab.evaluation.expected_error.expected_error`).
3. **Plausible forecasts only.** The best-ranked choice is fitted on every run by the full
   engine; a forecast of a model at least as large as the largest run, at least as long, must
   end below that run's lowest loss. A choice whose forecast does not is passed over (noted)
   for the next.

The stated expected error is the chosen method's realized error in ColPret at the forecast's
extrapolation ratio: "median X%, 90% of cases below Y%".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.backtest import (
    CHOICES,
    BacktestReport,
    FitChoice,
    backtest_family,
    collection_for,
    parameterisation,
)
from scalinglab.evaluation.checkpoints import fit_checkpoints
from scalinglab.evaluation.colpret import colpret_collection
from scalinglab.evaluation.expected_error import ExpectedError, expected_error
from scalinglab.evaluation.subspace import SubspaceLaw
from scalinglab.fitting import Fit
from scalinglab.laws.base import Law, get_law

#: fractions of the training runs the recommendation backtests
RECOMMEND_FRACTIONS: tuple[float, ...] = (0.3, 0.5, 1.0)
#: model sizes an in-family backtest needs (two to fit, one to forecast)
IN_FAMILY_SIZES = 3


@dataclass
class Recommendation:
    """The fitting choice to trust on a family, how the choices ranked, and the forecast.

    Attributes
    ----------
    family
        The family recommended for.
    best_choice
        The choice fitted and forecast with.
    ranking
        One row per choice, best first: ``median_are`` (in-family backtest; NaN without
        one), ``results``, and the ColPret evidence at the forecast's extrapolation ratio:
        ``expected_median``, ``expected_q90``, ``expected_cases``.
    ranked_by
        ``"in-family backtest"`` or ``"ColPret backtests"``.
    fit, params, forecast
        The chosen fit on every run, its base-law parameters, and the forecast (``params``,
        ``tokens``, ``loss_nats``).
    extrapolation_ratio
        Largest forecast N·D over the largest N·D of the runs.
    expected
        The error to expect of the chosen method at that ratio (``None`` with a note when
        ColPret has too few backtests of it).
    notes
        What was left out or passed over, and why.
    backtest
        The in-family backtest, when there was one.
    """

    family: str
    best_choice: str
    ranking: pd.DataFrame
    ranked_by: str
    fit: Fit
    params: dict[str, float]
    forecast: pd.DataFrame
    extrapolation_ratio: float
    expected: ExpectedError | None = None
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
            "ranked_by": self.ranked_by,
            "ranking": self.ranking.reset_index(names="choice").to_dict(orient="records"),
            "params": self.params,
            "forecast": self.forecast.to_dict(orient="records"),
            "extrapolation_ratio": self.extrapolation_ratio,
            "expected_error": None if self.expected is None else self.expected.to_dict(),
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
    evidence: pd.DataFrame | None = None,
    exclude_family: str | None = None,
) -> Recommendation:
    """Rank the fitting choices on a family, forecast with the best, state its expected error.

    Parameters
    ----------
    observations
        The user's runs (``run_id``, ``params``, ``tokens``, ``loss``; ``family`` optional).
    family
        Which family, when ``observations`` holds several.
    reference
        Observations of *other* families whose fits the parameter-borrowing choices learn
        from. Without it, other families in ``observations`` serve, and with none, the
        shipped ColPret collection (:func:`~scalinglab.evaluation.colpret.colpret_collection`).
    choices
        Named fitting choices to compare; default :data:`~scalinglab.evaluation.backtest.CHOICES`.
    fractions
        Fractions of the smaller runs seen in the in-family backtest.
    forecast_at
        ``{"params": [...], "tokens": [...]}``: points to forecast; default the largest run's
        size at its final token count.
    evidence
        Backtest cases the ranking and the expected error rest on (default: the shipped
        ColPret cases, see :mod:`scalinglab.evaluation.expected_error`).
    exclude_family
        Leave this family out of the evidence and of the ColPret collection (to check a
        recommendation on a ColPret family out of sample).

    Returns
    -------
    Recommendation

    Raises
    ------
    InputError
        An ambiguous or unknown family, bad forecast points, or no choice that could be
        ranked or fitted.
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
    points = _forecast_points(rows, forecast_at)
    ratio = float(
        np.max(points["params"] * points["tokens"])
        / np.max(rows["params"].to_numpy(dtype=float) * rows["tokens"].to_numpy(dtype=float))
    )
    collection = None
    if any(c.needs_collection for c in choices.values()):
        collection = _collection(observations, family, names, reference, base, exclude_family)
        if collection is None or len(collection) < 3:
            dropped = sorted(n for n, c in choices.items() if c.needs_collection)
            choices = {n: c for n, c in choices.items() if not c.needs_collection}
            notes.append(
                f"left out {', '.join(dropped)}: borrowing parameters needs fits of at least "
                "3 other families (give reference data)"
            )
        elif reference is None and len(names) <= 1:
            notes.append(
                f"parameter-borrowing choices learn from {len(collection)} ColPret families "
                "(give --reference to learn from your own)"
            )
    if not choices:
        raise InputError("no fitting choice left to rank")

    report: BacktestReport | None = None
    in_family: pd.DataFrame | None = None
    if rows["params"].nunique() >= IN_FAMILY_SIZES:
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
        if report.table()["are"].notna().any():
            in_family = report.best()
    else:
        notes.append(
            f"{rows['params'].nunique()} model size(s): too few to backtest inside the family "
            f"(needs {IN_FAMILY_SIZES}); choices ranked by ColPret backtests at "
            f"{ratio:.3g}× extrapolation"
        )
    ranking = _ranking(choices, in_family, ratio, evidence, exclude_family)
    ranked_by = (
        "in-family backtest"
        if in_family is not None and in_family["median_are"].notna().sum() >= 2
        else "ColPret backtests"
    )
    if ranking.empty:
        reasons = sorted({str(e) for e in report.table()["error"].dropna()}) if report else []
        raise InputError(
            "no fitting choice could be ranked: no backtest produced a forecast"
            + (f" ({'; '.join(reasons[:3])})" if reasons else "")
        )

    chosen: tuple[str, Fit, pd.DataFrame] | None = None
    first: tuple[str, Fit, pd.DataFrame] | None = None
    for name in ranking.index:
        try:
            fit = fit_choice(rows, choices[str(name)], collection, base)
        except (FitError, InputError) as err:
            notes.append(f"passed over {name}: {err}")
            continue
        forecast = pd.DataFrame({**points, "loss_nats": fit.predict(points)})
        first = first or (str(name), fit, forecast)
        reason = _implausible(rows, forecast)
        if reason is None:
            chosen = (str(name), fit, forecast)
            break
        notes.append(f"passed over {name}: {reason}")
    if chosen is None:
        if first is None:
            raise InputError("no fitting choice could be fitted on every run (see the notes)")
        chosen = first
        notes.append(f"no choice gave a plausible forecast; {first[0]} kept, treat with care")
    best, fit, forecast = chosen
    params = (
        fit.law.base_params(fit.params) if isinstance(fit.law, SubspaceLaw) else dict(fit.params)
    )
    expected = None
    try:
        expected = expected_error(best, ratio, exclude_family=exclude_family, cases=evidence)
    except InputError as err:
        notes.append(f"no expected error for {best}: {err}")
    return Recommendation(
        family,
        best,
        ranking,
        ranked_by,
        fit,
        params,
        forecast,
        ratio,
        expected,
        notes,
        report,
    )


def _forecast_points(
    rows: pd.DataFrame, forecast_at: Mapping[str, Sequence[float]] | None
) -> dict[str, np.ndarray]:
    if forecast_at is None:
        largest = rows.iloc[int(np.argmax(rows["params"].to_numpy(dtype=float)))]
        longest = rows[rows["run_id"] == largest["run_id"]]["tokens"].max()
        forecast_at = {"params": [float(largest["params"])], "tokens": [float(longest)]}
    points = {k: np.asarray(forecast_at.get(k, []), dtype=float) for k in ("params", "tokens")}
    if points["params"].size != points["tokens"].size or points["params"].size == 0:
        raise InputError("forecast points need as many params as tokens values (at least one)")
    if not all(np.all(np.isfinite(v) & (v > 0)) for v in points.values()):
        raise InputError("forecast points must be positive params and tokens")
    return points


def _collection(
    observations: pd.DataFrame,
    family: str,
    names: list[str],
    reference: pd.DataFrame | None,
    base: Any,
    exclude_family: str | None,
) -> pd.DataFrame | None:
    """Fits of other families: the reference's, the data's other families', or ColPret's."""
    source = reference
    if source is None and len(names) > 1:
        source = observations[observations["family"].astype(str) != family]
    if source is not None:
        return collection_for(source, base) if "family" in source.columns else None
    shipped = colpret_collection()
    return shipped.drop(index=[family, exclude_family], errors="ignore")


def _ranking(
    choices: Mapping[str, FitChoice],
    in_family: pd.DataFrame | None,
    ratio: float,
    evidence: pd.DataFrame | None,
    exclude_family: str | None,
) -> pd.DataFrame:
    """Choices ordered by the in-family backtest where it ranks 2 or more, then by ColPret."""
    rows = []
    for name in choices:
        row: dict[str, Any] = {"choice": name, "median_are": math.nan, "results": 0}
        if in_family is not None and name in in_family.index:
            row["median_are"] = float(in_family["median_are"].to_dict()[name])
            row["results"] = int(in_family["results"].to_dict()[name])
        try:
            expected = expected_error(name, ratio, exclude_family=exclude_family, cases=evidence)
            row |= {
                "expected_median": expected.median,
                "expected_q90": expected.q90,
                "expected_cases": expected.n_cases,
            }
        except InputError:
            row |= {"expected_median": math.nan, "expected_q90": math.nan, "expected_cases": 0}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("choice")
    ranked = table[table["median_are"].notna() | table["expected_median"].notna()]
    by_family = ranked["median_are"].notna().sum() >= 2
    keys = ["median_are", "expected_median"] if by_family else ["expected_median", "median_are"]
    return ranked.sort_values(keys, na_position="last", kind="stable")


def fit_choice(
    rows: pd.DataFrame,
    choice: FitChoice,
    collection: pd.DataFrame | None = None,
    law: str | Law = "chinchilla",
) -> Fit:
    """Fit one choice on every run by the full engine (multi-start grid, polish).

    Parameters
    ----------
    rows
        The runs' checkpoints (``run_id``, ``params``, ``tokens``, ``loss``).
    choice
        Which checkpoints, and which parameters to borrow.
    collection
        Fits of other families (needed by the borrowing choices).
    law
        The base law.
    """
    base = get_law(law) if isinstance(law, str) else law
    variant = parameterisation(
        base, choice.parameters, collection, base.features(rows), rows["loss"].to_numpy()
    )
    return fit_checkpoints(
        rows,
        variant.law,
        min_tokens=choice.min_tokens,
        min_fraction=choice.min_fraction,
        final_only=choice.checkpoints == "final",
        weighting=choice.weighting,
        fixed=variant.fixed or None,
        grid=variant.pmap.theta(variant.starts),
    )


def _implausible(rows: pd.DataFrame, forecast: pd.DataFrame) -> str | None:
    """Why a forecast cannot be right, or ``None``.

    A forecast that is not finite and positive cannot; nor can one for a model at least as
    large as the largest run, at least as long, that ends above that run's lowest loss.
    """
    predicted = forecast["loss_nats"].to_numpy(dtype=float)
    if not np.all(np.isfinite(predicted) & (predicted > 0)):
        return "its forecast is not a finite positive loss"
    params = rows["params"].to_numpy(dtype=float)
    largest = rows[params == params.max()]
    run = largest[largest["tokens"] == largest["tokens"].max()].iloc[0]["run_id"]
    mine = rows[rows["run_id"] == run]
    floor = float(mine["loss"].min())
    dominates = (forecast["params"].to_numpy() >= params.max()) & (
        forecast["tokens"].to_numpy() >= float(mine["tokens"].max())
    )
    if np.any(dominates & (predicted >= floor)):
        return (
            f"it forecasts a loss of {predicted[dominates].max():.4g} for a model at least as "
            f"large and as long as run {run}, whose loss fell to {floor:.4g}"
        )
    return None
