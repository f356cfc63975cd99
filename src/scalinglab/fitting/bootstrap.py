"""Bootstrap refits that explore: every resample searched from the law's whole start grid.

A refit warm-started at the point estimate stays in that estimate's basin, so its spread
understates the uncertainty of laws whose objective has several basins or long flat valleys
(Chinchilla's E–A–α trade-off). Here each resample gets the same search as the point fit
(the projected lattice and its local minima for laws linear in some parameters, the raced
grid otherwise), all resamples advanced together in one batch per chunk.

Two resampling schemes:

- ``"cases"``: resample whole runs with replacement (a cluster bootstrap: checkpoints of one
  run are correlated). It assumes nothing about the noise, but needs many runs: with few, a
  resample often lacks the runs that pin a parameter and its intervals come out too wide.
- ``"parametric"``: keep every run, and redraw the losses from the fitted law with the
  measured noise (a per-run offset and a per-point scatter, see
  :func:`~scalinglab.fitting.uncertainty.estimate_noise`). It keeps the design fixed, so it
  suits few runs.

``"auto"`` (the engine's default) takes ``"cases"`` when there are at least
:data:`CASES_MIN_RUNS_PER_PARAMETER` runs per free parameter and ``"parametric"`` otherwise
(the rule and its threshold come from the synthetic designs of ``benchmarks/calibration.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from scalinglab.errors import FitError
from scalinglab.fitting.objective import LawObjective, RobustLoss
from scalinglab.fitting.optimize import DEFAULT_RACE, RACE_MIN_STARTS, batched_lbfgs
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.fitting.projection import Projector, minima_mask, open_edges
from scalinglab.fitting.uncertainty import Noise
from scalinglab.laws.base import FloatArray, Law

BootstrapKind = Literal["auto", "cases", "parametric"]
BOOTSTRAP_KINDS: tuple[str, ...] = ("auto", "cases", "parametric")
#: runs per free parameter from which ``"auto"`` resamples runs (``"cases"``)
CASES_MIN_RUNS_PER_PARAMETER = 10
#: a callback told how many refits are done out of how many, after each batch
Progress = Callable[[int, int], None]
#: lattice minima (best first) optimised per resample
MINIMA_PER_RESAMPLE = 3
#: refits of mid-sized grids (32 to 199 starts; the point fit runs them all) keep each
#: resample's best tenth after 2 iterations: B resamples × every start would otherwise
#: dominate the cost, and a few iterations already separate the basins
BOOTSTRAP_RACE = ((2, 0.1),)
#: smallest objective per point a resample's objective is scaled by (a 1e-6 log residual)
OBJECTIVE_FLOOR_PER_POINT = 5e-13
#: optimiser rows per batch at most (the objective itself is evaluated in bounded chunks)
MAX_ROWS_PER_BATCH = 200_000
#: resamples per batch: as many as possible share each iteration's overhead, but at least
#: ten batches once there are more than this many, so that progress shows
RESAMPLES_PER_BATCH = 1_000


@dataclass(frozen=True)
class SearchSpace:
    """What the point fit searched: its start grid, and its projector when it has one."""

    law: Law
    pmap: ParameterMap
    x: Mapping[str, FloatArray]
    loss: RobustLoss
    starts: FloatArray  # (m, q) in z
    projector: Projector | None
    max_iter: int


@dataclass(frozen=True)
class Refits:
    """Parameter vectors refitted on resampled data."""

    theta: FloatArray  # (B, p) natural units
    converged: NDArray[np.bool_]  # (B,)
    objective: FloatArray  # (B,) each refit's objective on its own resample


@dataclass(frozen=True)
class Dataset:
    """One data set to bootstrap: its losses, weights and runs, and its point fit."""

    log_y: FloatArray  # (n,)
    weights: FloatArray  # (n,)
    group_codes: NDArray[np.intp]  # (n,) run of each point, 0 .. G−1
    reference: FloatArray  # (q,) the point estimate in z
    noise: Noise | None


def choose_kind(kind: str, n_groups: int, n_free: int) -> str:
    """The scheme ``kind`` stands for (``"auto"`` resolved by the number of runs)."""
    if kind not in BOOTSTRAP_KINDS:
        raise FitError(f"unknown bootstrap kind '{kind}'; use {', '.join(BOOTSTRAP_KINDS)}")
    if kind != "auto":
        return kind
    return "cases" if n_groups >= CASES_MIN_RUNS_PER_PARAMETER * n_free else "parametric"


def bootstrap(
    space: SearchSpace,
    datasets: Sequence[Dataset],
    n_boot: int,
    kind: str,
    seeds: Sequence[int],
    progress: Progress | None = None,
) -> list[Refits]:
    """``n_boot`` exploring refits of each data set (one law, one design), all batched together.

    ``kind`` is ``"cases"`` or ``"parametric"`` (resolve ``"auto"`` with :func:`choose_kind`);
    ``seeds`` seeds each data set's resampling.
    """
    log_y, weights, reference = [], [], []
    for data, seed in zip(datasets, seeds, strict=True):
        ly, w = resample(kind, n_boot, data, space, np.random.default_rng(seed))
        log_y.append(ly)
        weights.append(w)
        reference.append(np.broadcast_to(data.reference, (n_boot, data.reference.size)))
    refits = refit(space, np.vstack(log_y), np.vstack(weights), np.vstack(reference), progress)
    return [
        Refits(
            refits.theta[i * n_boot : (i + 1) * n_boot],
            refits.converged[i * n_boot : (i + 1) * n_boot],
            refits.objective[i * n_boot : (i + 1) * n_boot],
        )
        for i in range(len(datasets))
    ]


def resample(
    kind: str, n_boot: int, data: Dataset, space: SearchSpace, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Resampled data: ``(log_y, weights)``, each ``(n_boot, n)``."""
    n_groups = int(data.group_codes.max()) + 1
    n = data.log_y.size
    if kind == "cases":
        draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
        counts = np.zeros((n_boot, n_groups))
        np.add.at(counts, (np.repeat(np.arange(n_boot), n_groups), draws.reshape(-1)), 1.0)
        return (
            np.broadcast_to(data.log_y, (n_boot, n)),
            counts[:, data.group_codes] * data.weights[None, :],
        )
    if kind != "parametric":
        raise FitError(f"unknown bootstrap kind '{kind}'; use cases or parametric")
    if data.noise is None:
        raise FitError(
            "the parametric bootstrap needs a measured noise level, and these data leave no "
            "degrees of freedom to measure it: add runs, fix parameters, or use "
            "bootstrap_kind='cases'"
        )
    theta = space.pmap.theta(data.reference[None, :])
    with np.errstate(all="ignore"):
        fitted_log = space.law.log_predict(theta, space.x)[0]
    offsets = data.noise.sd_run * rng.standard_normal((n_boot, n_groups))[:, data.group_codes]
    scatter = data.noise.sd_point * rng.standard_normal((n_boot, n))
    return fitted_log[None, :] + offsets + scatter, np.broadcast_to(data.weights, (n_boot, n))


