"""Plans with an over-training law ``L(C, M)``: the loss of a budget at a given M, and the M
that minimises the cost of training plus inference.

A model with ``N`` parameters trained on ``D = M·N`` tokens costs ``C = 6·N·D = 6·M·N²``
FLOPs to train and ``k_inf·N`` FLOPs per token served (``k_inf = 2``: one forward pass).
Serving ``T`` tokens, a model that reaches a target loss costs

    total(M) = C(M) + k_inf · N(M) · T,   with  L(C(M), M) = target,  N(M) = (C(M) / 6M)^½.

Training alone is cheapest near the compute-optimal M; inference favours smaller models
trained longer (higher M), as in Sardana et al. 2024 ("Beyond Chinchilla-optimal"). Intervals
are percentiles over the fit's bootstrap replicates (each replicate's own optimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, InputError
from scalinglab.laws.base import FloatArray, Law
from scalinglab.laws.overtraining import MULTIPLIER

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

#: tokens per parameter searched for the optimum
MULTIPLIER_RANGE = (0.5, 1e5)
_GRID = 241  # log-spaced multipliers (48 per decade)
_REFINE = 41  # points of the refining grid around the best one
_BISECTIONS = 64


@dataclass
class InferencePlan:
    """The tokens per parameter that minimise training plus inference cost at a target loss.

    Attributes
    ----------
    target_loss
        The loss every candidate model reaches, nats.
    inference_tokens
        Tokens served over the model's life.
    multiplier, params, tokens
        The optimum: tokens per parameter M*, model size N*, training tokens D*.
    training_flops, inference_flops, total_flops
        Its costs.
    compute_optimal
        The same quantities at the M that minimises training cost alone, for comparison.
    savings
        ``1 − total(M*) / total(compute-optimal M)``.
    ci
        Quantity → ``(low, high)`` over the bootstrap replicates (empty without them).
    level
        Level of :attr:`ci`.
    curve
        Total, training and inference FLOPs along M (the point estimate).
    law
        The law planned with.
    inference_flops_per_token_param, flops_per_token_param
        ``k_inf`` and ``k`` of the cost model.
    warnings
        Caveats (replicates without a solution, an optimum at the edge of the range).
    """

    target_loss: float
    inference_tokens: float
    multiplier: float
    params: float
    tokens: float
    training_flops: float
    inference_flops: float
    total_flops: float
    compute_optimal: dict[str, float]
    savings: float
    ci: dict[str, tuple[float, float]]
    level: float
    curve: pd.DataFrame
    law: str
    inference_flops_per_token_param: float
    flops_per_token_param: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the curve)."""
        return {
            "law": self.law,
            "target_loss": self.target_loss,
            "inference_tokens": self.inference_tokens,
            "inference_flops_per_token_param": self.inference_flops_per_token_param,
            "flops_per_token_param": self.flops_per_token_param,
            "optimum": {
                "multiplier": self.multiplier,
                "params": self.params,
                "tokens": self.tokens,
                "training_flops": self.training_flops,
                "inference_flops": self.inference_flops,
                "total_flops": self.total_flops,
            },
            "compute_optimal": dict(self.compute_optimal),
            "savings": self.savings,
            "level": self.level,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "warnings": list(self.warnings),
        }


def loss_at(
    fit: Fit,
    flops: FloatArray | list[float] | float,
    multiplier: FloatArray | list[float] | float,
    *,
    level: float = 0.95,
    flops_per_token_param: float = 6.0,
) -> pd.DataFrame:
    """Loss of a model trained with ``flops`` FLOPs at ``multiplier`` tokens per parameter.

    Parameters
    ----------
    fit
        A fit of an over-training law (inputs ``flops`` and ``multiplier``).
    flops, multiplier
        Budgets and tokens per parameter (broadcast against each other).
    level
        Level of the prediction interval (when the fit has bootstrap replicates): where a
        new run at that budget and M will land, run-to-run noise included.
    flops_per_token_param
        ``k`` in ``C = k·N·D``, to report the model size and tokens.

    Returns
    -------
    pandas.DataFrame
        ``flops``, ``multiplier``, ``params``, ``tokens``, ``loss`` and, with bootstrap
        replicates, the prediction interval ``low``, ``high``.
    """
    _check_law(fit.law)
    c, m = np.broadcast_arrays(
        np.atleast_1d(np.asarray(flops, dtype=float)),
        np.atleast_1d(np.asarray(multiplier, dtype=float)),
    )
    for name, arr in (("flops", c), ("multiplier", m)):
        bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
        if bad.size:
            raise InputError(f"{name} must be positive and finite", value=float(arr[bad[0]]))
    x = {"flops": c.astype(float), MULTIPLIER: m.astype(float)}
    params = np.sqrt(c / (flops_per_token_param * m))
    out = pd.DataFrame({"flops": c, "multiplier": m, "params": params, "tokens": m * params})
    out["loss"] = fit.predict(x)
    if fit.bootstrap_params is not None and len(fit.bootstrap_params):
        low, high = fit.predict_interval(x, level, kind="prediction")
        out["low"], out["high"] = low, high
    return out


