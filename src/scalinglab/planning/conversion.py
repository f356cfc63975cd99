"""Kaplan ↔ Chinchilla: non-embedding versus total parameter counts (Pearce & Song 2024).

Kaplan et al. (2020) counted non-embedding parameters ``N_\\E ≈ c·L·d²`` (``c = 12`` for a
GPT with a ``4d`` MLP); Hoffmann et al. (2022) counted all parameters ``N_T``. For models of a
fixed aspect ratio ``A = d/L``, ``d = (A·N_\\E/c)^(1/3)``, so the embedding parameters
``rows·d`` grow as ``N_\\E^(1/3)`` and

    N_T = N_\\E + γ·N_\\E^(1/3),   γ = rows·(A/c)^(1/3),

with ``rows`` the embedding rows (vocabulary, plus learned positions, plus the vocabulary
again for an untied head). Embeddings dominate small models, so exponents measured in one
count differ from those in the other at small scale and agree at large scale.

Reference: T. Pearce and J. Song, "Reconciling Kaplan and Chinchilla Scaling Laws", 2024.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.base import FloatArray

#: Kaplan et al.'s non-embedding parameters per layer per d_model² (attention 4d², MLP 8d²)
KAPLAN_PARAMS_PER_LAYER = 12.0


def embedding_gamma(
    aspect_ratio: float,
    vocab: int,
    *,
    context: int = 0,
    tied_embeddings: bool = True,
    params_per_layer: float = KAPLAN_PARAMS_PER_LAYER,
) -> float:
    """γ in ``N_T = N_\\E + γ·N_\\E^(1/3)`` for models of a fixed aspect ratio.

    Parameters
    ----------
    aspect_ratio
        ``d_model / layers``, held fixed across sizes.
    vocab
        Vocabulary size.
    context
        Rows of a learned position embedding (0 for rotary or none, as in Pearce & Song).
    tied_embeddings
        With an untied head the vocabulary counts twice.
    params_per_layer
        ``c`` in ``N_\\E = c·layers·d_model²``.

    Returns
    -------
    float
        γ (Pearce & Song's value is 47,491 for a 32k vocabulary and aspect ratio 39.2).
    """
    for name, value in (
        ("aspect_ratio", aspect_ratio),
        ("vocab", vocab),
        ("params_per_layer", params_per_layer),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise InputError(f"{name} must be positive", value=value)
    if context < 0:
        raise InputError("context must be non-negative", value=context)
    rows = vocab * (1 if tied_embeddings else 2) + context
    return float(rows * (aspect_ratio / params_per_layer) ** (1.0 / 3.0))


def total_from_nonembedding(n_nonembedding: float | FloatArray, gamma: float) -> FloatArray:
    """Total parameters ``N_\\E + γ·N_\\E^(1/3)`` from non-embedding parameters."""
    n = _positive(n_nonembedding, "n_nonembedding")
    return n + _gamma(gamma) * np.cbrt(n)


def nonembedding_from_total(n_total: float | FloatArray, gamma: float) -> FloatArray:
    """Inverse of :func:`total_from_nonembedding`.

    Solves ``u³ + γu = N_T`` for ``u = N_\\E^(1/3)`` (Cardano; one real root), in the form
    ``u = N_T / (w² + γ/3 + (γ/(3w))²)`` that avoids cancellation when embeddings dominate.
    """
    n = _positive(n_total, "n_total")
    g = _gamma(gamma)
    w = np.cbrt(n / 2.0 + np.sqrt(n**2 / 4.0 + (g / 3.0) ** 3))
    u = n / (w**2 + g / 3.0 + (g / (3.0 * w)) ** 2)
    return u**3


def total_param_slope(n_nonembedding: float | FloatArray, gamma: float) -> FloatArray:
    """``d log N_T / d log N_\\E = (N_\\E + γ/3·N_\\E^(1/3)) / (N_\\E + γ·N_\\E^(1/3))``.

    Between 1/3 (embeddings dominate) and 1 (large models).
    """
    n = _positive(n_nonembedding, "n_nonembedding")
    g = _gamma(gamma)
    x = np.cbrt(n) ** 2
    return (x + g / 3.0) / (x + g)


def implied_allocation_exponent(
    exponent: float,
    flops: float | FloatArray,
    *,
    coefficient: float,
    gamma: float,
    source: Literal["nonembedding", "total"] = "nonembedding",
) -> FloatArray:
    """Local allocation exponent in the other parameter count, at given budgets.

    Given the optimal size ``N*(C) = coefficient · C^exponent`` counted one way, the same
    optimal models counted the other way follow ``d log N*_other / d log C``:
    ``a_T = a_\\E · s`` and ``a_\\E = a_T / s`` with ``s`` from :func:`total_param_slope`
    at the optimum. The compute axis ``C`` is the one the source fit used; only the count of
    the (same) optimal models changes.

    Parameters
    ----------
    exponent
        Allocation exponent of the source fit (Kaplan: about 0.73 in non-embedding
        parameters).
    flops
        Budget(s), in the units ``coefficient`` was fitted with.
    coefficient
        Prefactor of the source fit, in parameters at ``flops = 1``.
    gamma
        γ from :func:`embedding_gamma`.
    source
        What the source fit counted: ``"nonembedding"`` (Kaplan) or ``"total"`` (Chinchilla).

    Returns
    -------
    numpy.ndarray
        The implied local exponent at each budget.
    """
    if not (exponent > 0 and math.isfinite(exponent)):
        raise InputError("exponent must be positive", value=exponent)
    if not (coefficient > 0 and math.isfinite(coefficient)):
        raise InputError("coefficient must be positive", value=coefficient)
    budgets = _positive(flops, "flops")
    optimum = coefficient * budgets**exponent
    if source == "nonembedding":
        return exponent * total_param_slope(optimum, gamma)
    if source == "total":
        return exponent / total_param_slope(nonembedding_from_total(optimum, gamma), gamma)
    raise InputError("source must be 'nonembedding' or 'total'", value=source)


def kaplan_exponent_from_chinchilla(
    alpha: float, beta: float, n_nonembedding: float | FloatArray, gamma: float
) -> FloatArray:
    """The exponent Kaplan's method measures when Chinchilla's law holds in total parameters.

    If ``L = E + A/N_T^α + B/D^β`` and one finds the optimal *non-embedding* size at a
    *non-embedding* compute ``C_\\E = 6·N_\\E·D`` (Kaplan's setting), the local exponent
    ``d log N*_\\E / d log C_\\E`` at the optimum ``N*_\\E`` is ``1/g`` with (Pearce & Song
    2024; ``x = N_\\E``)

        g = 1 − (1/β)·(x^(2/3) + γ/9)/(x^(2/3) + γ/3) + ((1+α)/β)·(x^(2/3) + γ/3)/(x^(2/3) + γ).

    It tends to Chinchilla's ``β/(α+β)`` for large models and to ``β/(α/3+β)`` for small
    ones, which explains Kaplan's larger exponent from small models.

    Parameters
    ----------
    alpha, beta
        Chinchilla exponents of parameters and data.
    n_nonembedding
        Kaplan-optimal non-embedding size(s) at which to evaluate the local exponent.
    gamma
        γ from :func:`embedding_gamma`.

    Returns
    -------
    numpy.ndarray
        Local exponents, one per size.
    """
    if not (alpha > 0 and beta > 0 and math.isfinite(alpha + beta)):
        raise InputError(
            f"alpha and beta must be positive and finite, got alpha={alpha}, beta={beta}"
        )
    n = _positive(n_nonembedding, "n_nonembedding")
    g = _gamma(gamma)
    x = np.cbrt(n) ** 2
    inverse = (
        1.0 - (x + g / 9.0) / (x + g / 3.0) / beta + (1.0 + alpha) / beta * (x + g / 3.0) / (x + g)
    )
    return 1.0 / inverse


def _positive(values: float | FloatArray, name: str) -> FloatArray:
    array = np.asarray(values, dtype=float)
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise InputError(f"{name} must be positive and finite", value=float(array[bad].flat[0]))
    return array


def _gamma(gamma: float) -> float:
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise InputError("gamma must be non-negative and finite", value=gamma)
    return float(gamma)
