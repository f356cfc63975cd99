"""Loss-to-loss laws: the loss on one dataset as a function of the loss on another.

Brandfonbrener et al. 2024 ("Loss-to-Loss Prediction: Scaling Laws for All Datasets") show
that for models of the same size and data budget, losses on two datasets follow a shifted
power law ``L_y = K · (L_x − E_x)^κ + E_y``, where ``E_x`` and ``E_y`` are the irreducible
losses of compute scaling-law fits on each dataset. The law's one input is ``loss_x``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from scalinglab.laws.base import Features, FloatArray, Law, Parameter, register


@register
class ShiftedPowerLaw(Law):
    """``L_y = K · (L_x − E_x)^κ + E_y`` (losses in nats).

    ``E_x`` and ``E_y`` are usually held fixed at the irreducible losses of per-dataset
    compute fits (``fixed=`` in :func:`scalinglab.fitting.fit_law`); the engine then fits
    ``K`` and ``κ``. Points with ``L_x <= E_x`` are outside the law's domain: their log
    prediction is NaN, and :mod:`scalinglab.evaluation.transfer` rejects them before fitting.
    """

    name: ClassVar[str] = "shifted_power"
    inputs: ClassVar[tuple[str, ...]] = ("loss_x",)
    irreducible: ClassVar[str | None] = "E_y"

    def parameters(self) -> tuple[Parameter, ...]:
        """``K``, ``kappa``, ``E_x``, ``E_y``, in this order."""
        return (
            Parameter("K", 0.0, math.inf, (0.3, 1.0, 3.0), True, "scale of the power law"),
            Parameter("kappa", 0.0, math.inf, (0.5, 1.0, 2.0), True, "exponent (slope in log-log)"),
            Parameter("E_x", 0.0, math.inf, (0.5, 1.5), False, "irreducible loss on x, nats"),
            Parameter("E_y", 0.0, math.inf, (0.5, 1.5), False, "irreducible loss on y, nats"),
        )

    def floors(self) -> dict[str, str]:
        """``E_y`` stays below the losses on y, ``E_x`` below the losses on x it translates."""
        return {"E_y": "loss", "E_x": "loss_x"}

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        """``log L_y`` for ``k`` parameter vectors at ``n`` points (see :class:`Law`)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        k_scale, kappa, e_x, e_y = (theta[:, i : i + 1] for i in range(4))
        loss_x = np.asarray(x["loss_x"], dtype=float)[None, :]
        gap = loss_x - e_x
        with np.errstate(invalid="ignore", divide="ignore"):
            # log of the power-law term; NaN outside the domain (gap <= 0)
            log_gap = np.where(gap > 0, np.log(np.where(gap > 0, gap, 1.0)), np.nan)
            log_term = np.log(k_scale) + kappa * log_gap
            log_f = np.logaddexp(log_term, np.log(e_y))
        if not grad:
            return log_f
        # w = K·gap^κ / L_y, the power-law term's share of the prediction
        with np.errstate(invalid="ignore", over="ignore"):
            w = np.exp(log_term - log_f)
            g = np.empty((*log_f.shape, 4))
            g[..., 0] = w / k_scale
            g[..., 1] = w * log_gap
            g[..., 2] = -w * kappa / gap
            g[..., 3] = np.exp(-log_f)
        return log_f, g
