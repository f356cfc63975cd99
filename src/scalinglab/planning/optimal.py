"""Compute-optimal allocation: the model size and token count that minimise loss at a budget.

For a law ``L(N, D)`` and a budget of ``C = k·N·D`` FLOPs (``k = 6`` by default), the optimum
``N*(C)``, ``D*(C) = C / (k N*)`` minimises ``L`` along the iso-FLOP line. For Chinchilla's
``E + A/N^α + B/D^β`` it has a closed form (Hoffmann et al. 2022, eq. 4):

    N* = G (C/k)^a,  D* = G⁻¹ (C/k)^b,  G = (αA / (βB))^(1/(α+β)),
    a = β/(α+β),  b = α/(α+β).

Other laws of ``params`` and ``tokens`` (``kaplan``, ``kaplan_lse``...) are minimised
numerically over ``log N``, for all bootstrap replicates at once. Confidence intervals are
percentile intervals over the fit's bootstrap replicates (parameters refitted on resampled
runs), so they carry the fit's uncertainty through the non-linear map to ``N*``, ``D*``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from scalinglab.errors import FitError, InputError
from scalinglab.laws.base import FloatArray, Law

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

#: parameter names of the closed-form law
CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")
#: quantities a plan reports, each with a confidence interval when the fit has replicates
PLAN_QUANTITIES = ("params", "tokens", "tokens_per_param", "loss")

# Numeric search over log N: a coarse grid over the whole feasible range, then grids zoomed
# on the brackets of the rows' minima, then a parabola through the last three points.
_GRID_POINTS = 257
_ZOOM_ROUNDS = 8
_ZOOM_STOP = 1e-5  # grid step in log N below which zooming stops


@dataclass
class Plan:
    """Compute-optimal allocations at one or more budgets.

    All arrays have one entry per budget, in the order given.

    Attributes
    ----------
    flops
        Training budgets, FLOPs.
    params
        Optimal model size ``N*`` (in the units the fit's ``params`` were counted in).
    tokens
        Optimal training tokens ``D* = flops / (flops_per_token_param · N*)``.
    tokens_per_param
        ``D* / N*``.
    loss
        Predicted loss at the optimum, nats/token.
    level
        Confidence level of :attr:`ci`.
    ci
        Quantity name (``params``, ``tokens``, ``tokens_per_param``, ``loss``, and for the
        closed form ``params_exponent``, ``tokens_exponent``) → ``(lower, upper)`` percentile
        bootstrap bounds; empty when the fit has no bootstrap replicates.
    law
        Name of the law planned with.
    flops_per_token_param
        ``k`` in ``C = k·N·D``.
    params_exponent, tokens_exponent
        Allocation exponents ``a``, ``b`` (``N* ∝ C^a``, ``D* ∝ C^b``) for Chinchilla's law;
        ``None`` for laws without a closed form.
    n_samples
        Bootstrap replicates behind the intervals (those with an interior optimum).
    warnings
        Caveats (replicates without an optimum, which were left out of the intervals).
    """

    flops: FloatArray
    params: FloatArray
    tokens: FloatArray
    tokens_per_param: FloatArray
    loss: FloatArray
    level: float
    ci: dict[str, tuple[Any, Any]]
    law: str
    flops_per_token_param: float
    params_exponent: float | None = None
    tokens_exponent: float | None = None
    n_samples: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_records(self) -> list[dict[str, float]]:
        """One dictionary per budget: each quantity and its bounds (``<name>_lo``, ``_hi``).

        ``loss_lo``/``loss_hi`` bound the law's optimal loss (a confidence interval);
        ``loss_new_run_lo``/``_hi``, when present, bound the loss a new run trained at the plan
        will measure (a prediction interval: it adds run-to-run noise).
        """
        records = []
        for i, flops in enumerate(self.flops):
            row = {"flops": float(flops)}
            for name in PLAN_QUANTITIES:
                row[name] = float(getattr(self, name)[i])
                if name in self.ci:
                    row[f"{name}_lo"] = float(self.ci[name][0][i])
                    row[f"{name}_hi"] = float(self.ci[name][1][i])
            if "loss_new_run" in self.ci:
                row["loss_new_run_lo"] = float(self.ci["loss_new_run"][0][i])
                row["loss_new_run_hi"] = float(self.ci["loss_new_run"][1][i])
            records.append(row)
        return records

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: the law, exponents with intervals, and one row per budget."""
        exponents: dict[str, Any] = {}
        for name in ("params_exponent", "tokens_exponent"):
            value = getattr(self, name)
            if value is not None:
                exponents[name] = value
                if name in self.ci:
                    exponents[f"{name}_ci"] = list(self.ci[name])
        return {
            "law": self.law,
            "flops_per_token_param": self.flops_per_token_param,
            "level": self.level,
            "n_samples": self.n_samples,
            **exponents,
            "budgets": self.to_records(),
            "warnings": list(self.warnings),
        }


def allocation_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """Chinchilla's allocation exponents ``a = β/(α+β)``, ``b = α/(α+β)``.

    ``N* ∝ C^a`` and ``D* ∝ C^b``; ``a + b = 1``.

    Parameters
    ----------
    alpha, beta
        Exponents of the parameter and data terms of ``E + A/N^α + B/D^β``; positive.

    Returns
    -------
    tuple of float
        ``(a, b)``.
    """
    if not (alpha > 0 and beta > 0 and math.isfinite(alpha + beta)):
        raise InputError(
            f"alpha and beta must be positive and finite, got alpha={alpha}, beta={beta}"
        )
    return beta / (alpha + beta), alpha / (alpha + beta)


def compute_optimal(
    fit_or_params: Fit | Mapping[str, float],
    flops: float | FloatArray | list[float],
    *,
    flops_per_token_param: float = 6.0,
    level: float = 0.95,
) -> Plan:
    """Compute-optimal model size, tokens, tokens per parameter and loss at each budget.

    Parameters
    ----------
    fit_or_params
        A :class:`~scalinglab.fitting.Fit` of a law of ``params`` and ``tokens`` (its
        bootstrap replicates, when present, give the intervals), or Chinchilla parameters
        ``{"E", "A", "B", "alpha", "beta"}``.
    flops
        Budget(s) in FLOPs; positive.
    flops_per_token_param
        ``k`` in ``C = k·N·D`` (6 counts a forward and backward pass per parameter per token).
    level
        Confidence level of the percentile intervals.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        For a non-positive budget, ``flops_per_token_param`` or a level outside (0, 1).
    FitError
        If the law has no ``params``/``tokens`` inputs or no optimum inside the feasible range
        (e.g. a parameter exponent of 0).
    """
    budgets = np.atleast_1d(np.asarray(flops, dtype=float)).reshape(-1)
    bad = ~np.isfinite(budgets) | (budgets <= 0)
    if budgets.size == 0 or bad.any():
        value = budgets[bad][0] if bad.any() else flops
        raise InputError("budgets must be positive, finite FLOP counts", value=value)
    if not (flops_per_token_param > 0 and math.isfinite(flops_per_token_param)):
        raise InputError("flops_per_token_param must be positive", value=flops_per_token_param)
    if not 0 < level < 1:
        raise InputError("the confidence level must be between 0 and 1", value=level)

    law, names, thetas = _parameter_sets(fit_or_params)
    if law is None or law.name == "chinchilla":
        params, tokens, loss = _chinchilla_optimum(names, thetas, budgets, flops_per_token_param)
    else:
        params, tokens, loss = _numeric_optimum(law, thetas, budgets, flops_per_token_param)
    law_name = "chinchilla" if law is None else law.name

    if not np.isfinite(params[0]).all():
        raise FitError(
            f"law '{law_name}' has no compute-optimal model size inside the feasible range "
            "(loss keeps falling towards one end of the iso-FLOP line); check its exponents"
        )
    ratio = tokens / params
    plan = Plan(
        flops=budgets,
        params=params[0],
        tokens=tokens[0],
        tokens_per_param=ratio[0],
        loss=loss[0],
        level=level,
        ci={},
        law=law_name,
        flops_per_token_param=flops_per_token_param,
    )
    if law_name == "chinchilla":
        col = {n: i for i, n in enumerate(names)}
        plan.params_exponent, plan.tokens_exponent = allocation_exponents(
            float(thetas[0, col["alpha"]]), float(thetas[0, col["beta"]])
        )
    if thetas.shape[0] > 1:
        _add_intervals(plan, names, thetas[1:], params[1:], tokens[1:], ratio[1:], loss[1:])
    if not isinstance(fit_or_params, Mapping) and fit_or_params.noise is not None and plan.ci:
        # a run trained at the plan will measure the law's loss there plus run-to-run noise
        point = {"params": plan.params, "tokens": plan.tokens}
        plan.ci["loss_new_run"] = fit_or_params.predict_interval(point, level, kind="prediction")
    return plan


def _parameter_sets(
    fit_or_params: Fit | Mapping[str, float],
) -> tuple[Law | None, tuple[str, ...], FloatArray]:
    """The law (``None`` for bare Chinchilla parameters), parameter names and an array whose
    first row is the best estimate and the other rows the bootstrap replicates."""
    if isinstance(fit_or_params, Mapping):
        missing = [n for n in CHINCHILLA_PARAMS if n not in fit_or_params]
        if missing:
            raise InputError(
                f"Chinchilla parameters need {', '.join(CHINCHILLA_PARAMS)}; "
                f"missing {', '.join(missing)}"
            )
        theta = np.array([[float(fit_or_params[n]) for n in CHINCHILLA_PARAMS]])
        return None, CHINCHILLA_PARAMS, theta
    law = fit_or_params.law
    names = law.param_names
    theta = law.theta_vector(fit_or_params.params)[None, :]
    boot = fit_or_params.bootstrap_params
    if boot is not None and len(boot):
        theta = np.vstack([theta, np.asarray(boot, dtype=float).reshape(-1, len(names))])
    if not {"params", "tokens"} <= set(law.inputs) or len(law.inputs) != 2:
        raise FitError(
            f"law '{law.name}' reads {', '.join(law.inputs)}; compute-optimal planning needs "
            "a law of params and tokens (e.g. chinchilla, kaplan, kaplan_lse)"
        )
    return law, names, theta


def _chinchilla_optimum(
    names: tuple[str, ...], thetas: FloatArray, budgets: FloatArray, k: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Closed-form optimum for every parameter row × budget, each of shape ``(rows, budgets)``."""
    col = {n: i for i, n in enumerate(names)}
    e, a, b, alpha, beta = (thetas[:, col[n], None] for n in CHINCHILLA_PARAMS)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = alpha + beta
        log_g = (np.log(alpha * a) - np.log(beta * b)) / total
        log_c = np.log(budgets / k)[None, :]
        log_n = log_g + beta / total * log_c
        log_d = -log_g + alpha / total * log_c
        params, tokens = np.exp(log_n), np.exp(log_d)
        loss = e + a * np.exp(-alpha * log_n) + b * np.exp(-beta * log_d)
        # no interior optimum unless both terms decay with their input
        valid = (alpha > 0) & (beta > 0) & (a > 0) & (b > 0)
    invalid = np.broadcast_to(~valid, params.shape)
    return (
        np.where(invalid, np.nan, params),
        np.where(invalid, np.nan, tokens),
        np.where(invalid, np.nan, loss),
    )


def _numeric_optimum(
    law: Law, thetas: FloatArray, budgets: FloatArray, k: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Minimise ``log L`` over ``log N`` on each iso-FLOP line, for every parameter row.

    The best estimate (row 0) is searched on its own, so that its grids can zoom all the way;
    the bootstrap replicates share grids, which stop zooming once they cover the replicates'
    spread. The feasible range is ``N ≥ 1`` and ``D ≥ 1``; a row whose minimum sits at an end
    of it has no interior optimum and gets NaN. Returns arrays of shape ``(rows, budgets)``.
    """
    parts = [thetas[:1], thetas[1:]] if thetas.shape[0] > 1 else [thetas]
    results = [
        np.stack([_search(law, part, math.log(budget / k)) for budget in budgets], axis=-1)
        for part in parts
    ]
    params, tokens, loss = np.concatenate(results, axis=1)
    return params, tokens, loss


def _search(law: Law, thetas: FloatArray, log_budget: float) -> FloatArray:
    """Optimal ``(params, tokens, loss)`` of each row on one iso-FLOP line, shape ``(3, rows)``.

    ``log_budget`` is ``log N + log D`` along the line.
    """
    rows = thetas.shape[0]
    out = np.full((3, rows), np.nan)
    if log_budget <= 0:  # not even one token for one parameter
        return out

    def log_loss(grid: FloatArray) -> FloatArray:
        x = {"params": np.exp(grid), "tokens": np.exp(log_budget - grid)}
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            values = law.log_predict(thetas, x)
        return np.where(np.isfinite(values), values, np.inf)

    grid = np.linspace(0.0, log_budget, _GRID_POINTS)
    values = log_loss(grid)
    best = np.argmin(values, axis=1)
    interior = (best > 0) & (best < grid.size - 1)
    if not interior.any():
        return out
    for _ in range(_ZOOM_ROUNDS):
        width = grid[-1] - grid[0]
        lo = grid[np.maximum(best[interior] - 1, 0)].min()
        hi = grid[np.minimum(best[interior] + 1, grid.size - 1)].max()
        if hi - lo > 0.5 * width or grid[1] - grid[0] < _ZOOM_STOP:
            break  # the rows' brackets span the grid: zooming gains nothing
        grid = np.linspace(lo, hi, _GRID_POINTS)
        values = log_loss(grid)
        best = np.clip(np.argmin(values, axis=1), 1, grid.size - 2)
    # parabola through the minimum and its neighbours: vertex position and value
    idx = np.arange(rows)
    best = np.clip(best, 1, grid.size - 2)
    f0, f1, f2 = values[idx, best - 1], values[idx, best], values[idx, best + 1]
    curvature = f0 - 2.0 * f1 + f2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (f0 - f2) / curvature, 0.0)
        vertex = np.where(curvature > 0, f1 - (f0 - f2) ** 2 / (8.0 * curvature), f1)
    log_n = grid[best] + shift * (grid[1] - grid[0])
    out[0, interior] = np.exp(log_n[interior])
    out[1, interior] = np.exp(log_budget - log_n[interior])
    out[2, interior] = np.exp(vertex[interior])
    return out


def _add_intervals(
    plan: Plan,
    names: tuple[str, ...],
    samples: FloatArray,
    params: FloatArray,
    tokens: FloatArray,
    ratio: FloatArray,
    loss: FloatArray,
) -> None:
    """Percentile intervals over the replicates with an optimum at every budget."""
    ok = np.isfinite(params).all(axis=1) & np.isfinite(loss).all(axis=1)
    dropped = int((~ok).sum())
    if dropped:
        plan.warnings.append(
            f"{dropped} of {ok.size} bootstrap replicates have no optimum inside the feasible "
            "range and are left out of the intervals"
        )
    plan.n_samples = int(ok.sum())
    if plan.n_samples < 2:
        plan.warnings.append("too few usable bootstrap replicates for intervals")
        return
    tail = 50.0 * (1.0 - plan.level)
    for name, values in zip(PLAN_QUANTITIES, (params, tokens, ratio, loss), strict=True):
        lo, hi = np.percentile(values[ok], [tail, 100.0 - tail], axis=0)
        plan.ci[name] = (lo, hi)
    if plan.law == "chinchilla":
        col = {n: i for i, n in enumerate(names)}
        alpha, beta = samples[ok, col["alpha"]], samples[ok, col["beta"]]
        for name, values in (
            ("params_exponent", beta / (alpha + beta)),
            ("tokens_exponent", alpha / (alpha + beta)),
        ):
            lo, hi = np.percentile(values, [tail, 100.0 - tail])
            plan.ci[name] = (float(lo), float(hi))
