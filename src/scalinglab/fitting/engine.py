"""The fitting engine: one robust, batched, multi-start fitter for every law."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

from scalinglab.data.loaders import load_observations
from scalinglab.data.runs import run_ids_trusted
from scalinglab.data.schema import LossUnit
from scalinglab.errors import FitError, InputError
from scalinglab.fitting.bootstrap import (
    BootstrapKind,
    Dataset,
    Progress,
    SearchSpace,
    choose_kind,
)
from scalinglab.fitting.bootstrap import bootstrap as bootstrap_refits
from scalinglab.fitting.diagnostics import Diagnostic, diagnose
from scalinglab.fitting.objective import LawObjective, LossName, RobustLoss
from scalinglab.fitting.optimize import DEFAULT_RACE, RACE_MIN_STARTS, BatchResult, batched_lbfgs
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.fitting.projection import Lattice, Projector, lattice_minima
from scalinglab.fitting.result import Fit
from scalinglab.fitting.uncertainty import estimate_noise
from scalinglab.laws.base import FloatArray, Law, get_law
from scalinglab.user_input import check_seed

#: relative objective gap within which two distinct solutions count as tied
TIE_RTOL = 1e-3
#: relative parameter difference above which two solutions are distinct
DISTINCT_RTOL = 1e-2
#: how many of the best distinct starts are polished by scipy's L-BFGS-B
N_POLISH = 3
#: relative objective gap beyond which a distinct candidate is not worth polishing
POLISH_RTOL = 1e-2
#: most bootstrap refits one fit may ask for (each is a full search; 1e5 already takes minutes)
MAX_BOOTSTRAP = 100_000
#: "fast": variable projection for laws linear in some parameters, racing for large grids of
#: other laws; "full": every start of the grid run to convergence
Search = Literal["fast", "full"]
#: a polished solution: (z, objective, converged)
Polished = tuple[FloatArray, float, bool]


def fit_law(
    law: Law,
    x: Mapping[str, Any],
    y: Any,
    *,
    groups: Any = None,
    weights: Any = None,
    fixed: Mapping[str, float] | None = None,
    tie: Mapping[str, str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    grid: FloatArray | Mapping[str, Sequence[float]] | None = None,
    loss: LossName = "huber",
    delta: float = 1e-3,
    overestimate_penalty: float = 1.0,
    cap_irreducible: bool = False,
    bootstrap: int = 0,
    bootstrap_kind: BootstrapKind = "auto",
    seed: int = 0,
    max_iter: int = 400,
    search: Search = "fast",
    progress: Progress | None = None,
) -> Fit:
    """Fit a law to observed losses.

    Parameters
    ----------
    law
        The functional form.
    x
        Feature arrays of shape ``(n,)`` named as ``law.inputs``.
    y
        Observed loss (nats), shape ``(n,)``, positive.
    groups
        Run identifier per point; the bootstrap resamples whole groups (checkpoints of one
        run are correlated). ``None``: every point is its own group.
    weights
        Non-negative weight per point in the objective (``None``: all 1).
    fixed
        Parameters held at given values (borrowed from another fit).
    tie
        Parameters set equal to another, e.g. ``{"beta": "alpha"}``.
    bounds
        ``name → (lower, upper)`` overriding the law's bounds.
    grid
        Starting points: an array ``(m, p)`` of full parameter vectors, or ``name → values``
        (their product; unnamed parameters keep the law's grid). Default: the law's grid.
    loss, delta
        ``"huber"`` with threshold ``delta`` on log residuals, or ``"squares"``.
    overestimate_penalty
        Multiplier on the loss of points the law over-predicts.
    cap_irreducible
        Bound the law's irreducible loss above by the lowest observed loss.
    bootstrap
        Number of bootstrap refits for intervals (0: none). Each refit runs the whole start
        search (never seeded from the point estimate), so the replicates explore every basin.
    bootstrap_kind
        ``"cases"``: resample whole runs (groups) with replacement. ``"parametric"``: keep the
        runs, redraw their losses from the fitted law with the measured run-to-run noise
        (calibrated where runs are few). ``"auto"``: ``"cases"`` with at least 10 runs per
        free parameter, else ``"parametric"`` (see :mod:`scalinglab.fitting.bootstrap`).
    seed
        Seed of the bootstrap resampling; the fit is otherwise deterministic.
    max_iter
        Iteration cap of each local optimisation (batched search, final polish, bootstrap).
    search
        ``"fast"``: for laws linear in some parameters (the compute laws' ``E``, ``A``,
        ``B``), solve for those exactly at each point of the grid's lattice of the other
        parameters (variable projection) and polish the lattice's local minima; for other
        laws, race grids of 200 starts or more (after a few iterations only the most
        promising starts go on). ``"full"``: run every start of the grid to convergence.
        Bootstrap refits always search the projected lattice when the law has one.
    progress
        Called as ``progress(done, total)`` while the bootstrap refits run.

    Returns
    -------
    Fit
        Best parameters, diagnostics, and bootstrap replicates when requested.
    """
    # the arrays are small: BLAS threads cost more in synchronisation than they save
    with _thread_pools().limit(limits=1):
        return _fit_law(
            law,
            x,
            y,
            groups=groups,
            weights=weights,
            fixed=fixed,
            tie=tie,
            bounds=bounds,
            grid=grid,
            loss=loss,
            delta=delta,
            overestimate_penalty=overestimate_penalty,
            cap_irreducible=cap_irreducible,
            bootstrap=bootstrap,
            bootstrap_kind=bootstrap_kind,
            seed=seed,
            max_iter=max_iter,
            search=search,
            progress=progress,
        )


def _fit_law(
    law: Law,
    x: Mapping[str, Any],
    y: Any,
    *,
    groups: Any,
    weights: Any,
    fixed: Mapping[str, float] | None,
    tie: Mapping[str, str] | None,
    bounds: Mapping[str, tuple[float, float]] | None,
    grid: FloatArray | Mapping[str, Sequence[float]] | None,
    loss: LossName,
    delta: float,
    overestimate_penalty: float,
    cap_irreducible: bool,
    bootstrap: int,
    bootstrap_kind: BootstrapKind,
    seed: int,
    max_iter: int,
    search: Search,
    progress: Progress | None,
) -> Fit:
    check_seed(seed, "seed")
    robust = RobustLoss(loss, delta, overestimate_penalty)
    feats, y_arr = _check_arrays(law, x, y)
    n = y_arr.size
    w = _check_weights(weights, n)
    group_codes = _group_codes(groups, n)
    bounds = dict(bounds or {})
    if cap_irreducible:
        if law.irreducible is None:
            raise FitError(f"cap_irreducible: law '{law.name}' has no irreducible-loss parameter")
        spec = next(p for p in law.parameters() if p.name == law.irreducible)
        lo, hi = bounds.get(law.irreducible, (spec.lower, spec.upper))
        bounds[law.irreducible] = (lo, min(hi, float(np.min(y_arr))))
    pmap = ParameterMap.build(law, fixed=fixed, tie=tie, bounds=bounds)
    _check_identifiable(law, feats, pmap, n)

    if search not in ("fast", "full"):
        raise FitError(f"unknown search '{search}'; use 'fast' or 'full'")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise FitError(f"bootstrap must be between 0 and {MAX_BOOTSTRAP:,}, got {bootstrap}")
    choose_kind(bootstrap_kind, 1, 1)  # an unknown kind fails before the work
    log_y = np.log(y_arr)
    objective = LawObjective(law, pmap, feats, log_y, w, robust)
    z0 = _starts(law, pmap, grid)
    polished: list[Polished] = []
    result: BatchResult | None = None
    # the projected lattice serves the fast search and every bootstrap refit
    projector = Projector.build(law, pmap, z0, feats) if search == "fast" or bootstrap else None
    lattice = None
    if projector is not None and search == "fast":
        z_lattice = projector.solve(y_arr[None, :], w[None, :])[0]
        lattice = Lattice(
            np.clip(z_lattice, pmap.lower, pmap.upper), projector.shape, projector.axes
        )
    method, trusted = "projection", False
    if lattice is not None:
        polished, trusted = _search_lattice(objective, pmap, lattice, max_iter)
    if not trusted:
        # no projection, or one that cannot be trusted: the grid, the polished points added
        starts = np.vstack([z0, *(p[0][None, :] for p in polished)])
        race = DEFAULT_RACE if search == "fast" and starts.shape[0] >= RACE_MIN_STARTS else ()
        method = ("projection+" if lattice is not None else "") + ("racing" if race else "full")
        result = batched_lbfgs(
            objective, starts, pmap.lower, pmap.upper, max_iter=max_iter, race=race
        )
        polished += _polish_best(objective, pmap, result, max_iter)
    best_z, best_f, best_converged = min(polished, key=lambda p: p[1])
    theta_best = pmap.theta(best_z[None, :])[0]

    if result is None:
        # the polished candidates are the solutions found; starts not polished were set aside
        pool_z = np.array([p[0] for p in polished])
        pool_f = np.array([p[1] for p in polished])
        ties = _near_ties(pool_z, pool_f, np.zeros(len(polished), bool), best_z, best_f, pmap)
        n_starts = int(z0.shape[0])
        n_conv = sum(p[2] for p in polished)
        n_dropped = n_starts - len(polished)
    else:
        excluded = (result.merged_into >= 0) | result.dropped
        ties = _near_ties(result.z, result.objective, excluded, best_z, best_f, pmap)
        n_starts = int(result.z.shape[0])
        n_conv = int(np.sum(result.converged | (result.merged_into >= 0)))
        n_dropped = int(np.sum(result.dropped))

    with np.errstate(all="ignore"):
        fitted_log = law.log_predict(theta_best[None, :], feats)[0]
    noise = estimate_noise(log_y - fitted_log, w, group_codes, feats, law.inputs, len(pmap.free))
    scale = law.extrapolation_scale(feats)
    data_range = {
        "loss": [float(np.min(y_arr)), float(np.max(y_arr))],
        **{k: [float(np.min(feats[k])), float(np.max(feats[k]))] for k in law.inputs},
    }
    if scale is not None:
        data_range["scale"] = [float(np.min(scale)), float(np.max(scale))]
    options: dict[str, Any] = {
        "loss": loss,
        "delta": delta,
        "overestimate_penalty": overestimate_penalty,
        "cap_irreducible": cap_irreducible,
        "fixed": dict(fixed or {}),
        "tie": dict(tie or {}),
        "bounds": {k: list(v) for k, v in bounds.items()},
        "bootstrap": 0,
        "seed": seed,
        "search": method,
    }
    point = Fit(
        law=law,
        params={name: float(v) for name, v in zip(pmap.names, theta_best, strict=True)},
        objective=float(best_f),
        converged=bool(best_converged),
        n_points=n,
        n_groups=int(group_codes.max() + 1),
        n_starts=n_starts,
        n_starts_converged=n_conv,
        n_starts_dropped=n_dropped,
        near_ties=ties,
        noise=noise,
        data_range=data_range,
        options=options,
    )
    if bootstrap:
        context = SearchSpace(law, pmap, feats, robust, z0, projector, max_iter)
        return _bootstrap(
            [point], context, [(y_arr, w, group_codes)], bootstrap, bootstrap_kind, [seed], progress
        )[0]
    point.diagnostics = _diagnose(point, pmap, feats, y_arr, w)
    return point


def bootstrap_fits(
    fits: Sequence[Fit],
    x: Mapping[str, Any],
    losses: Sequence[Any],
    n_boot: int,
    *,
    groups: Any = None,
    weights: Any = None,
    kind: BootstrapKind = "auto",
    seeds: Sequence[int] | None = None,
    grid: FloatArray | Mapping[str, Sequence[float]] | None = None,
    max_iter: int = 400,
    progress: Progress | None = None,
) -> list[Fit]:
    """Bootstrap many point fits of one law on one design at once, all refits in one batch.

    The fits must come from :func:`fit_law` on the same inputs ``x`` (and ``groups``,
    ``weights``) with the same options, each on its own ``losses``; replicate data sets of a
    simulation, for instance. Each gets ``n_boot`` exploring refits exactly as
    ``fit_law(..., bootstrap=n_boot)`` would give it, with its diagnostics updated.

    Parameters
    ----------
    fits
        Point fits (``bootstrap=0``).
    x, losses
        The inputs they share, and each fit's observed losses.
    n_boot, kind, seeds
        Refits per fit, the scheme (see :func:`fit_law`), and each fit's seed (default: the
        seed each fit was made with).
    groups, weights, grid, max_iter
        As given to :func:`fit_law`.
    progress
        Called as ``progress(done, total)`` while the refits run.

    Returns
    -------
    list of Fit
    """
    if not fits:
        return []
    first = fits[0]
    keys = ("loss", "delta", "overestimate_penalty", "fixed", "tie", "bounds")
    for other in fits[1:]:
        if other.law.config() != first.law.config() or type(other.law) is not type(first.law):
            raise FitError("bootstrap_fits: every fit must be of the same law")
        if any(other.options.get(k) != first.options.get(k) for k in keys):
            raise FitError("bootstrap_fits: every fit must share its fitting options")
    if len(losses) != len(fits):
        raise FitError(f"bootstrap_fits: {len(losses)} loss arrays for {len(fits)} fits")
    law = first.law
    opts = first.options
    robust = RobustLoss(opts["loss"], opts["delta"], opts["overestimate_penalty"])
    pmap = ParameterMap.build(
        law,
        fixed=opts["fixed"],
        tie=opts["tie"],
        bounds={k: (float(v[0]), float(v[1])) for k, v in opts["bounds"].items()},
    )
    data = []
    feats: dict[str, FloatArray] = {}
    for y in losses:
        feats, y_arr = _check_arrays(law, x, y)
        w = _check_weights(weights, y_arr.size)
        data.append((y_arr, w, _group_codes(groups, y_arr.size)))
    z0 = _starts(law, pmap, grid)
    projector = Projector.build(law, pmap, z0, feats)
    context = SearchSpace(law, pmap, feats, robust, z0, projector, max_iter)
    chosen = [int(f.options.get("seed", 0)) for f in fits] if seeds is None else list(seeds)
    return _bootstrap(list(fits), context, data, n_boot, kind, chosen, progress)


def _bootstrap(
    fits: list[Fit],
    context: SearchSpace,
    data: Sequence[tuple[FloatArray, FloatArray, NDArray[np.intp]]],
    n_boot: int,
    kind: str,
    seeds: Sequence[int],
    progress: Progress | None,
) -> list[Fit]:
    """Refit every fit's data ``n_boot`` times; the fits with replicates and diagnostics."""
    if not 0 <= n_boot <= MAX_BOOTSTRAP:
        raise FitError(f"bootstrap must be between 0 and {MAX_BOOTSTRAP:,}, got {n_boot}")
    pmap = context.pmap
    chosen = choose_kind(kind, fits[0].n_groups, len(pmap.free))
    datasets = [
        Dataset(np.log(y), w, codes, pmap.z_from_theta(f.theta[None, :])[0], f.noise)
        for f, (y, w, codes) in zip(fits, data, strict=True)
    ]
    refits = bootstrap_refits(context, datasets, n_boot, chosen, seeds, progress)
    out = []
    for f, r, (y, w, _), seed in zip(fits, refits, data, seeds, strict=True):
        n_failed = int(np.sum(~r.converged))
        options = f.options | {
            "bootstrap": n_boot,
            "bootstrap_kind": chosen,
            "bootstrap_failed": n_failed,
            "seed": seed,
        }
        booted = replace(f, bootstrap_params=r.theta, options=options)
        booted.diagnostics = _diagnose(booted, pmap, context.x, y, w)
        out.append(booted)
    return out