def training_flops_for_loss(
    law: Law, theta: FloatArray, multiplier: FloatArray, target_loss: float
) -> FloatArray:
    """Training FLOPs ``C`` with ``L(C, M) = target_loss`` for each parameter row and M.

    Parameters
    ----------
    law
        An over-training law (its loss falls with compute at fixed M).
    theta
        Parameter vectors, shape ``(k, p)``.
    multiplier
        Tokens per parameter, shape ``(m,)``.
    target_loss
        Loss to reach, nats.

    Returns
    -------
    numpy.ndarray
        Shape ``(k, m)``; ``inf`` where the target is below what the law reaches at any
        compute (at or under its irreducible loss).
    """
    theta = np.atleast_2d(theta)
    m = np.asarray(multiplier, dtype=float)
    if law.name == "overtraining":
        # closed form: L = E + s(M)·C^−η with s(M) = a·M^η + b·M^−η
        e, a, b, eta = (theta[:, i, None] for i in range(4))
        scale = a * m[None, :] ** eta + b * m[None, :] ** -eta
        gap = target_loss - e
        with np.errstate(divide="ignore", invalid="ignore"):
            flops = np.where(gap > 0, (scale / np.where(gap > 0, gap, 1.0)) ** (1.0 / eta), np.inf)
        return np.asarray(flops, dtype=float)
    log_target = math.log(target_loss)
    lo = np.full((theta.shape[0], m.size), math.log(1e6))
    hi = np.full_like(lo, math.log(1e40))
    # bisection on log C, one row of parameters at a time (each row has its own points)
    for i in range(theta.shape[0]):
        row = theta[i : i + 1]
        top = law.log_predict(row, {"flops": np.exp(hi[i]), MULTIPLIER: m})[0]
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo[i] + hi[i])
            above = law.log_predict(row, {"flops": np.exp(mid), MULTIPLIER: m})[0] > log_target
            lo[i] = np.where(above, mid, lo[i])
            hi[i] = np.where(above, hi[i], mid)
        hi[i] = np.where(top > log_target, np.inf, hi[i])
    return np.exp(hi)


