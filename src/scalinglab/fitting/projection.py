"""Variable projection: starts whose linear coefficients are already solved for.

Many laws are linear in some of their parameters: Chinchilla's ``L = E + A·N^−α + B·D^−β`` is
``E·1 + A·φ_A + B·φ_B`` with a basis that depends on the exponents only. For given exponents,
the best ``(E, A, B)`` is a small non-negative least-squares problem, so a multi-start grid
over all five parameters collapses onto the lattice of its exponent values (3,125 starts onto
25 exponent pairs), each point carrying the coefficients that fit best there rather than the
grid's guesses (Golub & Pereyra's variable projection, as in simple-scaling-laws). The least
squares are on relative residuals ``(f − y)/y ≈ log f − log y``, the engine's residuals near a
fit; the robust objective is then evaluated, and minimised, from these starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws.base import FloatArray, Law

#: a coefficient the least squares set to zero starts at this share of the mean loss, so that
#: the optimiser can still grow it (on the log scale a zero could never move)
ZERO_COEFFICIENT_SHARE = 1e-3
#: added to the diagonal of the (unit-diagonal) normal equations: keeps them invertible
RIDGE = 1e-10
#: decimals to which lattice coordinates are compared when the grid is reduced to its lattice
LATTICE_DECIMALS = 10


@dataclass(frozen=True)
class Lattice:
    """Projected starts: one per distinct combination of the non-linear parameters."""

    z: FloatArray  # (m, q) free-parameter vectors, linear coefficients solved for
    shape: tuple[int, ...] | None  # lattice shape (row-major) when the points form a product
    axes: NDArray[np.intp]  # the columns of z the lattice spans (the non-linear parameters)

    def on_open_edge(self, row: int, lower: FloatArray, upper: FloatArray) -> bool:
        """Whether point ``row`` is on the lattice's edge where the bounds allow going further.

        A minimum there may belong to a basin beyond the grid that the lattice cannot see.
        """
        if self.shape is None:
            return False
        index = np.unravel_index(row, self.shape)
        for column, i, size in zip(self.axes, index, self.shape, strict=True):
            value = self.z[row, column]
            if size > 1 and (
                (i == 0 and value > lower[column]) or (i == size - 1 and value < upper[column])
            ):
                return True
        return False


def project_starts(
    law: Law,
    pmap: ParameterMap,
    z0: FloatArray,
    x: Mapping[str, FloatArray],
    y: FloatArray,
    weights: FloatArray,
) -> Lattice | None:
    """The grid ``z0`` reduced to its non-linear lattice, coefficients solved per point.

    Returns ``None`` when the law has no free linear coefficient (nothing to project).
    """
    linear = set(law.linear_coefficients())
    # what each free component drives; it is linear when it drives linear coefficients only
    drives = [
        [n for n, s in zip(pmap.names, pmap.source, strict=True) if s == i]
        for i in range(len(pmap.free))
    ]
    share = [sum(n in linear for n in d) for d in drives]
    is_linear = np.array([s == len(d) for s, d in zip(share, drives, strict=True)])
    mixed = any(0 < s < len(d) for s, d in zip(share, drives, strict=True))
    if not is_linear.any() or mixed:
        return None
    nonlinear = np.flatnonzero(~is_linear)
    lattice, shape = _lattice(z0[:, nonlinear])

    z = np.zeros((lattice.shape[0], len(pmap.free)))
    z[:, nonlinear] = lattice
    theta = pmap.theta(z)
    order = list(law.linear_coefficients())
    with np.errstate(all="ignore"):
        basis = law.linear_basis(theta, x)  # (m, n, all linear coefficients)
    # fixed coefficients move to the target; tied ones add their basis to their source's
    target = np.broadcast_to(y, basis.shape[:2]).copy()
    free_linear = np.flatnonzero(is_linear)
    columns = np.zeros((*basis.shape[:2], free_linear.size))
    for j, name in enumerate(pmap.names):
        if name not in linear:
            continue
        phi = basis[:, :, order.index(name)]
        if pmap.source[j] < 0:
            target -= pmap.fixed_values[j] * phi
        else:
            columns[:, :, int(np.flatnonzero(free_linear == pmap.source[j])[0])] += phi
    scale = np.sqrt(weights) / y  # relative residuals, weighted as the objective
    coef = _nonnegative_least_squares(columns * scale[None, :, None], target * scale[None, :])
    # zeros grow back from a small share of the loss; keep within the user's bounds
    typical = ZERO_COEFFICIENT_SHARE * float(np.mean(y))
    column_mean = np.mean(np.abs(columns), axis=1)
    floor = typical / np.where(column_mean > 0, column_mean, 1.0)
    coef = np.where(np.isfinite(coef) & (coef > floor), coef, floor)
    log_scale = pmap.is_log[[pmap.names.index(pmap.free[i]) for i in free_linear]]
    z[:, free_linear] = np.where(log_scale, np.log(coef), coef)
    return Lattice(np.clip(z, pmap.lower, pmap.upper), shape, nonlinear)


def lattice_minima(values: FloatArray, shape: tuple[int, ...] | None) -> NDArray[np.intp]:
    """Lattice points no worse than any neighbour along an axis, best first.

    Each is the best point of its own basin on the lattice; without a lattice shape every
    point is a candidate. Non-finite values are never minima.
    """
    finite = np.isfinite(values)
    if shape is None:
        minima = finite
    else:
        grid = np.where(finite, values, np.inf).reshape(shape)
        minima = np.isfinite(grid)
        for axis in range(grid.ndim):
            for step in (1, -1):
                neighbour = np.roll(grid, step, axis=axis)
                # np.roll wraps around: the first (last) slice has no neighbour on that side
                edge: list[int | slice] = [slice(None)] * grid.ndim
                edge[axis] = 0 if step == 1 else -1
                neighbour[tuple(edge)] = np.inf
                minima &= grid <= neighbour
        minima = minima.reshape(-1)
    rows = np.flatnonzero(minima)
    return rows[np.argsort(values[rows], kind="stable")]


def _lattice(points: FloatArray) -> tuple[FloatArray, tuple[int, ...] | None]:
    """Distinct rows of ``points``; with their product shape when they fill a full product."""
    if points.shape[1] == 0:
        return np.zeros((1, 0)), (1,)
    rounded = np.round(points, LATTICE_DECIMALS)
    axes = [np.unique(column) for column in rounded.T]
    shape = tuple(len(a) for a in axes)
    # row-major lattice index of every point: distinct points are distinct indices
    codes = np.ravel_multi_index(
        [np.searchsorted(a, column) for a, column in zip(axes, rounded.T, strict=True)], shape
    )
    present = np.unique(codes)
    lattice = np.column_stack(
        [a[i] for a, i in zip(axes, np.unravel_index(present, shape), strict=True)]
    )
    return lattice, shape if present.size == int(np.prod(shape)) else None


def _nonnegative_least_squares(a: FloatArray, b: FloatArray) -> FloatArray:
    """argmin ‖a c − b‖ subject to c ≥ 0 for each of ``k`` problems, ``a`` of shape (k, n, r).

    By enumeration of the supports (r is 1 to 3 for the laws here): the solution is the
    unconstrained least squares on its support, and it is the best of the feasible ones. Each
    support is solved from the normal equations of unit-norm columns with a tiny ridge (so that
    collinear columns, e.g. an exponent of 0 repeating the constant, give a split solution
    instead of an error); these are starting points, so their precision is ample.
    """
    k, _, r = a.shape
    norms = np.linalg.norm(a, axis=1)  # (k, r)
    norms = np.where(norms > 0, norms, 1.0)
    unit = a / norms[:, None, :]
    gram = np.einsum("kni,knj->kij", unit, unit)
    rhs = np.einsum("kni,kn->ki", unit, b)
    b_sq = np.einsum("kn,kn->k", b, b)
    best = np.full((k, r), np.nan)
    best_cost = np.full(k, np.inf)
    for size in range(1, r + 1):
        for support in itertools.combinations(range(r), size):
            idx = list(support)
            g = gram[:, idx][:, :, idx]
            c = np.linalg.solve(g + RIDGE * np.eye(size), rhs[:, idx, None])[..., 0]
            # ‖a c − b‖² = ‖b‖² − 2 cᵀaᵀb + cᵀ aᵀa c
            cost = b_sq - 2 * np.einsum("ki,ki->k", c, rhs[:, idx])
            cost += np.einsum("ki,kij,kj->k", c, g, c)
            better = np.all(np.isfinite(c) & (c >= 0), axis=1) & (cost < best_cost)
            best_cost[better] = cost[better]
            full = np.zeros((k, r))
            full[:, idx] = c
            best[better] = full[better]
    return best / norms