def refit(
    space: SearchSpace,
    log_y: FloatArray,
    weights: FloatArray,
    reference: FloatArray,
    progress: Progress | None = None,
) -> Refits:
    """Fit every resample (rows of ``log_y``/``weights``, ``(B, n)``) from the whole search.

    Parameters
    ----------
    space
        The point fit's search space.
    log_y, weights
        One resample per row.
    reference
        ``(B, q)``: each resample's point estimate in z, used only to scale its objective.
    progress
        Called with ``(done, total)`` after each batch of resamples.
    """
    n_boot = log_y.shape[0]
    # optimised rows per resample: its lattice minima, or its whole grid
    per_resample = MINIMA_PER_RESAMPLE if space.projector is not None else space.starts.shape[0]
    paced = max(RESAMPLES_PER_BATCH, math.ceil(n_boot / 10))
    batch = max(1, min(MAX_ROWS_PER_BATCH // per_resample, paced))
    theta = np.empty((n_boot, len(space.pmap.names)))
    converged = np.zeros(n_boot, dtype=bool)
    objective = np.empty(n_boot)
    for lo in range(0, n_boot, batch):
        hi = min(n_boot, lo + batch)
        # each resample's objective divided by its value at the point estimate, so that the
        # optimiser's tolerances mean the same for every resample whatever its residuals
        # (objectives ~1e-3 would otherwise stop short in flat valleys)
        at_reference, _ = LawObjective(
            space.law, space.pmap, space.x, log_y[lo:hi], weights[lo:hi], space.loss
        )(reference[lo:hi], np.arange(hi - lo))
        # (floored: on noise-free data the objective is ~0 and dividing by it would blow up)
        floor = OBJECTIVE_FLOOR_PER_POINT * log_y.shape[1]
        scale = np.where(np.isfinite(at_reference), np.maximum(at_reference, floor), 1.0)
        z, f, ok = _refit_batch(space, log_y[lo:hi], weights[lo:hi] / scale[:, None])
        theta[lo:hi], objective[lo:hi], converged[lo:hi] = space.pmap.theta(z), f * scale, ok
        if progress is not None:
            progress(hi, n_boot)
    return Refits(theta, converged, objective)


def _refit_batch(
    space: SearchSpace, log_y: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Best z, objective and convergence of each resample of one batch."""
    pmap = space.pmap
    n_rep = log_y.shape[0]
    best_z = np.zeros((n_rep, len(pmap.free)))
    best_f = np.full(n_rep, np.inf)
    best_ok = np.zeros(n_rep, dtype=bool)
    grid_needed = np.ones(n_rep, dtype=bool)
    if space.projector is not None:
        grid_needed = _search_lattice(space, log_y, weights, best_z, best_f, best_ok)
    todo = np.flatnonzero(grid_needed)
    if todo.size:
        m = space.starts.shape[0]
        groups = np.repeat(todo, m)
        starts = np.vstack([np.tile(space.starts, (todo.size, 1)), best_z[todo]])
        groups = np.concatenate([groups, todo])
        race = DEFAULT_RACE if m >= RACE_MIN_STARTS else BOOTSTRAP_RACE if m >= 32 else ()
        _optimise(space, log_y, weights, starts, groups, race, best_z, best_f, best_ok)
    return best_z, best_f, best_ok


def _search_lattice(
    space: SearchSpace,
    log_y: FloatArray,
    weights: FloatArray,
    best_z: FloatArray,
    best_f: FloatArray,
    best_ok: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """The projected lattice's best minima optimised per resample; which need the grid too.

    As in the point fit, a resample's lattice search is not trusted when its best optimised
    start did not converge or its best lattice point lies on an open edge of the lattice.
    """
    projector = space.projector
    assert projector is not None
    pmap = space.pmap
    n_rep = log_y.shape[0]
    m = projector.points.shape[0]
    z = np.clip(projector.solve(np.exp(log_y), weights), pmap.lower, pmap.upper)
    replicate = np.repeat(np.arange(n_rep), m)
    values, _ = LawObjective(
        space.law, pmap, space.x, log_y, weights, space.loss, replicate=replicate
    )(z.reshape(n_rep * m, -1), np.arange(n_rep * m))
    values = values.reshape(n_rep, m)
    minima = minima_mask(values, projector.shape)
    ranked = np.argsort(np.where(minima, values, np.inf), axis=1, kind="stable")
    ranked = ranked[:, :MINIMA_PER_RESAMPLE]
    usable = np.take_along_axis(minima, ranked, axis=1)
    rep, slot = np.nonzero(usable)
    starts = z[rep, ranked[rep, slot]]
    _optimise(space, log_y, weights, starts, rep, (), best_z, best_f, best_ok)
    edge = open_edges(projector.points, projector.shape, projector.axes, pmap.lower, pmap.upper)
    best_lattice = ranked[:, 0]
    return ~best_ok | edge[best_lattice] | ~usable[:, 0]


def _optimise(
    space: SearchSpace,
    log_y: FloatArray,
    weights: FloatArray,
    starts: FloatArray,
    groups: NDArray[np.intp],
    race: tuple[tuple[int, float], ...],
    best_z: FloatArray,
    best_f: FloatArray,
    best_ok: NDArray[np.bool_],
) -> None:
    """Optimise ``starts`` (each fitting resample ``groups[i]``); keep each resample's best."""
    if starts.shape[0] == 0:
        return
    objective = LawObjective(
        space.law, space.pmap, space.x, log_y, weights, space.loss, replicate=groups
    )
    res = batched_lbfgs(
        objective,
        starts,
        space.pmap.lower,
        space.pmap.upper,
        max_iter=space.max_iter,
        race=race,
        groups=groups,
    )
    usable = np.isfinite(res.objective) & (res.merged_into < 0) & ~res.dropped
    rows = np.flatnonzero(usable)
    # the best row of each resample: sort by objective, keep each group's first
    rows = rows[np.lexsort((res.objective[rows], groups[rows]))]
    first = rows[np.r_[True, groups[rows][1:] != groups[rows][:-1]]]
    g = groups[first]
    better = res.objective[first] < best_f[g]
    g, first = g[better], first[better]
    best_z[g], best_f[g] = res.z[first], res.objective[first]
    # a row merged into the winner shares its fate
    best_ok[g] = res.converged[first]
