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
        return bool(open_edges(self.z, self.shape, self.axes, lower, upper)[row])


def open_edges(
    points: FloatArray,
    shape: tuple[int, ...] | None,
    axes: NDArray[np.intp],
    lower: FloatArray,
    upper: FloatArray,
) -> NDArray[np.bool_]:
    """Which lattice points lie on an edge of the lattice that the bounds would let a fit pass.

    ``points`` are the lattice's rows in z (row-major over ``shape``), ``axes`` the columns the
    lattice spans. Without a product shape no point is on an edge.
    """
    edge = np.zeros(points.shape[0], dtype=bool)
    if shape is None:
        return edge
    index = np.unravel_index(np.arange(points.shape[0]), shape)
    for column, i, size in zip(axes, index, shape, strict=True):
        if size > 1:
            value = points[:, column]
            edge |= ((i == 0) & (value > lower[column])) | (
                (i == size - 1) & (value < upper[column])
            )
    return edge


@dataclass(frozen=True)
class Projector:
    """A law's start grid reduced to its non-linear lattice, ready to solve coefficients.

    The basis of the linear coefficients depends on the lattice point only, so it is built
    once and :meth:`solve` serves any number of data replicates (bootstrap resamples).
    """

    points: FloatArray  # (m, q) lattice points, linear columns zero
    shape: tuple[int, ...] | None
    axes: NDArray[np.intp]  # the non-linear columns of z
    free_linear: NDArray[np.intp]  # the linear columns of z
    log_scale: NDArray[np.bool_]  # (len(free_linear),) whether z is log of the coefficient
    columns: FloatArray  # (m, n, r) basis of the free linear coefficients
    offset: FloatArray  # (m, n) what fixed linear coefficients contribute to the loss

    @classmethod
    def build(
        cls, law: Law, pmap: ParameterMap, z0: FloatArray, x: Mapping[str, FloatArray]
    ) -> Projector | None:
        """The projector of grid ``z0``, or ``None`` when there is nothing to project."""
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
        points = np.zeros((lattice.shape[0], len(pmap.free)))
        points[:, nonlinear] = lattice
        order = list(law.linear_coefficients())
        with np.errstate(all="ignore"):
            basis = law.linear_basis(pmap.theta(points), x)  # (m, n, all linear coefficients)
        # fixed coefficients move to the target; tied ones add their basis to their source's
        free_linear = np.flatnonzero(is_linear)
        offset = np.zeros(basis.shape[:2])
        columns = np.zeros((*basis.shape[:2], free_linear.size))
        for j, name in enumerate(pmap.names):
            if name not in linear:
                continue
            phi = basis[:, :, order.index(name)]
            if pmap.source[j] < 0:
                offset += pmap.fixed_values[j] * phi
            else:
                columns[:, :, int(np.flatnonzero(free_linear == pmap.source[j])[0])] += phi
        log_scale = pmap.is_log[[pmap.names.index(pmap.free[i]) for i in free_linear]]
        return cls(points, shape, nonlinear, free_linear, log_scale, columns, offset)

    def solve(self, y: FloatArray, weights: FloatArray) -> FloatArray:
        """Lattice points with coefficients solved, ``(R, m, q)``, for ``R`` data replicates.

        ``y`` and ``weights`` have shape ``(R, n)``; the least squares are on relative residuals
        weighted as the objective.
        """
        s2 = weights / (y * y)  # squared scale of each relative residual, (R, n)
        target_w = s2 * y
        r = self.free_linear.size
        m = self.points.shape[0]
        gram = np.empty((y.shape[0], m, r, r))
        rhs = np.empty((y.shape[0], m, r))
        for i in range(r):
            phi_i = self.columns[:, :, i].T  # (n, m)
            rhs[:, :, i] = target_w @ phi_i - s2 @ (self.offset.T * phi_i)
            for j in range(i, r):
                gram[:, :, i, j] = gram[:, :, j, i] = s2 @ (phi_i * self.columns[:, :, j].T)
        b_sq = (
            np.sum(target_w * y, axis=1)[:, None]
            - 2 * (target_w @ self.offset.T)
            + s2 @ (self.offset.T**2)
        )
        coef = _nonnegative_least_squares(gram, rhs, b_sq)
        # zeros grow back from a small share of the loss (on the log scale a zero could never
        # move); bounds are applied by the caller
        typical = ZERO_COEFFICIENT_SHARE * np.mean(y, axis=1)[:, None, None]
        column_mean = np.mean(np.abs(self.columns), axis=1)[None, :, :]  # (1, m, r)
        floor = typical / np.where(column_mean > 0, column_mean, 1.0)
        coef = np.where(np.isfinite(coef) & (coef > floor), coef, floor)
        z = np.repeat(self.points[None, :, :], y.shape[0], axis=0)
        z[:, :, self.free_linear] = np.where(self.log_scale, np.log(coef), coef)
        return z


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
    projector = Projector.build(law, pmap, z0, x)
    if projector is None:
        return None
    z = projector.solve(y[None, :], weights[None, :])[0]
    return Lattice(np.clip(z, pmap.lower, pmap.upper), projector.shape, projector.axes)


