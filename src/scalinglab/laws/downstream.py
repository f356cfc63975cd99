"""Downstream laws: a task's top-1 error as a function of validation loss, or of compute.

Three forms in use, each fitted by the same engine (log residuals of the error):

- ``error_exp`` — Gadre et al. 2024: ``Err(L) = ε − k·exp(−γ·L)``, an exponential decay of
  error as the validation loss ``L`` falls; ``ε`` is the error the decay starts from.
- ``error_sigmoid`` — the second step of OLMo's model ladder (Bhagia et al. 2024), written
  for error: ``Err(L) = floor + (chance − floor)·σ(k·(L − L0))``. At high loss the error sits
  at the task's chance level, at low loss at ``floor`` (one minus the accuracy ceiling); the
  chance level is held at the value the data give unless freed.
- ``error_compute`` — error straight from training compute, the same sigmoid in ``log C``:
  ``Err(C) = floor + (chance − floor)·σ(−k·(ln C − ln C_mid))``. It ignores over-training
  (two runs of one budget at different tokens per parameter get one forecast), which is what
  the two-step forecast (compute → loss → error) adds.

All three are linear in their scale parameters (``ε`` and ``k``; ``floor`` and ``chance``),
which the engine solves for by variable projection.
"""

from __future__ import annotations

import math

import numpy as np

from scalinglab.laws.base import Features, FloatArray, Law, Parameter, register

#: name of the validation-loss feature the loss → error laws read (nats per token)
LOSS_FEATURE = "loss"
_ERROR_GRID = (0.05, 0.3, 0.6, 0.9)
#: range of Gadre et al.'s decay rate γ: below 0.02 the decay is a straight line over any
#: range of language-model losses (and γ trades off against k), above 20 a step
GAMMA_BOUNDS = (0.02, 20.0)


@register
class ErrorExp(Law):
    """Gadre et al. 2024: ``Err(L) = ε − k·exp(−γ·L)`` (L a validation loss, nats)."""

    name = "error_exp"
    inputs = (LOSS_FEATURE,)

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter(
                "epsilon", 0.0, math.inf, _ERROR_GRID, description="error the decay starts from"
            ),
            Parameter(
                "k",
                0.0,
                math.inf,
                tuple(math.exp(v) for v in (-2.0, 0.0, 2.0, 4.0)),
                log_scale=True,
                description="scale of the decay (error units)",
            ),
            # the grid spans the bounds, so that no minimum lies beyond the lattice
            Parameter(
                "gamma",
                GAMMA_BOUNDS[0],
                GAMMA_BOUNDS[1],
                tuple(np.geomspace(*GAMMA_BOUNDS, 25)),
                description="rate of the decay, per nat of loss",
            ),
        )

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        eps, k, gamma = (theta[:, i, None] for i in range(3))
        loss = np.asarray(x[LOSS_FEATURE], dtype=float)[None, :]
        decay = np.exp(-gamma * loss)
        with np.errstate(invalid="ignore", divide="ignore"):
            error = eps - k * decay
            value = np.where(error > 0, np.log(np.where(error > 0, error, 1.0)), np.nan)
        if not grad:
            return value
        inv = 1.0 / error
        g = np.empty((*value.shape, 3))
        g[..., 0] = inv
        g[..., 1] = -decay * inv
        g[..., 2] = k * loss * decay * inv
        return value, g

    def linear_coefficients(self) -> tuple[str, ...]:
        """``ε`` and ``k``: the error is linear in them."""
        return ("epsilon", "k")

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        """``[1, −exp(−γL)]`` per parameter row, shape ``(k, n, 2)``."""
        theta = np.atleast_2d(theta)
        loss = np.asarray(x[LOSS_FEATURE], dtype=float)[None, :]
        decay = np.exp(-theta[:, 2, None] * loss)
        return np.stack([np.ones_like(decay), -decay], axis=2)


