"""Mapping between a law's full parameter vector θ and the optimiser's free vector z.

Fixed (borrowed) parameters are held at given values, tied parameters copy another one, and
parameters declared ``log_scale`` are optimised as ``z = log θ``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scalinglab.errors import FitError
from scalinglab.laws.base import FloatArray, Law


@dataclass(frozen=True)
class ParameterMap:
    """How θ (natural units, all parameters) is built from z (free parameters only)."""

    names: tuple[str, ...]
    free: tuple[str, ...]
    source: NDArray[np.intp]  # (p,) index into z, or -1 for fixed
    fixed_values: FloatArray  # (p,) value for fixed parameters (nan otherwise)
    is_log: NDArray[np.bool_]  # (p,) whether θ_j = exp(z_source)
    lower: FloatArray  # (q,) bounds in z space
    upper: FloatArray

    @classmethod
    def build(
        cls,
        law: Law,
        *,
        fixed: Mapping[str, float] | None = None,
        tie: Mapping[str, str] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
    ) -> ParameterMap:
        """Validate the options against the law and build the map."""
        params = law.parameters()
        names = tuple(p.name for p in params)
        fixed = dict(fixed or {})
        tie = dict(tie or {})
        bounds = dict(bounds or {})
        for label, keys in (("fixed", fixed), ("tie", tie), ("bounds", bounds)):
            unknown = [k for k in keys if k not in names]
            if unknown:
                raise FitError(
                    f"{label}: law '{law.name}' has no parameter {', '.join(unknown)}; "
                    f"its parameters are {', '.join(names)}"
                )
        for name, target in tie.items():
            if target not in names:
                raise FitError(f"tie: '{name}' is tied to unknown parameter '{target}'")
            if target in tie or target in fixed or name in fixed:
                raise FitError(f"tie: '{name}' -> '{target}' must tie a free to a free parameter")
            if params[names.index(name)].log_scale != params[names.index(target)].log_scale:
                raise FitError(f"tie: '{name}' and '{target}' are not on the same scale")
        free = tuple(n for n in names if n not in fixed and n not in tie)
        if not free:
            raise FitError("every parameter is fixed or tied: nothing to fit")
        source = np.full(len(names), -1, dtype=np.intp)
        fixed_values = np.full(len(names), np.nan)
        is_log = np.array([p.log_scale for p in params])
        for j, n in enumerate(names):
            if n in fixed:
                value = float(fixed[n])
                lo, hi = bounds.get(n, (params[j].lower, params[j].upper))
                if not math.isfinite(value) or (is_log[j] and value <= 0):
                    raise FitError(f"fixed value of '{n}' must be finite and valid, got {value}")
                if not lo <= value <= hi:
                    raise FitError(
                        f"fixed value of '{n}' is {value:g}, outside its bounds [{lo:g}, {hi:g}]"
                    )
                fixed_values[j] = value
            else:
                source[j] = free.index(tie.get(n, n))
        lower = np.empty(len(free))
        upper = np.empty(len(free))
        for i, n in enumerate(free):
            p = params[names.index(n)]
            lo, hi = bounds.get(n, (p.lower, p.upper))
            if not lo < hi:
                raise FitError(f"bounds of '{n}': lower {lo} is not below upper {hi}")
            if p.log_scale:
                if hi <= 0:
                    raise FitError(f"bounds of '{n}': upper bound must be positive, got {hi}")
                lo = math.log(lo) if lo > 0 else -math.inf
                hi = math.log(hi) if math.isfinite(hi) else math.inf
            lower[i], upper[i] = lo, hi
        return cls(names, free, source, fixed_values, is_log, lower, upper)

    def theta(self, z: FloatArray) -> FloatArray:
        """θ of shape ``(k, p)`` from z of shape ``(k, q)``."""
        th = np.empty((z.shape[0], len(self.names)))
        # exp may overflow to inf for wild trial points: the objective then rejects them
        with np.errstate(over="ignore"):
            for j, s in enumerate(self.source):
                if s < 0:
                    th[:, j] = self.fixed_values[j]
                else:
                    th[:, j] = np.exp(z[:, s]) if self.is_log[j] else z[:, s]
        return th

    def z_from_theta(self, theta: FloatArray) -> FloatArray:
        """z of shape ``(k, q)`` from θ of shape ``(k, p)`` (the free parameters' columns)."""
        theta = np.atleast_2d(theta)
        z = np.empty((theta.shape[0], len(self.free)))
        for i, n in enumerate(self.free):
            j = self.names.index(n)
            col = theta[:, j]
            z[:, i] = np.log(np.maximum(col, 1e-300)) if self.is_log[j] else col
        return z

    def grad_z(self, theta: FloatArray, grad_theta: FloatArray) -> FloatArray:
        """Chain rule: d objective / dz from d objective / dθ (both batched over rows)."""
        # d θ_j / d z_source(j) is θ_j on the log scale, 1 otherwise; fixed θ_j have none
        # (masked, not multiplied by 0: their gradient may be inf or nan)
        driven = np.where(self.source >= 0, grad_theta * np.where(self.is_log, theta, 1.0), 0.0)
        return driven @ self._incidence

    @functools.cached_property
    def _incidence(self) -> FloatArray:
        """(p, q) matrix with a 1 where θ_j is driven by z_i."""
        m = np.zeros((len(self.names), len(self.free)))
        driven = np.flatnonzero(self.source >= 0)
        m[driven, self.source[driven]] = 1.0
        return m
