"""Robust losses on log residuals ``r = log(predicted) − log(observed)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from scalinglab.errors import FitError
from scalinglab.laws.base import FloatArray

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