def inference_optimal(
    fit: Fit,
    inference_tokens: float,
    *,
    target_loss: float | None = None,
    flops: float | None = None,
    inference_flops_per_token_param: float = 2.0,
    flops_per_token_param: float = 6.0,
    level: float = 0.95,
) -> InferencePlan:
    """The tokens per parameter that minimise training plus inference FLOPs.

    Parameters
    ----------
    fit
        A fit of an over-training law (``overtraining`` or ``chinchilla_m``).
    inference_tokens
        Tokens the model will serve (``T``); 0 gives the compute-optimal plan.
    target_loss
        The loss the model must reach, nats; or give ``flops``:
    flops
        A training budget whose best reachable loss (at its compute-optimal M) is the target.
    inference_flops_per_token_param
        FLOPs per parameter per served token (2: a forward pass).
    flops_per_token_param
        ``k`` in ``C = k·N·D``.
    level
        Level of the bootstrap intervals.

    Returns
    -------
    InferencePlan

    Raises
    ------
    InputError
        Bad numbers, both or neither of ``target_loss`` and ``flops``, or a target the law
        cannot reach.
    """
    _check_law(fit.law)
    for name, value, strict in (
        ("inference_tokens", inference_tokens, False),
        ("inference_flops_per_token_param", inference_flops_per_token_param, True),
        ("flops_per_token_param", flops_per_token_param, True),
    ):
        if not (math.isfinite(value) and (value > 0 if strict else value >= 0)):
            raise InputError(
                f"{name} must be {'positive' if strict else 'non-negative'}", value=value
            )
    if not 0 < level < 1:
        raise InputError("the interval level must be between 0 and 1", value=level)
    grid = np.geomspace(*MULTIPLIER_RANGE, _GRID)
    if (target_loss is None) == (flops is None):
        raise InputError("give either a target loss or a training budget (flops)")
    if flops is not None:
        if not (math.isfinite(flops) and flops > 0):
            raise InputError("flops must be positive", value=flops)
        target_loss = float(
            np.min(fit.predict({"flops": np.full(grid.size, flops), MULTIPLIER: grid}))
        )
    assert target_loss is not None
    if not (math.isfinite(target_loss) and target_loss > 0):
        raise InputError("the target loss must be positive", value=target_loss)

    def total(theta: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        train = training_flops_for_loss(fit.law, theta, m, target_loss)
        params = np.sqrt(train / (flops_per_token_param * m))
        serve = inference_flops_per_token_param * params * inference_tokens
        return train + serve, train, serve

    def optimum(theta: FloatArray, weight_inference: bool) -> FloatArray:
        """M* per parameter row (NaN where the target cannot be reached)."""
        cost, train, _ = total(theta, grid)
        key = cost if weight_inference else train
        best = np.argmin(np.where(np.isfinite(key), key, np.inf), axis=1)
        out = np.full(theta.shape[0], np.nan)
        for i, j in enumerate(best):
            if not np.isfinite(key[i, j]):
                continue
            fine = np.geomspace(grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)], _REFINE)
            fine_cost, fine_train, _ = total(theta[i : i + 1], fine)
            fine_key = fine_cost if weight_inference else fine_train
            out[i] = fine[int(np.argmin(fine_key[0]))]
        return out

    theta = fit.theta[None, :]
    m_star = optimum(theta, True)[0]
    if not math.isfinite(m_star):
        e = fit.params.get(fit.law.irreducible or "", float("nan"))
        raise InputError(
            f"the law never reaches a loss of {target_loss:.4g} (its irreducible loss is "
            f"{e:.4g}); ask for a higher loss"
        )
    m_train = optimum(theta, False)[0]
    warnings: list[str] = []
    for value, what in ((m_star, "M*"), (m_train, "the compute-optimal M")):
        if value <= MULTIPLIER_RANGE[0] * 1.05 or value >= MULTIPLIER_RANGE[1] / 1.05:
            warnings.append(f"{what} = {value:.3g} is at the edge of the searched range")

    def quantities(m: float) -> dict[str, float]:
        cost, train, serve = total(theta, np.array([m]))
        params = math.sqrt(float(train[0, 0]) / (flops_per_token_param * m))
        return {
            "multiplier": float(m),
            "params": params,
            "tokens": float(m * params),
            "training_flops": float(train[0, 0]),
            "inference_flops": float(serve[0, 0]),
            "total_flops": float(cost[0, 0]),
        }

    best, reference = quantities(m_star), quantities(m_train)
    ci: dict[str, tuple[float, float]] = {}
    if fit.bootstrap_params is not None and len(fit.bootstrap_params):
        reps = fit.bootstrap_params
        m_reps = optimum(reps, True)
        ok = np.isfinite(m_reps)
        if (~ok).any():
            warnings.append(
                f"{int((~ok).sum())} of {len(reps)} bootstrap replicates never reach the target "
                "and were left out of the intervals"
            )
        if ok.any():
            cost, train, _ = total(reps[ok], m_reps[ok])  # (k, k): the diagonal is each row
            idx = np.arange(int(ok.sum()))
            train_d = train[idx, idx]
            params_d = np.sqrt(train_d / (flops_per_token_param * m_reps[ok]))
            tail = 50.0 * (1.0 - level)
            for name, values in (
                ("multiplier", m_reps[ok]),
                ("params", params_d),
                ("training_flops", train_d),
                ("total_flops", cost[idx, idx]),
            ):
                ci[name] = (
                    float(np.percentile(values, tail)),
                    float(np.percentile(values, 100 - tail)),
                )
    cost, train, serve = total(theta, grid)
    curve = pd.DataFrame(
        {
            "multiplier": grid,
            "training_flops": train[0],
            "inference_flops": serve[0],
            "total_flops": cost[0],
        }
    )
    return InferencePlan(
        target_loss=float(target_loss),
        inference_tokens=float(inference_tokens),
        **best,
        compute_optimal=reference,
        savings=1.0 - best["total_flops"] / reference["total_flops"],
        ci=ci,
        level=level,
        curve=curve,
        law=fit.law.name,
        inference_flops_per_token_param=inference_flops_per_token_param,
        flops_per_token_param=flops_per_token_param,
        warnings=warnings,
    )


def _check_law(law: Law) -> None:
    if tuple(law.inputs) != ("flops", MULTIPLIER):
        raise FitError(
            f"law '{law.name}' is not an over-training law of flops and multiplier; fit "
            "'overtraining' or 'chinchilla_m'"
        )
