"""Reduced-parameter fits: borrow what a collection of earlier fits knows.

Choshen, Zhang & Andreas 2024 found the five Chinchilla parameters strongly correlated across
model families (A grows linearly with α, B with β, on a log scale; three principal components
carry 99.5% of the variance). With little data it pays to fit fewer parameters and take the
rest from other families. Two ways are offered, both as a :class:`SubspaceLaw`, a law whose
parameters are the coordinates of an affine subspace of another law's parameters, so that the
fitting engine needs no special case:

- :func:`relation_law`: some parameters are linear functions of others' coordinates
  (``α = u + v·log A``, ``β = u' + v'·log B``), learned by least squares over the collection;
- :func:`pca_law`: the parameters are the mean plus a combination of the top principal
  components of the collection's standardised coordinates.

A parameter's *coordinate* is its logarithm when the base law optimises it on a log scale
(``E``, ``A``, ``B``) and the value itself otherwise (``α``, ``β``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, InputError
from scalinglab.laws.base import Features, FloatArray, Law, Parameter, get_law, register
from scalinglab.laws.compute import FloorPlusPowers


def _log_mask(law: Law) -> FloatArray:
    return np.array([p.log_scale for p in law.parameters()], dtype=bool)


def to_coordinates(law: Law, theta: FloatArray) -> FloatArray:
    """Parameters in natural units → coordinates (log of the log-scale ones), shape ``(k, p)``."""
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    mask = _log_mask(law)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mask, np.log(theta), theta)


def from_coordinates(law: Law, z: FloatArray) -> FloatArray:
    """Coordinates → parameters in natural units, shape ``(k, p)``."""
    z = np.atleast_2d(np.asarray(z, dtype=float))
    return np.where(_log_mask(law), np.exp(z), z)


@register
class SubspaceLaw(Law):
    """A base law restricted to the affine subspace ``coordinates = offset + basis @ c``.

    Parameters
    ----------
    base
        Registered name of the base law (``"chinchilla"``).
    offset
        Base-law coordinates at ``c = 0``, length ``p``.
    basis
        Matrix of shape ``(p, q)``: how each coefficient moves the base coordinates.
    coefficients
        Names of the ``q`` coefficients (this law's parameters).
    lower, upper
        Bounds of the coefficients.
    grid
        Initial values of each coefficient for the multi-start grid.
    base_config
        Constructor arguments of the base law.
    description
        Where the subspace came from (shown in fits and reports).
    """

    name = "subspace"
    # the reduced-parameter practice is about laws of model size and tokens
    inputs = ("params", "tokens")

    def __init__(
        self,
        base: str = "chinchilla",
        *,
        offset: Sequence[float] | None = None,
        basis: Sequence[Sequence[float]] | None = None,
        coefficients: Sequence[str] | None = None,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        grid: Sequence[Sequence[float]] | None = None,
        base_config: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self.base = get_law(base, **dict(base_config or {}))
        if self.base.inputs != self.inputs:
            raise FitError(
                f"a subspace law needs a base law of {', '.join(self.inputs)}; "
                f"'{base}' reads {', '.join(self.base.inputs)}"
            )
        self.base_config = dict(base_config or {})
        names = self.base.param_names
        p = len(names)
        # defaults: the whole space, i.e. the base law in coordinates
        self.offset = np.zeros(p) if offset is None else np.asarray(offset, dtype=float).ravel()
        self.basis = np.eye(p) if basis is None else np.asarray(basis, dtype=float)
        self.coefficients = tuple(
            coefficients
            if coefficients is not None
            else [coordinate_name(self.base, n) for n in names]
        )
        q = len(self.coefficients)
        default_bounds = [coordinate_bounds(self.base, n) for n in names]
        lower = [b[0] for b in default_bounds] if lower is None else lower
        upper = [b[1] for b in default_bounds] if upper is None else upper
        if grid is None:
            base_grid = {prm.name: prm.grid for prm in self.base.parameters()}
            grid = [
                to_coordinates(self.base, _column(self.base, n, base_grid[n]))[
                    :, names.index(n)
                ].tolist()
                for n in names
            ]
        if self.offset.shape != (p,) or self.basis.shape != (p, q):
            raise FitError(
                f"subspace of '{base}' needs an offset of length {p} and a {p}×{q} basis, "
                f"got {self.offset.shape} and {self.basis.shape}"
            )
        if not (len(lower) == len(upper) == len(grid) == q):
            raise FitError(f"subspace needs bounds and a grid for each of its {q} coefficients")
        self.lower = tuple(float(v) for v in lower)
        self.upper = tuple(float(v) for v in upper)
        self.grid = tuple(tuple(float(v) for v in g) for g in grid)
        self.description = description

    def config(self) -> dict[str, Any]:
        return {
            "base": self.base.name,
            "offset": self.offset.tolist(),
            "basis": self.basis.tolist(),
            "coefficients": list(self.coefficients),
            "lower": list(self.lower),
            "upper": list(self.upper),
            "grid": [list(g) for g in self.grid],
            "base_config": self.base_config,
            "description": self.description,
        }

    def parameters(self) -> tuple[Parameter, ...]:
        return tuple(
            Parameter(n, lo, hi, g, description=f"coefficient of {self.description or 'subspace'}")
            for n, lo, hi, g in zip(
                self.coefficients, self.lower, self.upper, self.grid, strict=True
            )
        )

    def features(self, observations: pd.DataFrame) -> dict[str, FloatArray]:
        return self.base.features(observations)

    def base_theta(self, coefficients: FloatArray) -> FloatArray:
        """Base-law parameters in natural units, shape ``(k, p)``, from coefficients ``(k, q)``."""
        c = np.atleast_2d(np.asarray(coefficients, dtype=float))
        return from_coordinates(self.base, self.offset + c @ self.basis.T)

    def base_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Base-law parameters by name from this law's fitted coefficients by name."""
        theta = self.base_theta(self.theta_vector(params))[0]
        return dict(zip(self.base.param_names, map(float, theta), strict=True))

    def _log_predict(
        self, theta: FloatArray, x: Features, *, grad: bool
    ) -> FloatArray | tuple[FloatArray, FloatArray]:
        base_theta = self.base_theta(theta)
        if not grad:
            return self.base.log_predict(base_theta, x)
        value, g_base = self.base.log_predict(base_theta, x, grad=True)
        # chain rule through θ = exp(z) (log-scale parameters) and z = offset + basis @ c
        dtheta_dz = np.where(_log_mask(self.base), base_theta, 1.0)
        return value, (g_base * dtheta_dz[:, None, :]) @ self.basis


def coordinate_name(law: Law, name: str) -> str:
    """Name of a parameter's coordinate: ``log_A`` for a log-scale ``A``, else the name."""
    return f"log_{name}" if _log_mask(law)[law.param_names.index(name)] else name


def coordinate_bounds(law: Law, name: str) -> tuple[float, float]:
    """A parameter's bounds expressed in its coordinate."""
    prm = law.parameters()[law.param_names.index(name)]
    if not prm.log_scale:
        return prm.lower, prm.upper
    lo = math.log(prm.lower) if prm.lower > 0 else -math.inf
    hi = math.log(prm.upper) if math.isfinite(prm.upper) else math.inf
    return lo, hi


def _column(law: Law, name: str, values: Sequence[float]) -> FloatArray:
    """Rows of ones except ``name``'s column, which takes ``values`` (for coordinate maps)."""
    theta = np.ones((len(values), len(law.param_names)))
    theta[:, law.param_names.index(name)] = values
    return theta


def _collection_coordinates(collection: pd.DataFrame, law: Law, minimum: int) -> FloatArray:
    missing = [n for n in law.param_names if n not in collection.columns]
    if missing:
        raise InputError(
            f"the collection of fits lacks parameter(s) {', '.join(missing)} of law '{law.name}'"
        )
    theta = collection[list(law.param_names)].to_numpy(dtype=float)
    z = to_coordinates(law, theta)
    z = z[np.all(np.isfinite(z), axis=1)]
    if len(z) < minimum:
        raise FitError(
            f"borrowing parameters needs at least {minimum} fits in the collection, "
            f"got {len(z)} usable"
        )
    return z


def pca_law(
    collection: pd.DataFrame, base: str | Law = "chinchilla", n_components: int = 3
) -> SubspaceLaw:
    """A law fitted in the span of the top principal components of a collection of fits.

    Coordinates are standardised (mean 0, standard deviation 1 over the collection) before
    the principal components are taken, so that ``log A`` (spanning tens) does not swamp
    ``α`` (spanning tenths).

    Parameters
    ----------
    collection
        One row per earlier fit, a column per base-law parameter (natural units).
    base
        The base law (or its name) the fits are of.
    n_components
        Number of principal components kept (the coefficients to fit).

    Returns
    -------
    SubspaceLaw
        Coefficients ``pc1..pcK``; ``c = 0`` is the collection's mean.
    """
    law = get_law(base) if isinstance(base, str) else base
    p = len(law.param_names)
    if not 1 <= n_components <= p:
        raise FitError(f"n_components must be between 1 and {p}, got {n_components}")
    z = _collection_coordinates(collection, law, n_components + 1)
    mean = z.mean(axis=0)
    scale = z.std(axis=0, ddof=1)
    # a coordinate constant over the collection has no direction to offer
    scale = np.where(scale > 0, scale, 1.0)
    _, singular, vt = np.linalg.svd((z - mean) / scale, full_matrices=False)
    variance = singular**2 / (len(z) - 1)
    kept = min(n_components, int(np.sum(variance > 1e-12 * variance[0])))
    if kept < n_components:
        raise FitError(
            f"the collection of {len(z)} fits spans only {kept} direction(s); "
            f"cannot keep {n_components} principal components"
        )
    sd = np.sqrt(variance[:n_components])
    explained = float(variance[:n_components].sum() / variance.sum())
    return SubspaceLaw(
        law.name,
        offset=mean.tolist(),
        basis=(scale[:, None] * vt[:n_components].T).tolist(),
        coefficients=[f"pc{j + 1}" for j in range(n_components)],
        lower=[-math.inf] * n_components,
        upper=[math.inf] * n_components,
        grid=[(-float(s), 0.0, float(s)) for s in sd],
        base_config=law.config(),
        description=(
            f"{n_components} principal components of {len(z)} '{law.name}' fits "
            f"({100 * explained:.1f}% of variance)"
        ),
    )


def relation_law(
    collection: pd.DataFrame,
    base: str | Law = "chinchilla",
    relations: Mapping[str, str] | None = None,
) -> SubspaceLaw:
    """A law where some parameters follow others linearly, as learned from a collection.

    Parameters
    ----------
    collection
        One row per earlier fit, a column per base-law parameter (natural units).
    base
        The base law (or its name).
    relations
        ``{dependent: predictor}``; each dependent coordinate is regressed on the predictor's
        coordinate over the collection. Default ``{"alpha": "A", "beta": "B"}``: α linear in
        ``log A`` and β linear in ``log B`` (Choshen et al.).

    Returns
    -------
    SubspaceLaw
        Coefficients are the coordinates of the remaining parameters (``log_E``, ``log_A``,
        ``log_B`` for Chinchilla).
    """
    law = get_law(base) if isinstance(base, str) else base
    relations = dict(relations or {"alpha": "A", "beta": "B"})
    names = law.param_names
    for dep, pred in relations.items():
        if dep not in names or pred not in names:
            raise FitError(
                f"relation {dep} ~ {pred}: law '{law.name}' has parameters {', '.join(names)}"
            )
        if pred in relations:
            raise FitError(f"relation {dep} ~ {pred}: '{pred}' is itself a dependent parameter")
    z = _collection_coordinates(collection, law, 3)
    free = [n for n in names if n not in relations]
    offset = np.zeros(len(names))
    basis = np.zeros((len(names), len(free)))
    for i, n in enumerate(free):
        basis[names.index(n), i] = 1.0
    described = []
    for dep, pred in relations.items():
        slope, intercept = np.polyfit(z[:, names.index(pred)], z[:, names.index(dep)], 1)
        offset[names.index(dep)] = intercept
        basis[names.index(dep), free.index(pred)] = slope
        described.append(f"{dep} = {intercept:.4g} + {slope:.4g}·{coordinate_name(law, pred)}")
    lower, upper, grid = [], [], []
    for n in free:
        col = z[:, names.index(n)]
        lo, hi = coordinate_bounds(law, n)
        lower.append(lo)
        upper.append(hi)
        mid, sd = float(col.mean()), float(col.std(ddof=1))
        grid.append(tuple(float(np.clip(v, lo, hi)) for v in (mid - sd, mid, mid + sd)))
    return SubspaceLaw(
        law.name,
        offset=offset.tolist(),
        basis=basis.tolist(),
        coefficients=[coordinate_name(law, n) for n in free],
        lower=lower,
        upper=upper,
        grid=grid,
        base_config=law.config(),
        description=f"{'; '.join(described)} (from {len(z)} '{law.name}' fits)",
    )


def centred_law(base: Law, x: Mapping[str, FloatArray]) -> Law:
    """The base law with each power-law scale measured at the centre of the data.

    ``C·x^(−a)`` becomes ``C₀·(x/x₀)^(−a)`` with ``log x₀`` the mean of ``log x``: the same
    law, but the scale no longer trades off against the exponent over the ~20 units of
    ``log x``, which makes the fit far better conditioned. Laws that are not a floor plus
    power-law terms are returned unchanged.
    """
    if not isinstance(base, FloorPlusPowers):
        return base
    names = base.param_names
    p = len(names)
    basis = np.eye(p)
    centres = []
    for coef, expo, inp in base.terms:
        log_x0 = float(np.mean(np.log(np.asarray(x[inp], dtype=float))))
        # log C = log C0 + a·log x0
        basis[names.index(coef), names.index(expo)] = log_x0
        centres.append(f"{inp} {math.exp(log_x0):.3g}")
    bounds = [coordinate_bounds(base, n) for n in names]
    return SubspaceLaw(
        base.name,
        offset=[0.0] * p,
        basis=basis.tolist(),
        coefficients=[
            f"{coordinate_name(base, n)}@x0"
            if any(n == t[0] for t in base.terms)
            else coordinate_name(base, n)
            for n in names
        ],
        lower=[b[0] for b in bounds],
        upper=[b[1] for b in bounds],
        grid=[[0.0]] * p,
        base_config=base.config(),
        description=f"'{base.name}' with scales at {', '.join(centres)}",
    )


def coefficients_from_theta(law: Law, theta: FloatArray) -> FloatArray:
    """Coefficients of a subspace law that reproduce base parameters ``theta`` ``(k, p)``.

    For a full-rank (square) basis this is exact; otherwise it is the least-squares
    projection onto the subspace. Other laws return ``theta`` unchanged.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    if not isinstance(law, SubspaceLaw):
        return theta
    z = to_coordinates(law.base, theta) - law.offset
    coeffs, *_ = np.linalg.lstsq(law.basis, z.T, rcond=None)
    return np.asarray(coeffs.T, dtype=float)
