"""Run-to-run noise and local sensitivities of a fit: what prediction intervals and flags need.

A forecast of a *new run's* loss is uncertain for two reasons: the parameters are estimated
(the bootstrap measures that), and a new run scatters about the law as the fitted runs did
(seed, data order, evaluation noise). :func:`estimate_noise` measures the second from the
fit's log residuals, split into a per-run offset and a per-point scatter, or from repeated
seeds when the data have runs that differ only by seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws.base import FloatArray, Law

#: significant digits to which two runs' inputs must agree to count as repeated seeds
SEED_MATCH_DIGITS = 9


@dataclass(frozen=True)
class Noise:
    """Scatter of log losses about the law (≈ relative scatter of the loss).

    Attributes
    ----------
    sd_log
        Standard deviation of a new run's log loss about the law: ``sqrt(sd_run² + sd_point²)``.
    sd_run
        Per-run offset (a run's whole curve sits above or below the law).
    sd_point
        Scatter of single measurements within a run.
    dof
        Degrees of freedom behind ``sd_log`` (prediction intervals use a t distribution); for
        a run offset and a point scatter, the Welch–Satterthwaite combination of theirs.
    source
        ``"residuals"`` (the fit's residuals, corrected for the parameters fitted) or
        ``"seeds"`` (runs repeated with other seeds).
    """

    sd_log: float
    sd_run: float
    sd_point: float
    dof: int
    source: str

    def log_offsets(self, rng: np.random.Generator, shape: tuple[int, ...]) -> FloatArray:
        """Draws of a new run's log offset from the law: ``sd_log`` times a t variate.

        The t distribution (``dof`` degrees of freedom) carries the uncertainty of ``sd_log``
        itself into prediction intervals.
        """
        return self.sd_log * rng.standard_t(self.dof, size=shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Noise:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            sd_log=float(data["sd_log"]),
            sd_run=float(data["sd_run"]),
            sd_point=float(data["sd_point"]),
            dof=int(data["dof"]),
            source=str(data["source"]),
        )


def estimate_noise(
    residual: FloatArray,
    weights: FloatArray,
    group_codes: NDArray[np.intp],
    x: Mapping[str, FloatArray],
    inputs: tuple[str, ...],
    n_free: int,
) -> Noise | None:
    """Run-to-run noise of log losses, or ``None`` when the data leave no degrees of freedom.

    Parameters
    ----------
    residual
        ``log y − log f(x; θ̂)`` per point.
    weights
        Point weights; points of weight 0 are not used.
    group_codes
        Run of each point (``0 .. G−1``).
    x, inputs
        The law's features and their names (repeated seeds are runs with identical inputs).
    n_free
        Free parameters of the fit.
    """
    used = weights > 0
    r = residual[used]
    codes = group_codes[used]
    _, codes = np.unique(codes, return_inverse=True)
    n, n_groups = r.size, int(codes.max()) + 1 if r.size else 0
    seeds = _seed_noise(r, codes, {k: np.asarray(x[k])[used] for k in inputs})
    if seeds is not None:
        return seeds
    if n_groups == n:
        dof = n - n_free
        if dof < 1:
            return None
        sd = math.sqrt(float(np.sum(r * r)) / dof)
        return Noise(sd, sd, 0.0, dof, "residuals")
    # one-way random effects: within-run scatter, then the run offsets beyond it
    sizes = np.bincount(codes, minlength=n_groups).astype(float)
    run_mean = np.bincount(codes, weights=r, minlength=n_groups) / sizes
    within_dof = n - n_groups
    sd_point = (
        math.sqrt(float(np.sum((r - run_mean[codes]) ** 2)) / within_dof) if within_dof else 0.0
    )
    # the parameters absorb run offsets as far as runs pin them; with fewer runs than
    # parameters (curve laws fitted on two or three runs) they pin only the runs' common level
    between_dof = n_groups - n_free if n_groups > n_free else n_groups - 1
    if between_dof < 1:
        return None
    between = float(np.sum(run_mean**2)) / between_dof
    sd_run = math.sqrt(max(0.0, between - sd_point**2 * float(np.mean(1.0 / sizes))))
    return Noise(
        math.hypot(sd_run, sd_point),
        sd_run,
        sd_point,
        _satterthwaite((sd_run**2, between_dof), (sd_point**2, within_dof)),
        "residuals",
    )


def _satterthwaite(*parts: tuple[float, int]) -> int:
    """Degrees of freedom of a sum of variance estimates (Welch–Satterthwaite), rounded down."""
    total = sum(v for v, _ in parts)
    spread = sum(v * v / dof for v, dof in parts if dof > 0)
    if spread <= 0:
        return max(1, min(dof for _, dof in parts if dof > 0))
    return max(1, int(total * total / spread))


def _seed_noise(
    r: FloatArray, codes: NDArray[np.intp], x: Mapping[str, FloatArray]
) -> Noise | None:
    """Noise from runs that share all their inputs (repeated seeds), at each run's last point."""
    if not x:
        return None
    columns = np.column_stack([_rounded(v) for v in x.values()])
    order = np.lexsort(columns.T[::-1])
    # each run's point set as one hashable key; its last point (largest inputs) as its value
    keys: dict[bytes, list[float]] = {}
    for g in np.unique(codes):
        rows = order[codes[order] == g]
        keys.setdefault(columns[rows].tobytes(), []).append(float(r[rows[-1]]))
    sets = [np.asarray(v) for v in keys.values() if len(v) > 1]
    dof = sum(s.size - 1 for s in sets)
    if dof < 2:
        return None
    sd = math.sqrt(sum(float(np.sum((s - s.mean()) ** 2)) for s in sets) / dof)
    return Noise(sd, sd, 0.0, dof, "seeds")


def _rounded(values: FloatArray) -> FloatArray:
    """Values rounded to :data:`SEED_MATCH_DIGITS` significant digits."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore"):
        scale = 10.0 ** (SEED_MATCH_DIGITS - 1 - np.floor(np.log10(np.abs(v))))
    scale = np.where(np.isfinite(scale), scale, 1.0)
    return np.round(v * scale) / scale


def log_parameter_condition(
    law: Law,
    pmap: ParameterMap,
    theta: FloatArray,
    x: Mapping[str, FloatArray],
    weights: FloatArray,
) -> tuple[float, dict[str, float]]:
    """Condition number of the Gauss–Newton Hessian in log-parameters, and its weakest direction.

    The Hessian ``JᵀWJ`` of the log residuals with respect to ``log |θ|`` (free parameters)
    is scale-free: a large condition number means some combination of relative parameter
    changes barely moves the fit. Returns the condition number and the eigenvector of its
    smallest eigenvalue, parameter name → component (the parameters that trade off).
    """
    _, grad = law.log_predict(theta[None, :], x, grad=True)
    g = grad[0]  # (n, p) d log f / d θ
    free_cols = [pmap.names.index(n) for n in pmap.free]
    scale = np.abs(theta[free_cols])
    scale = np.where(scale > 0, scale, 1.0)
    j = g[:, free_cols] * scale[None, :]
    ok = np.all(np.isfinite(j), axis=1) & (weights > 0)
    j = j[ok] * np.sqrt(weights[ok])[:, None]
    if j.shape[0] == 0:
        return math.inf, {}
    hessian = j.T @ j
    eig, vec = np.linalg.eigh(hessian)
    if not np.all(np.isfinite(eig)) or eig[-1] <= 0:
        return math.inf, {}
    condition = float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf
    weakest = vec[:, 0]
    return condition, {n: float(v) for n, v in zip(pmap.free, weakest, strict=True)}