def _diagnose(
    fit_result: Fit,
    pmap: ParameterMap,
    x: Mapping[str, FloatArray],
    y: FloatArray,
    weights: FloatArray,
) -> list[Diagnostic]:
    return diagnose(
        fit_result.law,
        pmap,
        fit_result.theta,
        x,
        y,
        weights,
        n_groups=fit_result.n_groups,
        converged=fit_result.converged,
        near_ties=fit_result.near_ties,
        bootstrap=fit_result.bootstrap_params,
        bootstrap_failed=int(fit_result.options.get("bootstrap_failed", 0)),
    )


def fit(
    observations: pd.DataFrame | str | Path,
    law: str | Law = "chinchilla",
    *,
    dataset: str | None = None,
    columns: Mapping[str, str] | None = None,
    loss_unit: LossUnit = "nats",
    **options: Any,
) -> Fit:
    """Fit a law to an Observations table (see ``scalinglab.data``).

    Parameters
    ----------
    observations
        Long table with the law's input columns and ``loss`` (nats); ``run_id``, when present,
        groups checkpoints of one run for the bootstrap. Or a file or run store, read by
        :func:`~scalinglab.data.load_observations`.
    law
        A law or the name of a registered law (``"chinchilla"``, ``"kaplan"``, ...).
    dataset
        Which ``dataset`` the loss was measured on; required when the table holds several
        (losses on different datasets never share one law).
    columns, loss_unit
        The source's column names → ours (``{"Model Size": "params"}``) and the unit of its
        losses; given either, a DataFrame is loaded (and validated) like a file.
    **options
        Any option of :func:`fit_law` except ``groups`` (taken from ``run_id``).

    Returns
    -------
    Fit
    """
    law_obj = get_law(law) if isinstance(law, str) else law
    if not isinstance(observations, pd.DataFrame) or columns or loss_unit != "nats":
        observations = load_observations(observations, columns=columns, loss_unit=loss_unit)
    if "loss" not in observations.columns:
        raise InputError("the table has no 'loss' column")
    observations = select_dataset(observations, dataset)
    x = law_obj.features(observations)
    return fit_law(
        law_obj,
        x,
        observations["loss"].to_numpy(dtype=float),
        groups=run_groups(observations),
        **options,
    )