class _ErrorSigmoid(Law):
    """``Err = floor·(1 − s) + chance·s`` with ``s = σ(sign·k·(u(x) − mid))``.

    Subclasses give the input ``u`` (:meth:`_position`), the sign (+1: error grows with the
    input), and the midpoint parameter.
    """

    sign: float
    slope: Parameter
    mid: Parameter

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter(
                "floor",
                0.0,
                1.0,
                _ERROR_GRID,
                description="error at the low end (1 − accuracy ceiling)",
            ),
            Parameter(
                "chance",
                0.0,
                1.0,
                (0.5, 0.75),
                description="error at the high end (1 − chance accuracy)",
            ),
            self.slope,
            self.mid,
        )

    def _position(self, x: Features) -> FloatArray:
        raise NotImplementedError

    def _mid(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The midpoint in the units of :meth:`_position`, and its derivative in θ."""
        mid = theta[:, 3, None]
        return mid, np.ones_like(mid)

    def _share(self, theta: FloatArray, x: Features) -> tuple[FloatArray, ...]:
        """``s`` and what its derivatives need: the input offset from the midpoint."""
        k = theta[:, 2, None]
        mid, dmid = self._mid(theta)
        offset = self._position(x)[None, :] - mid
        # σ(t) through tanh: never overflows
        s = 0.5 * (1.0 + np.tanh(0.5 * self.sign * k * offset))
        return s, offset, k, dmid

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        floor, chance = theta[:, 0, None], theta[:, 1, None]
        s, offset, k, dmid = self._share(theta, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            error = floor * (1.0 - s) + chance * s
            value = np.log(error)
        if not grad:
            return value
        inv = 1.0 / error
        ds = (chance - floor) * s * (1.0 - s) * self.sign * inv  # d log Err / d (k·offset)
        g = np.empty((*value.shape, 4))
        g[..., 0] = (1.0 - s) * inv
        g[..., 1] = s * inv
        g[..., 2] = ds * offset
        g[..., 3] = -ds * k * dmid
        return value, g

    def linear_coefficients(self) -> tuple[str, ...]:
        """``floor`` and ``chance``: the error is linear in them."""
        return ("floor", "chance")

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        """``[1 − s, s]`` per parameter row, shape ``(k, n, 2)``."""
        s = self._share(np.atleast_2d(theta), x)[0]
        return np.stack([1.0 - s, s], axis=2)


@register
class ErrorSigmoid(_ErrorSigmoid):
    """OLMo ladder: ``Err(L) = floor + (chance − floor)·σ(k·(L − L0))`` (L validation loss)."""

    name = "error_sigmoid"
    inputs = (LOSS_FEATURE,)
    sign = 1.0
    slope = Parameter(
        "k",
        0.1,
        40.0,
        tuple(np.geomspace(0.1, 40.0, 14)),
        description="steepness of the sigmoid, per nat of loss",
    )
    mid = Parameter(
        "L0",
        0.5,
        12.0,
        tuple(np.linspace(0.5, 12.0, 24)),
        description="loss at the midpoint between floor and chance, nats",
    )

    def _position(self, x: Features) -> FloatArray:
        return np.asarray(x[LOSS_FEATURE], dtype=float)


@register
class ErrorCompute(_ErrorSigmoid):
    """Error from compute: ``Err(C) = floor + (chance − floor)·σ(−k·ln(C / C_mid))``."""

    name = "error_compute"
    inputs = ("flops",)
    sign = -1.0
    slope = Parameter(
        "k",
        0.01,
        5.0,
        tuple(np.geomspace(0.01, 5.0, 14)),
        description="steepness of the sigmoid, per unit of ln C",
    )
    mid = Parameter(
        "flops_mid",
        # bounds that exp(log(bound)) reproduces exactly: the optimiser works on log C_mid,
        # and a fit at a bound must read back within it
        math.exp(math.log(1e10)),
        math.exp(math.log(1e32)),
        tuple(10.0**e for e in range(10, 33)),
        log_scale=True,
        description="compute at the midpoint between chance and floor, FLOPs",
    )

    def _position(self, x: Features) -> FloatArray:
        return np.log(np.asarray(x["flops"], dtype=float))

    def _mid(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        c_mid = theta[:, 3, None]
        return np.log(c_mid), 1.0 / c_mid
