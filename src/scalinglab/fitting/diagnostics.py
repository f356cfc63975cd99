"""Flags on a fit: what makes its numbers untrustworthy, each with what to do about it.

Every flag is one plain line (:class:`Diagnostic`): what is wrong, then the remedy. A clean
fit has none. The checks are law-agnostic: they read the law's parameters and bounds, its
floors (:meth:`~scalinglab.laws.base.Law.floors`), the data's range, the local curvature of
the objective and the bootstrap's spread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalinglab.fitting.parameters import ParameterMap
from scalinglab.fitting.uncertainty import log_parameter_condition
from scalinglab.laws.base import FloatArray, Law

#: a floor below this share of the lowest loss it sits under has collapsed to nothing
COLLAPSED_FLOOR_SHARE = 0.05
#: a parameter within this share of its finite range from a bound is "near" it
NEAR_BOUND_SHARE = 1e-3
#: condition number of the Gauss–Newton Hessian in log-parameters above which some
#: combination of parameters is not identified by the data
ILL_CONDITIONED = 1e10
#: orders of magnitude spanned by a positive parameter's 95% bootstrap interval that flag it
SPREAD_DECADES = 2.0
#: runs per free parameter below which a fit is flagged as thinly supported
MIN_RUNS_PER_PARAMETER = 3.0
#: forecasts further than this multiple of the largest fitted scale are flagged
FAR_EXTRAPOLATION = 10.0
#: share of bootstrap refits that may fail before the intervals are flagged
MAX_FAILED_SHARE = 0.05


@dataclass(frozen=True)
class Diagnostic:
    """One flag on a fit.

    Attributes
    ----------
    code
        Stable identifier (``"at_bound"``, ``"floor_collapsed"``, ``"floor_above_data"``,
        ``"ill_conditioned"``, ``"wide_bootstrap"``, ``"near_ties"``, ``"few_runs"``,
        ``"not_converged"``, ``"bootstrap_failed"``, ``"extrapolation"``, ``"note"``).
    message
        What is wrong, in one plain sentence with the numbers.
    advice
        What to do about it.
    parameter
        The parameter concerned, when there is one.
    """

    code: str
    message: str
    advice: str = ""
    parameter: str | None = None

    def __str__(self) -> str:
        return f"{self.message}: {self.advice}" if self.advice else self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "code": self.code,
            "message": self.message,
            "advice": self.advice,
            "parameter": self.parameter,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnostic:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            code=str(data["code"]),
            message=str(data["message"]),
            advice=str(data.get("advice") or ""),
            parameter=None if data.get("parameter") is None else str(data["parameter"]),
        )


def diagnose(
    law: Law,
    pmap: ParameterMap,
    theta: FloatArray,
    x: Mapping[str, FloatArray],
    y: FloatArray,
    weights: FloatArray,
    *,
    n_groups: int,
    converged: bool,
    near_ties: Sequence[Mapping[str, float]],
    bootstrap: FloatArray | None,
    bootstrap_failed: int,
) -> list[Diagnostic]:
    """Every flag that applies to a fitted law, in order of importance."""
    names = pmap.names
    value = dict(zip(names, map(float, theta), strict=True))
    flags: list[Diagnostic] = []
    if not converged:
        flags.append(
            Diagnostic(
                "not_converged",
                "the optimiser did not converge at the best start",
                "treat the parameters with care; fix or tie some, or raise max_iter",
            )
        )
    flags += _floor_flags(law, value, x, y)
    flags += _bound_flags(law, pmap, value)
    flags += _identification_flags(law, pmap, theta, x, weights, bootstrap)
    if near_ties:
        flags.append(
            Diagnostic(
                "near_ties",
                f"{len(near_ties)} distinct solution(s) fit within 0.1% of the best objective",
                "the data do not single out one optimum: fix or tie parameters, or add runs",
            )
        )
    n_free = len(pmap.free)
    if n_groups < MIN_RUNS_PER_PARAMETER * n_free:
        flags.append(
            Diagnostic(
                "few_runs",
                f"{n_free} free parameters fitted from {n_groups} runs "
                f"(fewer than {MIN_RUNS_PER_PARAMETER:g} per parameter)",
                "add runs (another model size or budget), or fit fewer parameters "
                "(fix some, or tie the exponents)",
            )
        )
    if bootstrap is not None and bootstrap_failed > MAX_FAILED_SHARE * len(bootstrap):
        flags.append(
            Diagnostic(
                "bootstrap_failed",
                f"{bootstrap_failed} of {len(bootstrap)} bootstrap refits did not converge",
                "the intervals may be too narrow; fit fewer parameters or add runs",
            )
        )
    return flags


def _floor_flags(
    law: Law, value: Mapping[str, float], x: Mapping[str, FloatArray], y: FloatArray
) -> list[Diagnostic]:
    """A floor (irreducible loss) collapsed to nothing, or above the losses it must stay under."""
    flags = []
    for name, below in law.floors().items():
        data = y if below == "loss" else np.asarray(x.get(below, []), dtype=float)
        if data.size == 0 or name not in value:
            continue
        lowest = float(np.min(data))
        what = "loss" if below == "loss" else f"'{below}'"
        if value[name] >= lowest:
            flags.append(
                Diagnostic(
                    "floor_above_data",
                    f"{name} = {value[name]:.4g} is not below the lowest observed {what} "
                    f"({lowest:.4g})",
                    f"the law cannot describe the lowest points; cap {name} below the data "
                    "(--cap-irreducible) or fix it",
                    name,
                )
            )
        elif value[name] < COLLAPSED_FLOOR_SHARE * lowest:
            flags.append(
                Diagnostic(
                    "floor_collapsed",
                    f"{name} = {value[name]:.3g} collapsed far below the lowest observed {what} "
                    f"({lowest:.4g})",
                    f"the data do not pin the floor; fix {name} (e.g. from a larger study), "
                    "tie the exponents, or add larger runs",
                    name,
                )
            )
    return flags


def _bound_flags(law: Law, pmap: ParameterMap, value: Mapping[str, float]) -> list[Diagnostic]:
    """Free parameters at or near a bound of theirs."""
    flags = []
    for name in pmap.free:
        spec = law.parameters()[pmap.names.index(name)]
        i = pmap.free.index(name)
        lo, hi = pmap.lower[i], pmap.upper[i]
        v = value[name]
        z = math.log(v) if spec.log_scale and v > 0 else v
        span = hi - lo if math.isfinite(hi - lo) else max(1.0, abs(z))
        for side, bound in (("lower", lo), ("upper", hi)):
            if not math.isfinite(bound) or abs(z - bound) > NEAR_BOUND_SHARE * span:
                continue
            shown = math.exp(bound) if spec.log_scale else bound
            flags.append(
                Diagnostic(
                    "at_bound",
                    f"parameter '{name}' = {v:.4g} is at its {side} bound ({shown:.4g})",
                    f"the data push it past its range: fix it (--fix {name}=VALUE), "
                    "or fit fewer parameters",
                    name,
                )
            )
    return flags


def _identification_flags(
    law: Law,
    pmap: ParameterMap,
    theta: FloatArray,
    x: Mapping[str, FloatArray],
    weights: FloatArray,
    bootstrap: FloatArray | None,
) -> list[Diagnostic]:
    """Directions the data do not identify: flat curvature, or a bootstrap over decades."""
    flags = []
    condition, weakest = log_parameter_condition(law, pmap, theta, x, weights)
    if condition > ILL_CONDITIONED:
        involved = [n for n, c in sorted(weakest.items(), key=lambda t: -abs(t[1])) if abs(c) > 0.3]
        flags.append(
            Diagnostic(
                "ill_conditioned",
                "the fit barely changes along a combination of "
                f"{', '.join(involved) or 'parameters'} "
                f"(Hessian condition {condition:.1e} in log-parameters)",
                "these trade off against each other: fix one of them, tie the exponents, "
                "or add a model size",
            )
        )
    if bootstrap is not None and len(bootstrap) >= 10:
        for j, name in enumerate(pmap.names):
            if name not in pmap.free:
                continue
            col = bootstrap[:, j]
            col = col[np.isfinite(col)]
            if col.size < 10 or np.any(col <= 0):
                continue
            lo, hi = np.percentile(col, [2.5, 97.5])
            decades = math.log10(hi / lo) if lo > 0 else math.inf
            if decades > SPREAD_DECADES:
                flags.append(
                    Diagnostic(
                        "wide_bootstrap",
                        f"the 95% bootstrap interval of '{name}' spans {decades:.1f} orders "
                        f"of magnitude [{lo:.3g}, {hi:.3g}]",
                        f"'{name}' is not identified by these runs: fix it, or add runs that "
                        "vary what it scales",
                        name,
                    )
                )
    return flags


def extrapolation_flag(ratio: float, what: str = "scale") -> Diagnostic | None:
    """A flag for a forecast ``ratio`` times beyond the largest fitted ``what``, if far."""
    if not math.isfinite(ratio) or ratio <= FAR_EXTRAPOLATION:
        return None
    return Diagnostic(
        "extrapolation",
        f"forecast at {ratio:.3g}× the largest fitted {what}",
        "errors grow with the extrapolation ratio; read the prediction interval, and "
        "backtest at a similar ratio before trusting it",
    )
