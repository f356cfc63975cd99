"""Bootstrap of a loss-to-loss fit that refits the irreducible losses inside every resample.

The shifted power law ``L_y = K·(L_x − E_x)^κ + E_y`` takes ``E_x`` and ``E_y`` from compute
fits of each loss (fixed, or as upper bounds of a joint fit). Holding them fixed while the
pairs are resampled leaves out most of a forecast's uncertainty: far past the fitted compute,
the curvature they set dominates. Here one resample of the *model configurations* (N, D) is
drawn per replicate and shared by the three fits it feeds: the compute law on ``x``, the
compute law on ``y``, and the pairs, each refitted from its whole start set (no refit is
seeded from the point estimate).

Configurations rather than runs are the clusters: the two runs of a train-to-train pair are
two models of the same size and budget, and a run's losses on two datasets are one model.
Each replicate gives every configuration a Poisson(1) count (the Poisson bootstrap), drawn
once for all the configurations of a table, so that a loss's compute fit is resampled the same
way in every pair it takes part in and its replicates can be cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.errors import FitError
from scalinglab.evaluation.backtest import (
    Parameterisation,
    parameterisation,
    solve_weight_rows,
)
from scalinglab.evaluation.subspace import SubspaceLaw
from scalinglab.fitting import Fit, LawObjective, RobustLoss
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws.base import FloatArray
from scalinglab.laws.transfer import ShiftedPowerLaw

#: significant digits to which (params, tokens) must agree to be one configuration
CONFIG_DIGITS = 6
#: starts of every pair refit: K = κ = 1, and each free floor at these fractions of its upper
#: bound (both free: the corners and the centre of the box, where the objective's ridge runs
#: from "no floor" to "the compute fits' floors")
PAIR_STARTS_ONE_FREE: tuple[float, ...] = (0.0, 0.5, 0.99)
PAIR_STARTS_BOTH_FREE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.0, 0.99),
    (0.99, 0.0),
    (0.99, 0.99),
    (0.5, 0.5),
)
#: a free floor's upper bound sits this far (relatively) below the lowest loss it shifts
BELOW_LOWEST = 1e-6


def config_key(
    params: Sequence[float] | pd.Series, tokens: Sequence[float] | pd.Series
) -> list[str]:
    """One text key per model configuration: ``params`` and ``tokens`` to 6 digits."""
    digits = CONFIG_DIGITS - 1
    return [
        f"{float(n):.{digits}e}|{float(d):.{digits}e}" for n, d in zip(params, tokens, strict=True)
    ]


@dataclass(frozen=True)
class ConfigResamples:
    """Poisson(1) bootstrap counts of every configuration of a table, one row per replicate.

    Attributes
    ----------
    keys
        Configuration key → column of ``counts`` (see :func:`config_key`).
    counts
        ``(B, len(keys))`` counts.
    seed
        Seed they were drawn with.
    fitted
        Replicates already refitted on these draws, e.g. a loss's irreducible loss under a
        compute law (filled by :func:`scalinglab.evaluation.transfer.fit_transfer`).
    """

    keys: dict[str, int]
    counts: FloatArray
    seed: int
    fitted: dict[tuple[str, str, bool], FloatArray] = field(default_factory=dict)

    @classmethod
    def draw(cls, observations: pd.DataFrame, n_boot: int, seed: int = 0) -> ConfigResamples:
        """Draw ``n_boot`` replicates over the configurations of ``observations``.

        Raises
        ------
        FitError
            If ``n_boot`` is not positive.
        """
        if n_boot < 1:
            raise FitError(f"bootstrap must be a positive number of replicates, got {n_boot}")
        keys = sorted(set(config_key(observations["params"], observations["tokens"])))
        counts = np.random.default_rng(seed).poisson(1.0, size=(n_boot, len(keys)))
        return cls({k: i for i, k in enumerate(keys)}, counts.astype(float), seed)

    @property
    def n_boot(self) -> int:
        """Number of replicates."""
        return int(self.counts.shape[0])

    def weights(
        self, params: Sequence[float] | pd.Series, tokens: Sequence[float] | pd.Series
    ) -> FloatArray:
        """Counts of the given configurations, ``(B, n)``.

        Raises
        ------
        FitError
            If a configuration was not in the table the counts were drawn for.
        """
        keys = config_key(params, tokens)
        missing = [k for k in keys if k not in self.keys]
        if missing:
            raise FitError(
                f"configuration {missing[0]} (params|tokens) is not among the resampled ones"
            )
        return self.counts[:, [self.keys[k] for k in keys]]


def _usable(weights: FloatArray, n_free: int) -> NDArray[np.bool_]:
    """Replicates that keep more points than free parameters (a Poisson draw may keep few)."""
    return np.asarray(np.sum(weights > 0, axis=1) > n_free)


def compute_replicates(result: Fit, rows: pd.DataFrame, resamples: ConfigResamples) -> FloatArray:
    """Refit a compute law on every replicate of its runs; parameters ``(B, p)``.

    Parameters
    ----------
    result
        The point fit (its law; its objective's robust loss is the default Huber).
    rows
        The runs it was fitted on (``params``, ``tokens``, ``loss``).
    resamples
        The configuration counts.

    Returns
    -------
    numpy.ndarray
        One parameter vector per replicate in ``result.law.param_names`` order; NaN rows for
        replicates that keep too few runs to fit.
    """
    law = result.law
    x = law.features(rows)
    y = rows["loss"].to_numpy(dtype=float)
    weights = resamples.weights(rows["params"], rows["tokens"])
    variant = parameterisation(law, "all", None, x, y)
    out = np.full((resamples.n_boot, len(law.param_names)), np.nan)
    ok = _usable(weights, len(variant.pmap.free))
    if ok.any():
        theta, _ = solve_weight_rows(
            variant,
            weights[ok],
            lambda w, _owner: LawObjective(
                variant.law, variant.pmap, x, np.log(y), w, RobustLoss()
            ),
        )
        # a centred parameterisation reports its base law's parameters
        out[ok] = variant.law.base_theta(theta) if isinstance(variant.law, SubspaceLaw) else theta
    return out


@dataclass(frozen=True)
class Floor:
    """How one irreducible loss of the shifted power law is set, per replicate.

    Attributes
    ----------
    value
        ``(B,)``: the fixed value (``free=False``) or the upper bound of the free one.
    free
        Fitted in ``[0, value]``, or held at ``value``.
    """

    value: FloatArray
    free: bool


class _PairObjective:
    """The shifted power law's objective with each row's floors scaled by its replicate's.

    The optimiser sees each free floor as a fraction in ``[0, 1]`` of its replicate's upper
    bound (and a fixed one as the fraction 1), so that one box serves every replicate.
    """

    def __init__(
        self,
        pmap: ParameterMap,
        loss_x: FloatArray,
        log_y: FloatArray,
        weights: FloatArray,
        scale_x: FloatArray,
        scale_y: FloatArray,
    ) -> None:
        self.inner = LawObjective(
            ShiftedPowerLaw(), pmap, {"loss_x": loss_x}, log_y, weights, RobustLoss()
        )
        self.scale = np.column_stack([scale_x, scale_y])  # per problem row

    def __call__(self, z: FloatArray, rows: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        inner = self.inner
        fractions = inner.pmap.theta(z)
        theta = fractions.copy()
        theta[:, 2:] *= self.scale[rows]
        with np.errstate(all="ignore"):
            log_f, dlog_f = inner.law.log_predict(theta, inner.x, grad=True)
            rho, slope = inner.loss.value_and_slope(log_f - inner.log_y[None, :])
            w = inner.weights[rows]
            value = np.sum(w * rho, axis=1)
            g_theta = np.einsum("kn,knp->kp", w * slope, dlog_f)
            g_theta[:, 2:] *= self.scale[rows]
            g_z = inner.pmap.grad_z(fractions, g_theta)
        bad = ~np.isfinite(value) | ~np.all(np.isfinite(g_z), axis=1)
        value[bad] = np.inf
        g_z[bad] = 0.0
        return value, g_z


def pair_replicates(
    loss_x: FloatArray, loss_y: FloatArray, weights: FloatArray, floor_x: Floor, floor_y: Floor
) -> FloatArray:
    """Refit the shifted power law on every replicate of the pairs; ``(B, 4)`` parameters.

    Parameters
    ----------
    loss_x, loss_y
        The pairs' losses (nats), ``(n,)``.
    weights
        ``(B, n)`` replicate counts of the pairs.
    floor_x, floor_y
        ``E_x`` and ``E_y`` per replicate: fixed, or free below a bound. Either is kept a
        relative :data:`BELOW_LOWEST` below the lowest loss it shifts (``L − E > 0``).

    Returns
    -------
    numpy.ndarray
        ``K``, ``kappa``, ``E_x``, ``E_y`` per replicate; NaN rows for replicates that keep
        too few pairs or whose floors are not finite.
    """
    law = ShiftedPowerLaw()
    top_x = float(np.min(loss_x)) * (1.0 - BELOW_LOWEST)
    top_y = float(np.min(loss_y)) * (1.0 - BELOW_LOWEST)
    scale_x = np.minimum(floor_x.value, top_x)
    scale_y = np.minimum(floor_y.value, top_y)
    fixed = {name: 1.0 for name, floor in (("E_x", floor_x), ("E_y", floor_y)) if not floor.free}
    bounds = {name: (0.0, 1.0) for name in ("E_x", "E_y") if name not in fixed}
    pmap = ParameterMap.build(law, fixed=fixed, bounds=bounds)
    if floor_x.free and floor_y.free:
        floors = np.array(PAIR_STARTS_BOTH_FREE, dtype=float)
    elif floor_x.free or floor_y.free:
        one = np.array(PAIR_STARTS_ONE_FREE, dtype=float)
        floors = np.column_stack(
            [one if floor_x.free else np.ones_like(one), one if floor_y.free else np.ones_like(one)]
        )
    else:
        floors = np.ones((1, 2))
    theta0 = np.column_stack([np.ones((len(floors), 2)), floors])
    variant = Parameterisation(
        law, pmap, np.clip(pmap.z_from_theta(theta0), pmap.lower, pmap.upper), fixed
    )
    out = np.full((weights.shape[0], 4), np.nan)
    ok = (
        _usable(weights, len(pmap.free))
        & np.isfinite(scale_x)
        & np.isfinite(scale_y)
        & (scale_x >= 0)
        & (scale_y >= 0)
    )
    if not ok.any():
        return out
    log_y = np.log(loss_y)
    sx, sy = scale_x[ok], scale_y[ok]
    fractions, _ = solve_weight_rows(
        variant,
        weights[ok],
        lambda w, owner: _PairObjective(pmap, loss_x, log_y, w, sx[owner], sy[owner]),
    )
    fractions[:, 2] *= sx
    fractions[:, 3] *= sy
    out[ok] = fractions
    return out