def lattice_minima(values: FloatArray, shape: tuple[int, ...] | None) -> NDArray[np.intp]:
    """Lattice points no worse than any neighbour along an axis, best first.

    Each is the best point of its own basin on the lattice; without a lattice shape every
    point is a candidate. Non-finite values are never minima.
    """
    rows = np.flatnonzero(minima_mask(values[None, :], shape)[0])
    return rows[np.argsort(values[rows], kind="stable")]


def minima_mask(values: FloatArray, shape: tuple[int, ...] | None) -> NDArray[np.bool_]:
    """For ``R`` replicates' values on one lattice, ``(R, m)``: which points are local minima."""
    finite = np.isfinite(values)
    if shape is None:
        return finite
    grid = np.where(finite, values, np.inf).reshape(values.shape[0], *shape)
    minima = np.isfinite(grid)
    for axis in range(1, grid.ndim):
        # compare each point with its neighbour on either side (none beyond the edges)
        lead = [slice(None)] * grid.ndim
        lag = [slice(None)] * grid.ndim
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        minima[tuple(lag)] &= grid[tuple(lag)] <= grid[tuple(lead)]
        minima[tuple(lead)] &= grid[tuple(lead)] <= grid[tuple(lag)]
    return minima.reshape(values.shape)


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


def _nonnegative_least_squares(gram: FloatArray, rhs: FloatArray, b_sq: FloatArray) -> FloatArray:
    """argmin ‖a c − b‖ subject to c ≥ 0, from the normal equations, batched.

    ``gram`` = aᵀa of shape ``(..., r, r)``, ``rhs`` = aᵀb ``(..., r)``, ``b_sq`` = ‖b‖²
    ``(...)``. By enumeration of the supports (r is 1 to 3 for the laws here): the solution is
    the unconstrained least squares on its support, and it is the best of the feasible ones.
    Each support is solved on unit-norm columns with a tiny ridge (so that collinear columns,
    e.g. an exponent of 0 repeating the constant, give a split solution instead of an error);
    these are starting points, so their precision is ample.
    """
    r = gram.shape[-1]
    norms = np.sqrt(np.maximum(np.diagonal(gram, axis1=-2, axis2=-1), 0.0))
    norms = np.where(norms > 0, norms, 1.0)
    unit_gram = gram / (norms[..., :, None] * norms[..., None, :])
    unit_rhs = rhs / norms
    best = np.full(rhs.shape, np.nan)
    best_cost = np.full(rhs.shape[:-1], np.inf)
    with np.errstate(all="ignore"):
        for size in range(1, r + 1):
            for support in itertools.combinations(range(r), size):
                idx = list(support)
                g = unit_gram[..., idx, :][..., :, idx]
                c = np.linalg.solve(g + RIDGE * np.eye(size), unit_rhs[..., idx, None])[..., 0]
                # ‖a c − b‖² = ‖b‖² − 2 cᵀaᵀb + cᵀ aᵀa c
                cost = b_sq - 2 * np.sum(c * unit_rhs[..., idx], axis=-1)
                cost = cost + np.einsum("...i,...ij,...j->...", c, g, c)
                better = np.all(np.isfinite(c) & (c >= 0), axis=-1) & (cost < best_cost)
                best_cost = np.where(better, cost, best_cost)
                full = np.zeros(rhs.shape)
                full[..., idx] = c
                best = np.where(better[..., None], full, best)
    return best / norms
