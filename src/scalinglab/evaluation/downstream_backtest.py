"""Backtests of downstream forecasts, and the verdict on whether a task is forecastable.

A backtest fits on some runs and forecasts others (:func:`backtest_downstream`). The verdict
(:func:`assess_predictability`) uses the one that matters to a user: fit on the runs of
smaller compute, forecast the largest ones. A target is reported as

- ``near_chance`` when, at the largest runs, its accuracy is not clearly above chance;
- ``non_monotone`` when its error does not track the validation loss (rank correlation);
- ``too_noisy`` when the best form's backtest misses by more than the tolerance (an absolute
  error of 0.02, or two binomial standard errors of one run, whichever is larger);
- ``too_few_runs`` when the backtest cannot be made;
- ``predictable`` otherwise, with the form that backtested best."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.downstream import FORMS, DownstreamFit, fit_downstream, opt_float
from scalinglab.evaluation.downstream_data import DownstreamTable
from scalinglab.laws.overtraining import MULTIPLIER

Status = Literal["predictable", "near_chance", "non_monotone", "too_noisy", "too_few_runs"]
STATUSES: tuple[Status, ...] = (
    "predictable",
    "near_chance",
    "non_monotone",
    "too_noisy",
    "too_few_runs",
)


@dataclass(frozen=True)
class VerdictRules:
    """Thresholds of the predictability verdict.

    Attributes
    ----------
    holdout_fraction
        Share of the runs, those of largest compute, that the backtest forecasts.
    min_runs
        Fewer evaluated runs than this: ``too_few_runs``.
    chance_margin
        Accuracy above chance (fraction) the largest runs must reach, or two binomial
        standard errors at chance if larger, not to be ``near_chance``.
    min_rank_correlation
        Spearman correlation of error with validation loss below which the error is
        ``non_monotone``.
    abs_tolerance
        Backtest mean absolute error (error units) accepted as forecastable ...
    noise_multiple
        ... or this many binomial standard errors of one run's error, if larger.
    """

    holdout_fraction: float = 0.25
    min_runs: int = 8
    chance_margin: float = 0.02
    min_rank_correlation: float = 0.5
    abs_tolerance: float = 0.02
    noise_multiple: float = 2.0


@dataclass
class Verdict:
    """Whether a target's error is forecastable, and the evidence.

    Attributes
    ----------
    status
        One of :data:`STATUSES`.
    message
        One line saying why.
    form
        The form whose backtest missed least (``None`` without a backtest).
    backtest_mae
        Form → mean absolute error of its forecasts of the held-out runs (error units).
    backtest_log_rmse
        Form → root-mean-square log error of the same forecasts: the scatter a forecast
        beyond the fitted runs shows, which widens prediction intervals where it exceeds the
        in-sample scatter.
    persistence_mae
        The same for the no-fit forecast "the mean error of the three largest fitted runs".
    tolerance
        The backtest error accepted as forecastable.
    held_out
        Runs forecast by the backtest.
    above_chance
        Mean accuracy minus chance accuracy over the largest quarter of the runs.
    rank_correlation
        Spearman correlation between validation loss and error over all runs.
    """

    status: Status
    message: str
    form: str | None = None
    backtest_mae: dict[str, float] = field(default_factory=dict)
    backtest_log_rmse: dict[str, float] = field(default_factory=dict)
    persistence_mae: float | None = None
    tolerance: float | None = None
    held_out: int = 0
    above_chance: float | None = None
    rank_correlation: float | None = None

    @property
    def predictable(self) -> bool:
        """Whether the target passed every check."""
        return self.status == "predictable"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "status": self.status,
            "message": self.message,
            "form": self.form,
            "backtest_mae": dict(self.backtest_mae),
            "backtest_log_rmse": dict(self.backtest_log_rmse),
            "persistence_mae": self.persistence_mae,
            "tolerance": self.tolerance,
            "held_out": self.held_out,
            "above_chance": self.above_chance,
            "rank_correlation": self.rank_correlation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """Rebuild from :meth:`to_dict`."""
        status = next((s for s in STATUSES if s == data["status"]), None)
        if status is None:
            raise ValueError(f"unknown verdict status '{data['status']}'")
        return cls(
            status=status,
            message=str(data["message"]),
            form=data.get("form"),
            backtest_mae={str(k): float(v) for k, v in data.get("backtest_mae", {}).items()},
            backtest_log_rmse={
                str(k): float(v) for k, v in data.get("backtest_log_rmse", {}).items()
            },
            persistence_mae=opt_float(data.get("persistence_mae")),
            tolerance=opt_float(data.get("tolerance")),
            held_out=int(data.get("held_out", 0)),
            above_chance=opt_float(data.get("above_chance")),
            rank_correlation=opt_float(data.get("rank_correlation")),
        )


@dataclass
class DownstreamBacktest:
    """Forecasts of held-out runs by laws fitted on the others.

    Attributes
    ----------
    fit
        The laws fitted on the training runs.
    forecasts
        One row per (held-out run, target, form): ``run_id``, ``target``, ``form``,
        ``predicted`` and ``observed`` error, ``loss_predicted`` and ``loss_observed``
        (NaN in the one-step case), ``selected`` (the form the training runs' own backtest
        chose), ``status`` (that backtest's verdict), and interval bounds when the fit has
        bootstrap replicates.
    train, test
        The run ids on each side.
    """

    fit: DownstreamFit
    forecasts: pd.DataFrame
    train: list[str]
    test: list[str]

    def are(self, target: str, form: str | None = None) -> float:
        """Mean absolute relative error of one target's forecasts (its selected form by
        default)."""
        rows = self._rows(target, form)
        return float(np.mean(np.abs(rows["predicted"] - rows["observed"]) / rows["observed"]))

    def coverage(self, target: str, form: str | None = None) -> float:
        """Share of held-out runs whose error lies inside the forecast interval."""
        rows = self._rows(target, form)
        if "low" not in rows.columns or rows["low"].isna().all():
            raise InputError("this backtest has no intervals (fit with bootstrap > 0)")
        inside = (rows["observed"] >= rows["low"]) & (rows["observed"] <= rows["high"])
        return float(inside.mean())

    def _rows(self, target: str, form: str | None) -> pd.DataFrame:
        rows = self.forecasts[self.forecasts["target"] == target]
        if rows.empty:
            raise InputError(f"no forecasts of '{target}' in this backtest")
        rows = rows[rows["form"] == form] if form is not None else rows[rows["selected"]]
        rows = rows[rows["observed"].notna()]
        if rows.empty:
            raise InputError(f"no observed errors of '{target}' ({form or 'selected form'})")
        return rows


def backtest_downstream(
    table: DownstreamTable,
    train: Sequence[str],
    test: Sequence[str],
    *,
    level: float = 0.95,
    **options: Any,
) -> DownstreamBacktest:
    """Fit on the ``train`` runs, forecast the ``test`` runs' errors of every target.

    Parameters
    ----------
    table
        Runs and errors (:func:`~scalinglab.evaluation.downstream_data.load_downstream`).
    train, test
        Run ids to fit on and to forecast.
    level
        Level of the prediction intervals (when ``bootstrap`` > 0 in ``options``).
    **options
        Passed to :func:`~scalinglab.evaluation.downstream.fit_downstream`.

    Returns
    -------
    DownstreamBacktest
    """
    train, test = [str(r) for r in train], [str(r) for r in test]
    for side, ids in (("train", train), ("test", test)):
        unknown = [r for r in ids if r not in table.runs.index]
        if unknown:
            raise InputError(f"{side} run '{unknown[0]}' is not in the table")
        if not ids:
            raise InputError(f"no {side} runs")
    fit = fit_downstream(table.subset(train), **options)
    held = table.runs.loc[test]
    if fit.loss_fit is not None:
        frame = fit.forecast(
            flops=held["flops"].to_numpy(float),
            multiplier=held[MULTIPLIER].to_numpy(float),
            level=level,
        )
    else:
        frame = fit.forecast(loss=held["loss"].to_numpy(float), level=level)
    frame = frame.rename(
        columns={
            "error": "predicted",
            "error_low": "low",
            "error_high": "high",
            "loss": "loss_predicted",
        }
    )
    frame["run_id"] = np.asarray(test)[frame["point"].to_numpy()]
    frame["loss_observed"] = held["loss"].to_numpy(float)[frame["point"].to_numpy()]
    if fit.loss_fit is None:
        frame["loss_predicted"] = np.nan
    frame["observed"] = [
        table.error(t).loc[r] for t, r in zip(frame["target"], frame["run_id"], strict=True)
    ]
    columns = ["run_id", "target", "form", "predicted", "observed", "low", "high"]
    columns += ["loss_predicted", "loss_observed", "selected", "status"]
    return DownstreamBacktest(fit, frame[columns], train, test)


def compute_order(table: DownstreamTable) -> list[str]:
    """Run ids from smallest to largest compute (by loss, highest first, without flops)."""
    runs = table.runs
    if table.has_compute:
        key = runs["flops"].to_numpy(float)
    else:
        key = -runs["loss"].to_numpy(float)
    return [str(r) for r in runs.index[np.argsort(key, kind="stable")]]


@dataclass
class Assessment:
    """Verdicts of every target, and the loss law's scatter beyond the fitted runs.

    Attributes
    ----------
    verdicts
        Target → :class:`Verdict`.
    loss_log_rmse
        Root-mean-square log error of the loss law's forecasts of the held-out runs
        (``None`` without compute or a backtest).
    """

    verdicts: dict[str, Verdict]
    loss_log_rmse: float | None


def assess_predictability(
    table: DownstreamTable, fit: DownstreamFit, *, rules: VerdictRules | None = None
) -> Assessment:
    """The verdict of every target of ``fit``: forecastable, or why not.

    Parameters
    ----------
    table
        The runs ``fit`` was fitted on.
    fit
        Its options (forms, loss law, objective) are reused for the backtest.
    rules
        Thresholds (default :class:`VerdictRules`).

    Returns
    -------
    Assessment
    """
    rules = rules or VerdictRules()
    if not 0 < rules.holdout_fraction < 1:
        raise InputError("holdout_fraction must be between 0 and 1", value=rules.holdout_fraction)
    order = compute_order(table)
    n_test = max(2, math.ceil(rules.holdout_fraction * len(order)))
    train, test = order[:-n_test], order[-n_test:]
    options = {
        "forms": fit.options["forms"],
        "loss_law": fit.options["loss_law"],
        "min_multiplier": fit.options["min_multiplier"],
        "targets": fit.targets,
        "error_loss": fit.options["error_loss"],
        "error_delta": fit.options["error_delta"],
        "bootstrap": 0,
        "assess": False,
    }
    backtest: DownstreamBacktest | None = None
    failure = ""
    if len(train) >= rules.min_runs:
        try:
            backtest = backtest_downstream(table, train, test, **options)
        except FitError as err:
            failure = str(err)
    else:
        failure = f"{len(train)} runs below the held-out ones (needs {rules.min_runs})"
    top = order[-max(1, math.ceil(len(order) / 4)) :]
    verdicts = {
        target: _verdict(table, target, backtest, failure, train, top, rules)
        for target in fit.targets
    }
    loss_rmse = None
    if backtest is not None and backtest.fit.loss_fit is not None:
        runs = backtest.forecasts.drop_duplicates("run_id")
        loss_rmse = _log_rmse(
            runs["loss_predicted"].to_numpy(float), runs["loss_observed"].to_numpy(float)
        )
    return Assessment(verdicts, loss_rmse)


def _verdict(
    table: DownstreamTable,
    target: str,
    backtest: DownstreamBacktest | None,
    failure: str,
    train: Sequence[str],
    top: Sequence[str],
    rules: VerdictRules,
) -> Verdict:
    errors = table.error(target)
    measured = errors.dropna()
    if len(measured) < rules.min_runs:
        return Verdict("too_few_runs", f"{len(measured)} evaluated runs (needs {rules.min_runs})")
    chance = table.chance_error(target)
    examples = table.effective_examples(target)
    above = None
    top_errors = errors.loc[list(top)].dropna()
    if chance is not None and not top_errors.empty:
        above = float(chance - top_errors.mean())
        margin = rules.chance_margin
        if examples:
            margin = max(margin, rules.noise_multiple * math.sqrt(chance * (1 - chance) / examples))
        if above < margin:
            return Verdict(
                "near_chance",
                f"near chance: at the largest runs accuracy is {100 * above:+.1f} points from "
                f"chance (needs +{100 * margin:.1f})",
                above_chance=above,
            )
    loss = table.runs.loc[measured.index, "loss"]
    rho = float(pd.Series(loss.to_numpy()).corr(pd.Series(measured.to_numpy()), method="spearman"))
    if not rho >= rules.min_rank_correlation:
        return Verdict(
            "non_monotone",
            f"non-monotone: rank correlation of error with loss {rho:.2f} "
            f"(needs {rules.min_rank_correlation:.2f})",
            above_chance=above,
            rank_correlation=rho,
        )
    if backtest is None:
        return Verdict(
            "too_few_runs",
            f"no backtest: {failure}",
            above_chance=above,
            rank_correlation=rho,
        )
    rows = backtest.forecasts[
        (backtest.forecasts["target"] == target) & backtest.forecasts["observed"].notna()
    ]
    if rows.empty:
        return Verdict(
            "too_few_runs",
            "no evaluated run among the largest ones to backtest on",
            above_chance=above,
            rank_correlation=rho,
        )
    groups = rows.groupby("form", sort=False)
    mae = {
        str(form): float(np.mean(np.abs(group["predicted"] - group["observed"])))
        for form, group in groups
    }
    log_rmse = {
        str(form): _log_rmse(group["predicted"].to_numpy(float), group["observed"].to_numpy(float))
        for form, group in groups
    }
    best = min(mae, key=lambda f: mae[f])
    fitted = errors.loc[list(train)].dropna()
    persistence = float(
        np.mean(np.abs(fitted.iloc[-3:].mean() - rows.drop_duplicates("run_id")["observed"]))
    )
    observed_mean = float(rows["observed"].mean())
    tolerance = rules.abs_tolerance
    if examples:
        spread = math.sqrt(max(observed_mean * (1 - observed_mean), 0.0) / examples)
        tolerance = max(tolerance, rules.noise_multiple * spread)
    held = int(rows["run_id"].nunique())
    evidence = {
        "form": best,
        "backtest_mae": mae,
        "backtest_log_rmse": log_rmse,
        "persistence_mae": persistence,
        "tolerance": tolerance,
        "held_out": held,
        "above_chance": above,
        "rank_correlation": rho,
    }
    if mae[best] > tolerance:
        return Verdict(
            "too_noisy",
            f"too noisy: forecasting the {held} largest runs misses by {mae[best]:.3f} "
            f"({best}; tolerance {tolerance:.3f}, no-fit baseline {persistence:.3f})",
            **evidence,  # type: ignore[arg-type]
        )
    return Verdict(
        "predictable",
        f"predictable: forecasting the {held} largest runs misses by {mae[best]:.3f} with "
        f"{best} (tolerance {tolerance:.3f}, no-fit baseline {persistence:.3f})",
        **evidence,  # type: ignore[arg-type]
    )


def _log_rmse(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Root-mean-square log error (zero errors count at a tenth of a percent)."""
    ratio = np.maximum(predicted, 1e-3) / np.maximum(observed, 1e-3)
    return float(np.sqrt(np.mean(np.log(ratio) ** 2)))


__all__ = [
    "FORMS",
    "STATUSES",
    "Assessment",
    "DownstreamBacktest",
    "Verdict",
    "VerdictRules",
    "assess_predictability",
    "backtest_downstream",
    "compute_order",
]
