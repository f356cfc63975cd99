"""IsoFLOP analysis: Chinchilla's approach 2 (Hoffmann et al. 2022, section 3.2).

Runs are grouped by training budget; within each budget the final loss is fitted by a
parabola in ``log N`` whose vertex is the budget's optimal model size. Power laws
``N_opt = k·C^a`` and ``D_opt = k'·C^b`` are then fitted through the per-budget optima by least
squares in log space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from scalinglab.data.runs import final_rows
from scalinglab.errors import FitError, InputError
from scalinglab.laws.base import FloatArray

#: sizes a budget needs for its parabola to have a residual (3 points fit it exactly)
MIN_SIZES_PER_BUDGET = 3
#: budgets needed for the power laws (with 2 the line is exact and has no interval)
MIN_BUDGETS = 2


@dataclass(frozen=True)
class PowerLawFit:
    """``y = coefficient · flops^exponent`` fitted by least squares on logarithms.

    Attributes
    ----------
    exponent, coefficient
        Slope and ``exp(intercept)`` of the regression of ``log y`` on ``log flops``.
    exponent_ci
        ``exponent ± t·se`` with ``se`` the regression's standard error of the slope and ``t``
        Student's quantile with ``n − 2`` degrees of freedom; NaN with only 2 budgets.
    """

    exponent: float
    coefficient: float
    exponent_ci: tuple[float, float]

    def __call__(self, flops: float | FloatArray) -> FloatArray:
        """Evaluate the power law at ``flops``."""
        return self.coefficient * np.asarray(flops, dtype=float) ** self.exponent


@dataclass
class IsoFlopResult:
    """Outcome of :func:`isoflop_analysis`.

    Attributes
    ----------
    minima
        One row per budget used: ``flops`` (the budget), ``runs``, ``sizes``, ``params_opt``,
        ``tokens_opt``, ``loss_opt`` (the parabola's vertex), ``curvature`` (second
        derivative of loss in ``log N``, nats), ``params_min``, ``params_max`` (sampled range).
    params
        ``N_opt = k·C^a``.
    tokens
        ``D_opt = k'·C^b``.
    level
        Confidence level of the exponent intervals.
    dropped
        Budgets left out (only with ``drop_invalid``), each ``{"flops", "reason"}``.
    warnings
        Caveats.
    """

    minima: pd.DataFrame
    params: PowerLawFit
    tokens: PowerLawFit
    level: float
    dropped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def predict(self, flops: float | FloatArray) -> tuple[FloatArray, FloatArray]:
        """Optimal ``(params, tokens)`` at ``flops`` from the fitted power laws."""
        return self.params(flops), self.tokens(flops)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "params_exponent": self.params.exponent,
            "params_exponent_ci": list(self.params.exponent_ci),
            "params_coefficient": self.params.coefficient,
            "tokens_exponent": self.tokens.exponent,
            "tokens_exponent_ci": list(self.tokens.exponent_ci),
            "tokens_coefficient": self.tokens.coefficient,
            "level": self.level,
            "minima": self.minima.to_dict(orient="records"),
            "dropped": self.dropped,
            "warnings": list(self.warnings),
        }


def isoflop_analysis(
    df: pd.DataFrame,
    *,
    budget_column: str = "flops",
    budgets: Sequence[float] | None = None,
    rel_tol: float = 0.1,
    dataset: str | None = None,
    drop_invalid: bool = False,
    level: float = 0.95,
) -> IsoFlopResult:
    """Chinchilla's approach 2: optimal model size per FLOP budget, then power laws in C.

    Parameters
    ----------
    df
        Observations (columns ``params``, ``tokens``, ``loss``, the budget column, and
        optionally ``run_id``, ``dataset``, ``source_row``). When a run has several rows
        (checkpoints), only its last one (most tokens) is used: an isoFLOP point is a run
        trained to its budget. Run ids that the loader derived (``attrs["derived"]``) are
        not trusted for this: each row is then a run.
    budget_column
        Column holding each run's training budget in FLOPs.
    budgets
        The budgets of the sweep. Each run joins the nearest one within ``rel_tol``; runs near
        none are ignored. Default: budgets found by grouping runs whose budgets are within
        ``rel_tol`` of the smallest in the group (the group's budget is their geometric mean).
    rel_tol
        Relative tolerance for matching a run's budget.
    dataset
        Which ``dataset`` to analyse when the table measures several.
    drop_invalid
        Leave out budgets with too few sizes or no interior minimum (listed in
        :attr:`IsoFlopResult.dropped`) instead of refusing.
    level
        Confidence level of the exponent intervals.

    Returns
    -------
    IsoFlopResult

    Raises
    ------
    InputError
        Missing columns, non-positive or non-finite values, several datasets and none chosen.
    FitError
        A budget with fewer than 3 model sizes or whose parabola has no interior minimum
        (it opens downward, or its vertex lies outside the sampled sizes), unless
        ``drop_invalid``; fewer than 2 budgets in the end.
    """
    if not rel_tol > 0:
        raise InputError("rel_tol must be positive", value=rel_tol)
    if not 0 < level < 1:
        raise InputError("the confidence level must be between 0 and 1", value=level)
    runs = final_rows(_select(df, budget_column, dataset)).reset_index(drop=True)
    groups = _bucket(runs[budget_column].to_numpy(dtype=float), budgets, rel_tol)

    rows: list[dict[str, float]] = []
    dropped: list[dict[str, Any]] = []
    for budget, members in groups:
        part = runs.iloc[members]
        try:
            rows.append(_budget_minimum(budget, part))
        except FitError as err:
            if not drop_invalid:
                raise
            dropped.append({"flops": budget, "reason": str(err)})
    warnings = [f"dropped budget {d['flops']:.3g}: {d['reason']}" for d in dropped]
    if len(rows) < MIN_BUDGETS:
        raise FitError(
            f"isoFLOP analysis needs at least {MIN_BUDGETS} budgets with an interior minimum "
            f"(3 or more for an interval on the exponents); found {len(rows)}"
            + (f" after dropping {len(dropped)}" if dropped else "")
        )
    if len(rows) == MIN_BUDGETS:
        warnings.append(
            "only 2 budgets: the power laws pass exactly through both minima and the "
            "exponents have no confidence interval"
        )
    minima = pd.DataFrame(rows)
    log_c = np.log(minima["flops"].to_numpy())
    return IsoFlopResult(
        minima=minima,
        params=_power_law(log_c, np.log(minima["params_opt"].to_numpy()), level),
        tokens=_power_law(log_c, np.log(minima["tokens_opt"].to_numpy()), level),
        level=level,
        dropped=dropped,
        warnings=warnings,
    )


def _select(df: pd.DataFrame, budget_column: str, dataset: str | None) -> pd.DataFrame:
    """Check the columns and values, and keep one dataset."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"isoFLOP analysis needs a DataFrame, got {type(df).__name__}")
    source = df.attrs.get("source")
    needed = ["params", "tokens", "loss", budget_column]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise InputError(
            f"isoFLOP analysis needs column(s) {', '.join(missing)}; "
            f"the table has {', '.join(map(str, df.columns))}",
            source=source,
        )
    if "dataset" in df.columns:
        names = sorted(df["dataset"].dropna().astype(str).unique())
        if dataset is not None:
            if dataset not in names:
                raise InputError(
                    f"no rows for dataset '{dataset}'; the table has {', '.join(names)}",
                    source=source,
                    column="dataset",
                )
            df = df[df["dataset"].astype(str) == dataset]
        elif len(names) > 1:
            raise InputError(
                f"the table measures several datasets ({', '.join(names)}); choose one",
                source=source,
                column="dataset",
            )
    elif dataset is not None:
        raise InputError(
            f"dataset '{dataset}' requested but the table has no dataset column", source=source
        )
    for column in dict.fromkeys(needed):
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            row = int(df["source_row"].iloc[i]) if "source_row" in df.columns else i + 1
            raise InputError(
                "must be a positive finite number",
                source=source,
                row=row,
                column=column,
                value=df[column].iloc[i],
            )
    return df


def _bucket(
    flops: FloatArray, budgets: Sequence[float] | None, rel_tol: float
) -> list[tuple[float, list[int]]]:
    """Group run indices by budget: ``(budget, members)`` in increasing budget."""
    tolerance = math.log1p(rel_tol)
    log_f = np.log(flops)
    if budgets is not None:
        targets = np.asarray(list(budgets), dtype=float)
        if targets.size == 0 or not (np.isfinite(targets).all() and (targets > 0).all()):
            raise InputError("budgets must be positive, finite FLOP counts", value=list(budgets))
        distance = np.abs(log_f[:, None] - np.log(targets)[None, :])
        nearest = np.argmin(distance, axis=1)
        near = distance[np.arange(flops.size), nearest] <= tolerance
        return [
            (float(t), np.flatnonzero(near & (nearest == i)).tolist())
            for i, t in sorted(enumerate(targets), key=lambda it: it[1])
            if (near & (nearest == i)).any()
        ]
    order = np.argsort(log_f, kind="stable")
    groups: list[list[int]] = []
    start = -math.inf
    for i in order:
        if log_f[i] - start > tolerance:
            groups.append([])
            start = log_f[i]
        groups[-1].append(int(i))
    return [(float(np.exp(log_f[g].mean())), g) for g in groups]


def _budget_minimum(budget: float, runs: pd.DataFrame) -> dict[str, float]:
    """Vertex of the parabola ``loss(log N)`` for one budget, checked to be interior."""
    log_n = np.log(runs["params"].to_numpy(dtype=float))
    log_d = np.log(runs["tokens"].to_numpy(dtype=float))
    loss = runs["loss"].to_numpy(dtype=float)
    sizes = np.unique(log_n).size
    if sizes < MIN_SIZES_PER_BUDGET:
        raise FitError(
            f"budget {budget:.3g} FLOPs has {sizes} model size(s); a parabola needs at least "
            f"{MIN_SIZES_PER_BUDGET}"
        )
    curvature, slope, const = np.polyfit(log_n, loss, 2)
    lo, hi = log_n.min(), log_n.max()
    if curvature <= 0:
        raise FitError(
            f"budget {budget:.3g} FLOPs: loss vs log(params) opens downward (no minimum); "
            "the sweep does not bracket the optimum"
        )
    vertex = -slope / (2.0 * curvature)
    if not lo < vertex < hi:
        side = "below the smallest" if vertex <= lo else "above the largest"
        raise FitError(
            f"budget {budget:.3g} FLOPs: the minimum ({math.exp(vertex):.3g} params) lies "
            f"{side} model size sampled ({math.exp(lo):.3g}..{math.exp(hi):.3g}); add sizes "
            "beyond it"
        )
    # tokens at the optimum from the runs' own N-D relation on this iso-FLOP line, so that
    # budgets counted other than 6ND (or slightly off the budget) stay consistent
    d_slope, d_intercept = np.polyfit(log_n, log_d, 1)
    return {
        "flops": budget,
        "runs": len(runs),
        "sizes": sizes,
        "params_opt": math.exp(vertex),
        "tokens_opt": math.exp(d_intercept + d_slope * vertex),
        "loss_opt": float(np.polyval([curvature, slope, const], vertex)),
        "curvature": 2.0 * curvature,
        "params_min": math.exp(lo),
        "params_max": math.exp(hi),
    }


def _power_law(log_c: FloatArray, log_y: FloatArray, level: float) -> PowerLawFit:
    """Least squares of ``log y`` on ``log C`` with a Student-t interval on the slope."""
    n = log_c.size
    slope, intercept = np.polyfit(log_c, log_y, 1)
    if n > 2:
        residuals = log_y - (intercept + slope * log_c)
        sxx = float(((log_c - log_c.mean()) ** 2).sum())
        se = math.sqrt(float(residuals @ residuals) / (n - 2) / sxx)
        half = float(stats.t.ppf(0.5 + level / 2.0, n - 2)) * se
        ci = (float(slope) - half, float(slope) + half)
    else:
        ci = (math.nan, math.nan)
    return PowerLawFit(exponent=float(slope), coefficient=math.exp(intercept), exponent_ci=ci)