def run_groups(observations: pd.DataFrame) -> Any:
    """Run id per row for the bootstrap, or ``None`` when every row is its own run."""
    return observations["run_id"].to_numpy() if run_ids_trusted(observations) else None


def select_dataset(observations: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """The rows measured on ``dataset``; with ``None``, the table must hold only one."""
    if "dataset" not in observations.columns:
        if dataset is not None:
            raise InputError(
                f"dataset '{dataset}' asked for, but the table has no 'dataset' column"
            )
        return observations
    names = sorted(map(str, observations["dataset"].dropna().unique()))
    if dataset is None:
        if len(names) > 1:
            raise InputError(
                f"the table holds losses on {len(names)} datasets "
                f"({', '.join(names)}); choose one with dataset="
            )
        return observations
    if dataset not in names:
        raise InputError(f"no rows for dataset '{dataset}'; the table has {', '.join(names)}")
    return observations[observations["dataset"].astype(str) == dataset]


# -- helpers -------------------------------------------------------------------------------


def _check_arrays(
    law: Law, x: Mapping[str, Any], y: Any
) -> tuple[dict[str, FloatArray], FloatArray]:
    y_arr = np.asarray(y, dtype=float).reshape(-1)
    feats: dict[str, FloatArray] = {}
    for name in law.inputs:
        if name not in x:
            raise FitError(f"law '{law.name}' needs input '{name}'; got {', '.join(x)}")
        arr = np.asarray(x[name], dtype=float).reshape(-1)
        if arr.size != y_arr.size:
            raise FitError(f"input '{name}' has {arr.size} points but the loss has {y_arr.size}")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(
                f"input '{name}' is not finite",
                row=int(bad[0]) + 1,
                column=name,
                value=float(arr[bad[0]]),
            )
        feats[name] = arr
    # law-specific extra arrays (e.g. per-run schedule features) pass through untouched
    for name, value in x.items():
        feats.setdefault(name, np.asarray(value, dtype=float))
    bad = np.flatnonzero(~(np.isfinite(y_arr) & (y_arr > 0)))
    if bad.size:
        raise InputError(
            "loss must be finite and positive",
            row=int(bad[0]) + 1,
            column="loss",
            value=float(y_arr[bad[0]]),
        )
    return feats, y_arr


def _check_weights(weights: Any, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != n:
        raise FitError(f"weights have {w.size} entries for {n} points")
    if not np.all(np.isfinite(w) & (w >= 0)) or not w.sum() > 0:
        raise FitError("weights must be finite, non-negative and not all zero")
    return w


def _group_codes(groups: Any, n: int) -> NDArray[np.intp]:
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups).reshape(-1)
    if g.size != n:
        raise FitError(f"groups have {g.size} entries for {n} points")
    codes = pd.factorize(g, use_na_sentinel=False)[0]
    return np.asarray(codes, dtype=np.intp)


def _check_identifiable(law: Law, x: Mapping[str, FloatArray], pmap: ParameterMap, n: int) -> None:
    distinct = (
        len({tuple(row) for row in np.column_stack([x[i] for i in law.inputs])})
        if law.inputs
        else n
    )
    distinct = min(distinct, n)
    if distinct <= len(pmap.free):
        raise FitError(
            f"law '{law.name}' has {len(pmap.free)} free parameters but the data have only "
            f"{distinct} distinct point(s) in {', '.join(law.inputs)}; need more than "
            f"{len(pmap.free)} (or fix some parameters)"
        )


def _starts(
    law: Law, pmap: ParameterMap, grid: FloatArray | Mapping[str, Sequence[float]] | None
) -> FloatArray:
    """Distinct starting points in z, clipped into the bounds."""
    params = law.parameters()
    if grid is None or isinstance(grid, Mapping):
        given = {} if grid is None else grid
        unknown = [k for k in given if k not in pmap.names]
        if unknown:
            raise FitError(f"grid: law '{law.name}' has no parameter {', '.join(unknown)}")
        # a product grid: the product of each free parameter's distinct values (fixed and
        # tied parameters take no values of their own)
        axes = []
        for i, name in enumerate(pmap.free):
            spec = params[pmap.names.index(name)]
            values = np.asarray(tuple(given.get(name, spec.grid)) or spec.grid[:1], dtype=float)
            if len(values) == 0:
                raise FitError(f"law '{law.name}' has no initial grid for {name}")
            z = np.log(np.maximum(values, 1e-300)) if spec.log_scale else values
            axes.append(np.unique(np.clip(z, pmap.lower[i], pmap.upper[i])))
        return _product(axes)
    theta = np.atleast_2d(np.asarray(grid, dtype=float))
    if theta.shape[1] != len(params):
        raise FitError(
            f"grid has {theta.shape[1]} columns; law '{law.name}' has {len(params)} parameters"
        )
    z = np.clip(pmap.z_from_theta(theta), pmap.lower, pmap.upper)
    return np.unique(z, axis=0)


def _search_lattice(
    objective: LawObjective, pmap: ParameterMap, lattice: Lattice, max_iter: int
) -> tuple[list[Polished], bool]:
    """Polish the projected lattice's minima (one per basin), best first; and whether to trust it.

    Not trusted when the polish ran out of iterations, or when the best lattice point is on an
    edge the bounds would let the fit go beyond (its basin may lie outside the grid).
    """
    values, _ = objective(lattice.z, np.arange(lattice.z.shape[0]))
    minima = lattice_minima(values, lattice.shape)
    candidates = _distinct(lattice.z[minima], pmap, N_POLISH)
    polished = [_polish(objective, z_start, pmap, max_iter) for z_start in candidates]
    trusted = (
        bool(polished)
        and min(polished, key=lambda p: p[1])[2]
        and not lattice.on_open_edge(int(minima[0]), pmap.lower, pmap.upper)
    )
    return polished, trusted


def _polish_best(
    objective: LawObjective, pmap: ParameterMap, result: BatchResult, max_iter: int
) -> list[Polished]:
    """Polish the batched search's best distinct results within 1% of its best objective."""
    finite = np.isfinite(result.objective)
    if not finite.any():
        raise FitError(f"law '{objective.law.name}': no start gave a finite objective")
    order = np.argsort(result.objective, kind="stable")
    order = order[finite[order]]
    # only candidates whose objective is already close to the best can overtake it
    close = result.objective[order] <= result.objective[order[0]] * (1 + POLISH_RTOL) + 1e-300
    candidates = _distinct(result.z[order[close]], pmap, N_POLISH)
    return [_polish(objective, z_start, pmap, max_iter) for z_start in candidates]


def _product(axes: Sequence[FloatArray]) -> FloatArray:
    """Cartesian product of the axes' values, one row per combination (row-major)."""
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once (finding them reads the loaded libraries)."""
    return ThreadpoolController()


def _distinct(z_sorted: FloatArray, pmap: ParameterMap, limit: int) -> list[FloatArray]:
    picked: list[FloatArray] = []
    for z in z_sorted:
        if all(not _same(z, p, pmap) for p in picked):
            picked.append(z)
            if len(picked) == limit:
                break
    return picked


def _same(z1: FloatArray, z2: FloatArray, pmap: ParameterMap) -> bool:
    t1 = pmap.theta(z1[None, :])[0]
    t2 = pmap.theta(z2[None, :])[0]
    scale = np.maximum(np.maximum(np.abs(t1), np.abs(t2)), 1e-12)
    return bool(np.all(np.abs(t1 - t2) <= DISTINCT_RTOL * scale))


def _polish(objective: LawObjective, z0: FloatArray, pmap: ParameterMap, max_iter: int) -> Polished:
    """scipy's L-BFGS-B from ``z0`` to tight tolerances: (z, objective, converged)."""
    one = np.zeros(1, dtype=np.intp)
    # L-BFGS-B's ftol is relative to max(|f|, 1): objectives here are often ~1e-3, so it is
    # run on f / f(z0) to make the stopping rule relative (else it stops ~1e-6 short)
    start = float(objective(z0[None, :], one)[0][0])
    scale = start if math.isfinite(start) and start > 0 else 1.0

    def f_and_g(z: FloatArray) -> tuple[float, FloatArray]:
        v, g = objective(z[None, :], one)
        return float(v[0]) / scale, g[0] / scale

    bnds = [
        (None if not math.isfinite(lo) else lo, None if not math.isfinite(hi) else hi)
        for lo, hi in zip(pmap.lower, pmap.upper, strict=True)
    ]
    res = minimize(
        f_and_g,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=bnds,
        # a longer memory than the default 10 costs nothing at a few parameters and saves ~10%
        # of the evaluations on the Huber objective's kinks
        options={"ftol": 1e-12, "gtol": 1e-9, "maxiter": max_iter, "maxcor": 20},
    )
    return np.asarray(res.x, dtype=float), float(res.fun) * scale, bool(res.success)


def _near_ties(
    z: FloatArray,
    f: FloatArray,
    excluded: NDArray[np.bool_],
    best_z: FloatArray,
    best_f: float,
    pmap: ParameterMap,
) -> list[dict[str, float]]:
    ok = np.isfinite(f) & ~excluded & (f <= best_f + TIE_RTOL * max(abs(best_f), 1e-300))
    rows = np.flatnonzero(ok)
    rows = rows[np.argsort(f[rows])]
    picked = _distinct(np.vstack([best_z[None, :], z[rows]]), pmap, 6)[1:]
    return [
        {
            **dict(zip(pmap.names, map(float, pmap.theta(p[None, :])[0]), strict=True)),
            "objective": float(_objective_at(p, z, f)),
        }
        for p in picked
    ]


def _objective_at(point: FloatArray, z: FloatArray, f: FloatArray) -> float:
    """Objective of the row of ``z`` equal to ``point`` (rows are final optimiser states)."""
    row = int(np.argmin(np.sum(np.abs(z - point), axis=1)))
    return float(f[row])
