"""Compute scaling laws: loss as a function of model size N, training tokens D, or compute C.

All forms are written as log-sum-exp in log space (Besiroglu et al. 2024), which keeps the
objective smooth and the gradients exact over the many orders of magnitude these laws span.
"""

from __future__ import annotations

import math

import numpy as np

from scalinglab.laws.base import Features, FloatArray, Law, Parameter, register

# Initial grids in the style of Hoffmann et al. / Besiroglu et al.: scales on a log grid,
# exponents on a linear grid. Five values each gives the 3,125-start Chinchilla grid.
_LOG_E_GRID = tuple(math.exp(v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))
_LOG_SCALE_GRID = tuple(math.exp(v) for v in (0.0, 5.0, 10.0, 15.0, 20.0))
_EXPONENT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)


def _lse_weights(terms: list[FloatArray]) -> tuple[FloatArray, list[FloatArray]]:
    """``log Σ exp(terms)`` and the softmax weight of each term (all broadcast together)."""
    top = terms[0]
    for t in terms[1:]:
        top = np.maximum(top, t)
    exps = [np.exp(t - top) for t in terms]
    total = exps[0]
    for e in exps[1:]:
        total = total + e
    inv = 1.0 / total
    return top + np.log(total), [e * inv for e in exps]


class FloorPlusPowers(Law):
    """``L = E + Σ_j C_j · x_j^(−a_j)``: an irreducible loss plus power-law terms.

    Subclasses name the terms in :attr:`terms` as ``(coefficient, exponent, input)``.
    """

    irreducible = "E"
    terms: tuple[tuple[str, str, str], ...]

    def parameters(self) -> tuple[Parameter, ...]:
        params = [
            Parameter(
                "E",
                0.0,
                math.inf,
                _LOG_E_GRID,
                log_scale=True,
                description="irreducible loss, nats/token",
            ),
        ]
        for coef, expo, inp in self.terms:
            params.append(
                Parameter(
                    coef,
                    0.0,
                    math.inf,
                    _LOG_SCALE_GRID,
                    log_scale=True,
                    description=f"scale of the {inp} term, nats/token",
                )
            )
            params.append(
                Parameter(expo, 0.0, 5.0, _EXPONENT_GRID, description=f"exponent of {inp}")
            )
        return tuple(params)

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        # in linear space: each term's x^(−a) is at most 1 (a ≥ 0, x ≥ 1), so nothing
        # overflows, and it takes one exp per term where log-sum-exp takes two (this is the
        # engine's innermost loop: bootstrap refits spend most of their time here)
        theta = np.atleast_2d(theta)
        idx = {n: i for i, n in enumerate(self.param_names)}
        total = np.repeat(theta[:, idx["E"], None], np.asarray(x[self.inputs[0]]).size, axis=1)
        powers = []
        for coef, expo, inp in self.terms:
            log_x = np.log(np.asarray(x[inp], dtype=float))[None, :]
            power = np.exp(-theta[:, idx[expo], None] * log_x)
            total += theta[:, idx[coef], None] * power
            powers.append((power, log_x))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log(total)
        if not grad:
            return value
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inv = 1.0 / total
        g = np.empty((theta.shape[0], total.shape[1], theta.shape[1]))
        g[:, :, idx["E"]] = inv
        for (coef, expo, _), (power, log_x) in zip(self.terms, powers, strict=True):
            share = power * inv  # d log L / d C
            g[:, :, idx[coef]] = share
            g[:, :, idx[expo]] = -theta[:, idx[coef], None] * share * log_x
        return value, g

    def linear_coefficients(self) -> tuple[str, ...]:
        """``E`` and every term's coefficient: the loss is linear in them."""
        return ("E", *(coef for coef, _, _ in self.terms))

    def linear_basis(self, theta: FloatArray, x: Features) -> FloatArray:
        """``[1, x_1^(−a_1), ...]`` per parameter row, shape ``(k, n, 1 + terms)``."""
        theta = np.atleast_2d(theta)
        idx = {n: i for i, n in enumerate(self.param_names)}
        columns = []
        for _, expo, inp in self.terms:
            log_x = np.log(np.asarray(x[inp], dtype=float))[None, :]
            columns.append(np.exp(-theta[:, idx[expo], None] * log_x))
        return np.stack([np.ones_like(columns[0]), *columns], axis=2)


@register
class Chinchilla(FloorPlusPowers):
    """Hoffmann et al. 2022: ``L(N, D) = E + A/N^α + B/D^β`` (N parameters, D tokens)."""

    name = "chinchilla"
    inputs = ("params", "tokens")
    terms = (("A", "alpha", "params"), ("B", "beta", "tokens"))


