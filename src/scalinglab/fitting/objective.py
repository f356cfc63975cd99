"""The objective every fit minimises: robust losses on log residuals, summed over points.

``r = log(predicted) − log(observed)``; :class:`RobustLoss` is ρ(r), :class:`LawObjective`
the weighted sum for a law, batched over many parameter vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from scalinglab.errors import FitError
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws.base import FloatArray, Law

LossName = Literal["huber", "squares"]


@dataclass(frozen=True)
class RobustLoss:
    """Per-point loss ρ(r) and its derivative.

    Parameters
    ----------
    kind
        ``"huber"`` (quadratic within ``delta``, linear outside; Hoffmann et al.'s choice) or
        ``"squares"`` (plain least squares on log residuals).
    delta
        Huber threshold on the log residual (1e-3 ≈ 0.1% relative error).
    overestimate_penalty
        Multiplier on ρ where the law over-predicts (r > 0); 1 is symmetric. Values > 1 make
        forecasts err on the optimistic side less often.
    """

    kind: LossName = "huber"
    delta: float = 1e-3
    overestimate_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("huber", "squares"):
            raise FitError(f"unknown loss '{self.kind}'; use 'huber' or 'squares'")
        if not self.delta > 0:
            raise FitError(f"Huber delta must be positive, got {self.delta}")
        if not self.overestimate_penalty > 0:
            raise FitError(
                f"overestimate_penalty must be positive, got {self.overestimate_penalty}"
            )

    def value_and_slope(self, r: FloatArray) -> tuple[FloatArray, FloatArray]:
        """ρ(r) and dρ/dr, elementwise."""
        if self.kind == "squares":
            rho, slope = 0.5 * r * r, r
        else:
            # slope = clip(r, ±δ); then ρ = slope·(r − slope/2) is r²/2 inside, δ(|r| − δ/2) out
            slope = np.clip(r, -self.delta, self.delta)
            rho = slope * (r - 0.5 * slope)
        if self.overestimate_penalty != 1.0:
            scale = np.where(r > 0, self.overestimate_penalty, 1.0)
            rho, slope = rho * scale, slope * scale
        return rho, slope


#: largest number of (parameter vector × point × parameter) gradient entries evaluated at
#: once (~128 MB of float64): bounds the memory of a batch of many starts on many points
CHUNK_ENTRIES = 1 << 24


class LawObjective:
    """Σ_i w_i ρ(log f(x_i; θ) − log y_i), batched over rows, with its gradient in z.

    Public so that callers that batch many fits of one law (backtests: one row of weights per
    scenario) can drive :func:`~scalinglab.fitting.optimize.batched_lbfgs` themselves.

    Parameters
    ----------
    law, pmap, x, loss
        The law, its parameter map, its features ``(n,)`` and the robust loss.
    log_y, weights
        Log observed losses and point weights: ``(n,)`` shared by every row, or ``(R, n)``
        one data replicate each (bootstrap resamples, backtest scenarios).
    replicate
        Which replicate each optimiser row fits, ``(rows,)``; ``None``: row ``i`` fits
        replicate ``i`` (when ``log_y`` or ``weights`` are 2-D).
    """

    def __init__(
        self,
        law: Law,
        pmap: ParameterMap,
        x: Mapping[str, FloatArray],
        log_y: FloatArray,
        weights: FloatArray,
        loss: RobustLoss,
        replicate: NDArray[np.intp] | None = None,
    ) -> None:
        self.law, self.pmap, self.x, self.log_y, self.loss = law, pmap, x, log_y, loss
        self.weights = weights
        self.replicate = replicate
        n = log_y.shape[-1]
        self._chunk_rows = max(1, CHUNK_ENTRIES // max(1, n * len(pmap.names)))

    def __call__(self, z: FloatArray, rows: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """Objective ``(k,)`` and gradient ``(k, q)`` of the given rows at their points ``z``."""
        if z.shape[0] <= self._chunk_rows:
            return self._evaluate(z, rows)
        parts = [
            self._evaluate(z[i : i + self._chunk_rows], rows[i : i + self._chunk_rows])
            for i in range(0, z.shape[0], self._chunk_rows)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _evaluate(self, z: FloatArray, rows: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        theta = self.pmap.theta(z)
        data_rows = rows if self.replicate is None else self.replicate[rows]
        log_y = self.log_y if self.log_y.ndim == 1 else self.log_y[data_rows]
        w = self.weights if self.weights.ndim == 1 else self.weights[data_rows]
        with np.errstate(all="ignore"):
            log_f, dlog_f = self.law.log_predict(theta, self.x, grad=True)
            rho, slope = self.loss.value_and_slope(log_f - np.atleast_2d(log_y))
            value = np.sum(w * rho, axis=1)
            g_theta = np.einsum("kn,knp->kp", w * slope, dlog_f)
            g_z = self.pmap.grad_z(theta, g_theta)
        bad = ~np.isfinite(value) | ~np.all(np.isfinite(g_z), axis=1)
        value[bad] = np.inf
        g_z[bad] = 0.0
        return value, g_z
