"""Expected errors that come true: quantiles of realized errors of the same method.

Every "expected error" scalinglab states is read off realized forecast errors, never off a
fit's own residuals: the ColPret backtests (Choshen, Zhang & Andreas 2024's collection of
published training runs; each family's largest model forecast from its smaller ones, by each
fitting choice, over a grid of model sizes and training fractions), restricted to the same
method and to forecasts that extrapolated about as far. The statement is two numbers, "median
X%, 90% of cases below Y%", with the cases and families behind them.

*Extrapolation ratio*: compute of the forecast point over the largest compute fitted, both as
N·D (the target's last checkpoint in a backtest). *Comparable*: within a factor
10^:data:`WINDOW_DECADES` of the ratio either way, the window widened by half at a time until
it holds :data:`MIN_CASES` cases from :data:`MIN_FAMILIES` families.

The cases ship with the package (``evaluation/data/colpret_backtests.csv``, written by
``scripts/build_expected_errors.py`` from ``../shared/data/colpret``), so users need no data of
their own; ``exclude_family`` leaves a family's own cases out (leave-one-family-out, the way
the claims are checked in ``benchmarks/backtest_recommend.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import InputError
from scalinglab.evaluation.backtest import BacktestReport
from scalinglab.evaluation.colpret import colpret_backtests

#: first half-width of the window of comparable ratios, in decades (10^0.5 ≈ 3.2×)
WINDOW_DECADES = 0.5
#: the window widens until it holds this many cases ...
MIN_CASES = 20
#: ... from this many families
MIN_FAMILIES = 3
#: the quantile stated as the bound
BOUND_QUANTILE = 0.9
#: where the cases come from (for messages and JSON)
SOURCE = "ColPret backtests (Choshen et al. 2024), evaluation/data/colpret_backtests.csv"
#: columns of the case table
CASE_COLUMNS: tuple[str, ...] = (
    "family",
    "method",
    "k",
    "fraction",
    "target_fraction",
    "extrapolation",
    "are",
    "plausible",
)


@dataclass(frozen=True)
class ExpectedError:
    """The realized errors of a method at comparable extrapolation, as fractions.

    Attributes
    ----------
    method
        The fitting method (a backtest choice, e.g. ``"default"``, ``"guide"``, ``"pca"``).
    extrapolation_ratio
        The ratio asked about.
    median, q90
        Median and 90th percentile of the comparable cases' ARE (0.02 is 2%).
    n_cases, n_families
        How many cases, from how many families.
    ratio_range
        The extrapolation ratios the cases span (the window used).
    source
        Where the cases come from.
    """

    method: str
    extrapolation_ratio: float
    median: float
    q90: float
    n_cases: int
    n_families: int
    ratio_range: tuple[float, float]
    source: str = SOURCE

    def statement(self) -> str:
        """``"median 1.2%, 90% of cases below 4.5%"``."""
        return f"median {_percent(self.median)}, 90% of cases below {_percent(self.q90)}"

    def describe(self) -> str:
        """The statement with what it rests on, in one line."""
        lo, hi = self.ratio_range
        return (
            f"{self.statement()} ({self.n_cases} backtests of '{self.method}' in "
            f"{self.n_families} ColPret families at {lo:.3g}–{hi:.3g}× compute extrapolation)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON, the statement included."""
        return asdict(self) | {"ratio_range": list(self.ratio_range), "text": self.statement()}


def _percent(value: float) -> str:
    return f"{100 * value:.2g}%" if value < 0.1 else f"{100 * value:.0f}%"


def cases_from_report(report: BacktestReport) -> pd.DataFrame:
    """The case table of a backtest report: its forecasts, by method and extrapolation.

    Results without a forecast (a choice that could not fit a scenario) are left out.
    """
    rows = [
        {
            "family": r.family,
            "method": r.choice,
            "k": r.k,
            "fraction": r.fraction,
            "target_fraction": r.target_fraction,
            "extrapolation": r.extrapolation,
            "are": r.are,
            "plausible": r.plausible,
        }
        for r in report.results
        if math.isfinite(r.are) and math.isfinite(r.extrapolation)
    ]
    return pd.DataFrame(rows, columns=list(CASE_COLUMNS))