@register
class ComputeOnly(FloorPlusPowers):
    """``L(C) = E + A·C^(−α)`` with C the training compute in FLOPs."""

    name = "compute"
    inputs = ("flops",)
    terms = (("A", "alpha", "flops"),)


@register
class ParamsOnly(FloorPlusPowers):
    """``L(N) = E + A/N^α``: models trained to convergence or on a fixed token budget."""

    name = "params_only"
    inputs = ("params",)
    terms = (("A", "alpha", "params"),)


@register
class TokensOnly(FloorPlusPowers):
    """``L(D) = E + B/D^β``: one model size, many token budgets."""

    name = "tokens_only"
    inputs = ("tokens",)
    terms = (("B", "beta", "tokens"),)


class _NestedPowers(Law):
    """``L = E + ((A/N)^(α/β) + B/D)^β``; Kaplan's form is the same with ``E = 0``.

    With ``E = 0``, ``A = N_c``, ``B = D_c``, ``α = α_N`` and ``β = α_D`` this is Kaplan et al.
    2020, eq. 1.5: ``[(N_c/N)^(α_N/α_D) + D_c/D]^α_D``.
    """

    inputs = ("params", "tokens")
    has_floor: bool
    names: tuple[str, str, str, str]  # scale of N, scale of D, exponent of N, exponent of D

    def parameters(self) -> tuple[Parameter, ...]:
        a, b, alpha, beta = self.names
        params = [
            Parameter(
                a,
                0.0,
                math.inf,
                tuple(math.exp(v) for v in (10.0, 20.0, 30.0)),
                log_scale=True,
                description="parameter scale N_c, parameters",
            ),
            Parameter(
                b,
                0.0,
                math.inf,
                tuple(math.exp(v) for v in (10.0, 20.0, 30.0)),
                log_scale=True,
                description="token scale D_c, tokens",
            ),
            Parameter(alpha, 1e-3, 3.0, (0.05, 0.1, 0.3, 0.6), description="exponent of N"),
            Parameter(beta, 1e-3, 3.0, (0.05, 0.1, 0.3, 0.6), description="exponent of D"),
        ]
        if self.has_floor:
            params.insert(
                0,
                Parameter(
                    "E",
                    0.0,
                    math.inf,
                    _LOG_E_GRID,
                    log_scale=True,
                    description="irreducible loss, nats/token",
                ),
            )
        return tuple(params)

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        theta = np.atleast_2d(theta)
        idx = {n: i for i, n in enumerate(self.param_names)}
        a, b, alpha, beta = (theta[:, idx[n], None] for n in self.names)
        log_n = np.log(np.asarray(x["params"], dtype=float))[None, :]
        log_d = np.log(np.asarray(x["tokens"], dtype=float))[None, :]
        ratio = alpha / beta
        n_gap = np.log(a) - log_n
        u = ratio * n_gap
        v = np.log(b) - log_d
        s, (w_u, w_v) = _lse_weights([u, v])
        inner = beta * s  # log of the bracket raised to β
        if self.has_floor:
            log_e = np.broadcast_to(np.log(theta[:, idx["E"], None]), inner.shape)
            value, (w_e, w_inner) = _lse_weights([log_e, inner])
        else:
            value, w_inner = inner, np.ones_like(inner)
        if not grad:
            return value
        g = np.empty((theta.shape[0], log_n.shape[1], theta.shape[1]))
        g[:, :, idx[self.names[0]]] = w_inner * w_u * alpha / a
        g[:, :, idx[self.names[1]]] = w_inner * beta * w_v / b
        g[:, :, idx[self.names[2]]] = w_inner * w_u * n_gap
        g[:, :, idx[self.names[3]]] = w_inner * (s - w_u * u)
        if self.has_floor:
            g[:, :, idx["E"]] = w_e / theta[:, idx["E"], None]
        return value, g


@register
class KaplanLSE(_NestedPowers):
    """``L(N, D) = E + ((A/N)^(α/β) + B/D)^β``, the form Brandfonbrener et al. fit per dataset."""

    name = "kaplan_lse"
    irreducible = "E"
    has_floor = True
    names = ("A", "B", "alpha", "beta")


@register
class Kaplan(_NestedPowers):
    """Kaplan et al. 2020: ``L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D`` (no floor).

    Kaplan counted non-embedding parameters; pass that column as ``params`` to follow them.
    """

    name = "kaplan"
    has_floor = False
    names = ("N_c", "D_c", "alpha_N", "alpha_D")