def methods(cases: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The methods with cases, sorted."""
    table = colpret_backtests() if cases is None else cases
    return tuple(sorted(map(str, table["method"].unique())))


def expected_error(
    method: str,
    extrapolation_ratio: float,
    *,
    exclude_family: str | None = None,
    cases: pd.DataFrame | None = None,
) -> ExpectedError:
    """What error to expect from ``method`` forecasting ``extrapolation_ratio``× past its data.

    Parameters
    ----------
    method
        A fitting method with backtests (see :func:`methods`).
    extrapolation_ratio
        Compute (N·D) of the forecast over the largest compute fitted; 1 is no extrapolation.
    exclude_family
        Leave this family's cases out (to check the claim on it, leave-one-family-out).
    cases
        The case table (default: the shipped ColPret cases,
        :func:`~scalinglab.evaluation.colpret.colpret_backtests`).

    Returns
    -------
    ExpectedError
        Median and 90th percentile of the comparable cases' ARE.

    Raises
    ------
    InputError
        An unknown method, a ratio that is not a positive number, or too few cases of the
        method at all (fewer than :data:`MIN_CASES`, or from fewer than
        :data:`MIN_FAMILIES` families).
    """
    table = colpret_backtests() if cases is None else cases
    if not (isinstance(extrapolation_ratio, int | float) and extrapolation_ratio > 0) or not (
        math.isfinite(extrapolation_ratio)
    ):
        raise InputError(
            "the extrapolation ratio must be a positive number", value=extrapolation_ratio
        )
    known = methods(table)
    if method not in known:
        raise InputError(
            f"no backtests of method '{method}'; methods with backtests: {', '.join(known)}",
            value=method,
        )
    mine = table[table["method"] == method]
    if exclude_family is not None:
        mine = mine[mine["family"] != exclude_family]
    n_families = mine["family"].nunique()
    if len(mine) < MIN_CASES or n_families < MIN_FAMILIES:
        raise InputError(
            f"too few backtests of method '{method}' to state an expected error: {len(mine)} "
            f"case(s) in {n_families} famil{'y' if n_families == 1 else 'ies'} (need "
            f"{MIN_CASES} in {MIN_FAMILIES})"
        )
    distance = np.abs(
        np.log10(mine["extrapolation"].to_numpy(dtype=float)) - math.log10(extrapolation_ratio)
    )
    half = WINDOW_DECADES
    while True:
        near = mine[distance <= half]
        if len(near) >= MIN_CASES and near["family"].nunique() >= MIN_FAMILIES:
            break
        half *= 1.5
    errors = near["are"].to_numpy(dtype=float)
    ratios = near["extrapolation"].to_numpy(dtype=float)
    return ExpectedError(
        method=method,
        extrapolation_ratio=float(extrapolation_ratio),
        median=float(np.median(errors)),
        q90=float(np.quantile(errors, BOUND_QUANTILE)),
        n_cases=int(errors.size),
        n_families=int(near["family"].nunique()),
        ratio_range=(float(ratios.min()), float(ratios.max())),
    )


def expected_for_report(
    report: BacktestReport, *, exclude_family: str | None = None, cases: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Each choice's realized backtest error beside what ColPret says to expect of it.

    Returns
    -------
    pandas.DataFrame
        Indexed by choice: ``median_are`` and ``median_extrapolation`` of the report's
        forecasts, then the expected ``expected_median`` and ``expected_q90`` at that
        extrapolation, ``expected_cases``, and ``text`` (the statement, or why there is none).
    """
    table = report.table().dropna(subset=["are"])
    rows = []
    for choice, part in table.groupby("choice", sort=True):
        ratio = float(part["extrapolation"].median())
        row: dict[str, Any] = {
            "choice": choice,
            "median_are": float(part["are"].median()),
            "median_extrapolation": ratio,
        }
        try:
            expected = expected_error(
                str(choice), ratio, exclude_family=exclude_family, cases=cases
            )
            row |= {
                "expected_median": expected.median,
                "expected_q90": expected.q90,
                "expected_cases": expected.n_cases,
                "text": expected.statement(),
            }
        except InputError as err:
            row |= {
                "expected_median": math.nan,
                "expected_q90": math.nan,
                "expected_cases": 0,
                "text": str(err),
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index("choice") if rows else pd.DataFrame()
