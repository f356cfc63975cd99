"""Backtests: fit the smaller models of a family, forecast the largest, score by ARE.

Definitions (after Choshen, Zhang & Andreas 2024, "A Hitchhiker's Guide to Scaling Law
Estimation"):

- **family**: runs that share a recipe and differ in size; it needs at least three sizes.
- **target**: the run forecast, by default the largest model of the family (the run with the
  most parameters, the longest among equals). The *k* smallest model sizes below the target's
  are the training models.
- **fraction p**: the training models are seen only up to ``p`` of their own run length.
- **target fraction q**: optionally the first ``q`` of the target's own run is seen too.
- **test checkpoints**: the target's checkpoints from :data:`TEST_FROM` (70%) of its run on,
  and at or after the fit's early-token cutoff. **ARE** is the mean absolute relative error
  of the forecast over them.
- **no-fit baselines**, computed beside every result from the same visible checkpoints, with no
  cutoff: the *source* run is the target when part of it is seen (``q > 0``), otherwise the
  largest training model (the longest among equals); ``last_loss`` forecasts every test
  checkpoint by the source's last visible loss, ``mean_last_5`` by the mean of its last five
  visible losses. A fit worth making beats both.

Every scenario (k, p, q) and fitting choice of a family is fitted in one batched optimisation:
each is a row of per-point weights over the family's checkpoints (zero where a checkpoint is
not seen), so one vectorised L-BFGS run replaces hundreds of separate fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.checkpoints import (
    GUIDE_MIN_TOKENS,
    Weighting,
    group_weights,
    run_weights,
    select_checkpoints,
)
from scalinglab.evaluation.families import MIN_SIZES
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.subspace import (
    SubspaceLaw,
    centred_law,
    coefficients_from_theta,
    pca_law,
    relation_law,
)
from scalinglab.fitting import RobustLoss
from scalinglab.fitting.engine import LawObjective
from scalinglab.fitting.optimize import BatchObjective, batched_lbfgs
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws.base import FloatArray, Law, get_law

#: test checkpoints start at this fraction of the target's run
TEST_FROM = 0.7
#: fractions p of the training models' runs in the default grid
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: fractions q of the target's own run in the default grid (0: none of it)
DEFAULT_TARGET_FRACTIONS: tuple[float, ...] = (0.0, 0.3)
#: numbers of training sizes tried, besides "all sizes below the target"
DEFAULT_KS: tuple[int, ...] = (2, 3, 4, 5)
#: checkpoints kept per run in backtest fits (spread evenly in tokens)
DEFAULT_MAX_PER_RUN = 100
#: iteration cap and relative-decrease tolerance of the batched optimiser in backtests
BACKTEST_MAX_ITER = 200
BACKTEST_FTOL = 1e-8
#: principal components kept by the "pca" choice (Choshen et al.: three carry 99.5%)
PCA_COMPONENTS = 3
#: the no-fit baselines, in table order
BASELINES: tuple[str, ...] = ("last_loss", "mean_last_5")

ParameterChoice = Literal["all", "fixed_exponents", "relations", "pca"]
PARAMETER_CHOICES: tuple[str, ...] = ("all", "fixed_exponents", "relations", "pca")


@dataclass(frozen=True)
class FitChoice:
    """How to fit: which checkpoints, from when, and which parameters to borrow.

    Parameters
    ----------
    checkpoints
        ``"all"`` intermediate checkpoints, or each run's ``"final"`` visible one.
    min_tokens
        Early-token cutoff, tokens.
    min_fraction
        Checkpoints before this fraction of each run's length are left out too (the
        Hitchhiker's guide: all checkpoints after 10% of training).
    parameters
        ``"all"`` five fitted; ``"fixed_exponents"``: α and β held at the collection's median;
        ``"relations"``: α and β follow ``log A`` and ``log B`` linearly (3 fitted);
        ``"pca"``: the top principal components of the collection (3 fitted).
    weighting
        Per-point weights (see :func:`~scalinglab.evaluation.checkpoints.run_weights`).
    """

    checkpoints: Literal["all", "final"] = "all"
    min_tokens: float = GUIDE_MIN_TOKENS
    parameters: ParameterChoice = "all"
    weighting: Weighting = "run"
    min_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.checkpoints not in ("all", "final"):
            raise InputError(f"checkpoints must be 'all' or 'final', got '{self.checkpoints}'")
        if self.parameters not in PARAMETER_CHOICES:
            raise InputError(
                f"unknown parameter choice '{self.parameters}'; use one of "
                f"{', '.join(PARAMETER_CHOICES)}"
            )
        if not (math.isfinite(self.min_tokens) and self.min_tokens >= 0):
            raise InputError("the early-token cutoff must be >= 0", value=self.min_tokens)
        if not 0.0 <= self.min_fraction < 1.0:
            raise InputError("min_fraction must be in [0, 1)", value=self.min_fraction)

    @property
    def needs_collection(self) -> bool:
        """Whether the choice borrows from a collection of other fits."""
        return self.parameters != "all"

    def describe(self) -> str:
        """One line for tables."""
        start = f" from {self.min_fraction:.0%} of each run" if self.min_fraction else ""
        return (
            f"{self.checkpoints} checkpoints{start}, cutoff {self.min_tokens:.3g} tokens, "
            f"parameters: {self.parameters}, weighting: {self.weighting}"
        )


#: the named choices of the standard grid; each differs from "default" in one factor
CHOICES: dict[str, FitChoice] = {
    "default": FitChoice(),
    "final_only": FitChoice(checkpoints="final"),
    "no_cutoff": FitChoice(min_tokens=0.0),
    "fixed_exponents": FitChoice(parameters="fixed_exponents"),
    "relations": FitChoice(parameters="relations"),
    "pca": FitChoice(parameters="pca"),
    # the Hitchhiker's guide's practice: every checkpoint after 10% of each run, five free
    "guide": FitChoice(min_tokens=0.0, min_fraction=0.1),
}
#: the comparisons the standard grid answers: factor → the choices compared
FACTORS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("default", "final_only"),
    "cutoff": ("default", "no_cutoff", "guide"),
    "parameters": ("default", "fixed_exponents", "relations", "pca"),
}


@dataclass
class BacktestResult:
    """One forecast of one target under one scenario and fitting choice.

    ``extrapolation`` is the compute ratio forecast: the target's N·D at its last checkpoint
    over the largest N·D the fit saw. ``plausible`` says whether the forecast of the target's
    last checkpoint is below every loss its source run showed (the largest training model,
    or the target's own seen part): a model at least as large trained on at least as many
    tokens does not end worse. ``None`` where that comparison does not apply.
    """

    family: str
    target: str
    k: int
    fraction: float
    target_fraction: float
    choice: str
    are: float
    baselines: dict[str, float]
    n_train_points: int
    n_test_points: int
    train_runs: list[str]
    params: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    extrapolation: float = math.nan
    plausible: bool | None = None

    @property
    def beats_baselines(self) -> bool:
        """Whether the fit's ARE is below every no-fit baseline's."""
        return bool(
            math.isfinite(self.are)
            and all(self.are < v for v in self.baselines.values() if math.isfinite(v))
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self) | {"beats_baselines": self.beats_baselines}


@dataclass
class BacktestReport:
    """Results of a backtest grid over one or more families."""

    results: list[BacktestResult]
    skipped: dict[str, str] = field(default_factory=dict)
    collection: pd.DataFrame | None = None

    def table(self) -> pd.DataFrame:
        """One row per result: scenario, choice, ARE, and the baselines' ARE."""
        rows = []
        for r in self.results:
            rows.append(
                {
                    "family": r.family,
                    "target": r.target,
                    "k": r.k,
                    "fraction": r.fraction,
                    "target_fraction": r.target_fraction,
                    "choice": r.choice,
                    "are": r.are,
                    **{f"are_{b}": r.baselines.get(b, math.nan) for b in BASELINES},
                    "beats_baselines": r.beats_baselines,
                    "extrapolation": r.extrapolation,
                    "plausible": r.plausible,
                    "n_train_points": r.n_train_points,
                    "n_test_points": r.n_test_points,
                    "error": r.error,
                }
            )
        return pd.DataFrame(rows)

    def comparisons(self) -> dict[str, pd.DataFrame]:
        """ARE tables for each factor of :data:`FACTORS`, each against the baselines.

        A factor is compared when the report has its reference choice and at least one
        other. Each table has a row per family: the median ARE of every compared choice over the
        scenarios where all of them produced a forecast, the median ARE of each baseline over
        the same scenarios, and the scenario count. A last row ``all`` pools every family.
        """
        table = self.table()
        out: dict[str, pd.DataFrame] = {}
        keys = ["family", "target", "k", "fraction", "target_fraction"]
        for factor, compared in FACTORS.items():
            # the factor's choices this report has (the first is the reference)
            names = tuple(n for n in compared if n in set(table["choice"]))
            if len(names) < 2 or names[0] != compared[0]:
                continue
            part = table[table["choice"].isin(names)]
            wide = part.pivot_table(index=keys, columns="choice", values="are", aggfunc="first")
            wide = wide.reindex(columns=list(names)).dropna()
            if wide.empty:
                continue
            base = (
                part[part["choice"] == names[0]]
                .set_index(keys)[[f"are_{b}" for b in BASELINES]]
                .reindex(wide.index)
            )
            joined = pd.concat([wide, base], axis=1)
            per_family = joined.groupby(level="family").median()
            per_family["scenarios"] = joined.groupby(level="family").size()
            pooled = joined.median().to_frame("all").T
            pooled["scenarios"] = len(joined)
            out[factor] = pd.concat([per_family, pooled])
        return out

    def best(self, by: str = "choice") -> pd.DataFrame:
        """Median ARE and win rate against the baselines, grouped by ``by`` (sorted)."""
        table = self.table().dropna(subset=["are"])
        grouped = table.groupby(by)
        out = pd.DataFrame(
            {
                "median_are": grouped["are"].median(),
                "mean_are": grouped["are"].mean(),
                **{f"median_are_{b}": grouped[f"are_{b}"].median() for b in BASELINES},
                "beats_baselines": grouped["beats_baselines"].mean(),
                "results": grouped.size(),
            }
        )
        return out.sort_values("median_are")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: results, skipped families, comparison tables."""
        return {
            "results": [r.to_dict() for r in self.results],
            "skipped": dict(self.skipped),
            "comparisons": {
                k: v.reset_index(names="family").to_dict(orient="records")
                for k, v in self.comparisons().items()
            },
            "choices": {n: asdict(c) for n, c in CHOICES.items()},
        }


# -- one family --------------------------------------------------------------------------

#: relative slack on fraction thresholds, so that fraction 1.0 keeps a run's last checkpoint
_EPS = 1e-12


@dataclass
class _Family:
    """A family's runs arranged for backtesting one target, as plain arrays."""

    name: str
    target: str
    sizes: list[float]  # distinct sizes below the target's, ascending
    runs: list[str]  # run ids; codes index this list
    run_size_rank: NDArray[np.intp]  # per run: index into sizes, or -1 (target / larger)
    run_length: FloatArray  # per run: tokens
    target_code: int
    # every checkpoint of the family, sorted by (run, tokens)
    code: NDArray[np.intp]
    tokens: FloatArray
    loss: FloatArray
    params: FloatArray

    def rows_of(self, run: int) -> slice:
        lo, hi = np.searchsorted(self.code, [run, run + 1])
        return slice(int(lo), int(hi))

    def largest_training_run(self, k: int) -> int:
        """The run with the most parameters among the k smallest sizes, longest among equals."""
        ok = np.flatnonzero((self.run_size_rank >= 0) & (self.run_size_rank < k))
        order = np.lexsort((self.run_length[ok], self.run_size_rank[ok]))
        return int(ok[order[-1]])


def _prepare(
    obs: pd.DataFrame, family: str, target: str | None, cutoff: float, test_from: float
) -> _Family:
    for col in ("run_id", "params", "tokens", "loss"):
        if col not in obs.columns:
            raise InputError(f"a backtest needs column '{col}'")
    in_family = (
        obs["family"].astype(str).to_numpy() == family
        if "family" in obs.columns
        else np.ones(len(obs), dtype=bool)
    )
    if not in_family.any():
        raise InputError(f"no rows for family '{family}'")
    run_ids = obs["run_id"].astype(str).to_numpy()[in_family]
    codes, runs = pd.factorize(run_ids, sort=True)
    tokens = obs["tokens"].to_numpy(dtype=float)[in_family]
    loss = obs["loss"].to_numpy(dtype=float)[in_family]
    params = obs["params"].to_numpy(dtype=float)[in_family]
    order = np.lexsort((tokens, codes))
    codes, tokens, loss, params = codes[order], tokens[order], loss[order], params[order]
    n_runs = len(runs)
    run_params = np.zeros(n_runs)
    run_params[codes] = params
    run_length = np.zeros(n_runs)
    np.maximum.at(run_length, codes, tokens)
    names = [str(r) for r in runs]
    if target is None:
        target_code = int(np.lexsort((run_length, run_params))[-1])
    elif target in names:
        target_code = names.index(target)
    else:
        raise InputError(f"no run '{target}' in family '{family}'; its runs are {', '.join(names)}")
    target_params = run_params[target_code]
    sizes = sorted({float(v) for v in run_params[run_params < target_params]})
    if len(sizes) < MIN_SIZES - 1:
        raise InputError(
            f"family '{family}' has {len(sizes)} model size(s) below the target "
            f"'{names[target_code]}' ({target_params:.3g} params); a backtest needs at least "
            f"{MIN_SIZES - 1} to fit on"
        )
    rank = np.full(n_runs, -1, dtype=np.intp)
    smaller = run_params < target_params
    rank[smaller] = np.searchsorted(sizes, run_params[smaller])
    fam = _Family(
        family,
        names[target_code],
        sizes,
        names,
        rank,
        run_length,
        target_code,
        codes.astype(np.intp),
        tokens,
        loss,
        params,
    )
    total = run_length[target_code]
    start = max(test_from * total, cutoff)
    if not (tokens[fam.rows_of(target_code)] >= start * (1 - _EPS)).any():
        raise InputError(
            f"target '{fam.target}' has no checkpoint at or after {start:.3g} tokens "
            f"({test_from:.0%} of its {total:.3g}-token run and the {cutoff:.3g}-token cutoff); "
            "lower the early-token cutoff or pick a longer-trained target"
        )
    return fam


def _default_ks(n_sizes: int) -> list[int]:
    return sorted({k for k in (*DEFAULT_KS, n_sizes) if 2 <= k <= n_sizes})


def starting_grid(law: Law, y: FloatArray) -> dict[str, list[float]]:
    """The backtests' few starts: the floor near the lowest loss, mid-grid scales, exponents.

    Parameters
    ----------
    law
        The law whose grid is thinned (the irreducible parameter is set from ``y``).
    y
        Losses to be fitted.

    Returns
    -------
    dict
        Parameter name → start values (the ``grid=`` of :func:`scalinglab.fitting.fit_law`).
    """
    grid: dict[str, list[float]] = {}
    for p in law.parameters():
        if p.name == law.irreducible:
            grid[p.name] = [0.5 * float(np.min(y)), 0.9 * float(np.min(y))]
        elif p.log_scale and len(p.grid) >= 3:
            grid[p.name] = [p.grid[1], p.grid[2]]
        elif p.grid:
            grid[p.name] = [p.grid[len(p.grid) // 4]]
    return grid


def _product(law: Law, grid: Mapping[str, Sequence[float]]) -> FloatArray:
    axes = [list(grid.get(p.name, p.grid)) for p in law.parameters()]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def _star(law: Law) -> FloatArray:
    """The grid's centre, and one step to each end of every parameter's grid (2q + 1 starts)."""
    params = law.parameters()
    centre = np.array([p.grid[len(p.grid) // 2] for p in params], dtype=float)
    rows = [centre]
    for j, p in enumerate(params):
        for end in (p.grid[0], p.grid[-1]):
            row = centre.copy()
            row[j] = end
            rows.append(row)
    return np.unique(np.array(rows), axis=0)


@dataclass
class Parameterisation:
    """How a parameter choice is fitted: the law optimised, held values, map and starts (z)."""

    law: Law
    pmap: ParameterMap
    starts: FloatArray
    fixed: dict[str, float]


def parameterisation(
    base: Law,
    choice: str,
    collection: pd.DataFrame | None,
    x: Mapping[str, FloatArray],
    y: FloatArray,
) -> Parameterisation:
    """Build a parameter choice for a base law.

    Parameters
    ----------
    base
        The law of (params, tokens) to fit.
    choice
        One of :data:`PARAMETER_CHOICES`.
    collection
        Fits of other families (needed by every choice but ``"all"``).
    x, y
        Inputs and losses to be fitted: the scales of ``"all"`` and ``"fixed_exponents"``
        are measured at the inputs' centre (see
        :func:`~scalinglab.evaluation.subspace.centred_law`), and the floor's starting values
        sit just below the lowest loss.

    Raises
    ------
    FitError
        When the choice needs a collection and none (or too small a one) is given.
    """
    if choice != "all" and (collection is None or collection.empty):
        raise FitError(f"'{choice}' borrows from a collection of fits; none was given")
    fixed: dict[str, float] = {}
    if choice == "relations":
        assert collection is not None
        law: Law = relation_law(collection, base)
        theta = _star(law)
    elif choice == "pca":
        assert collection is not None
        law = pca_law(collection, base, PCA_COMPONENTS)
        theta = _star(law)
    else:
        law = centred_law(base, x)
        theta = _product(base, starting_grid(base, y))
        if collection is not None and not collection.empty:
            # the collection's median is a good start
            med = collection[list(base.param_names)].median().to_numpy(dtype=float)
            theta = np.vstack([theta, med])
        if choice == "fixed_exponents":
            assert collection is not None
            missing = [n for n in ("alpha", "beta") if n not in base.param_names]
            if missing:
                raise FitError(f"law '{base.name}' has no parameter {', '.join(missing)}")
            fixed = {n: float(collection[n].median()) for n in ("alpha", "beta")}
            for n, v in fixed.items():
                theta[:, base.param_names.index(n)] = v
        theta = coefficients_from_theta(law, theta)
    pmap = ParameterMap.build(law, fixed=fixed)
    z = np.unique(np.clip(pmap.z_from_theta(theta), pmap.lower, pmap.upper), axis=0)
    return Parameterisation(law, pmap, z, fixed)


def solve_weight_rows(
    variant: Parameterisation,
    weights: FloatArray,
    make_objective: Callable[[FloatArray, NDArray[np.intp]], BatchObjective],
) -> tuple[FloatArray, FloatArray]:
    """Fit every weight row from every start at once; best θ ``(rows, p)`` and objective.

    Parameters
    ----------
    variant
        The law's parameter map and starts (every row runs from every start: each refit
        explores, none is seeded from another's solution).
    weights
        Per-point weights, one row per problem (scenario, bootstrap replicate), ``(rows, n)``.
    make_objective
        ``(weights per problem (rows·m, n), row of each problem (rows·m,))`` → the batched
        objective (:class:`~scalinglab.fitting.LawObjective`, or one whose law depends on the
        row).

    Each row's weights are scaled so that its best start's objective is 1: the optimiser's
    relative tolerance then means the same for every row, however small its residuals.
    """
    m = variant.starts.shape[0]
    rows = weights.shape[0]
    z0 = np.tile(variant.starts, (rows, 1))
    owner = np.repeat(np.arange(rows), m)
    w = np.repeat(weights, m, axis=0)
    start_f, _ = make_objective(w, owner)(z0, np.arange(rows * m))
    start_f = np.where(np.isfinite(start_f), start_f, np.inf).reshape(rows, m).min(axis=1)
    scale = np.where(np.isfinite(start_f) & (start_f > 0), 1.0 / start_f, 1.0)
    objective = make_objective(w * np.repeat(scale, m)[:, None], owner)
    # rows hold different problems: never merge or race them against each other
    res = batched_lbfgs(
        objective,
        z0,
        variant.pmap.lower,
        variant.pmap.upper,
        max_iter=BACKTEST_MAX_ITER,
        ftol=BACKTEST_FTOL,
        merge_every=0,
    )
    f = res.objective.reshape(rows, m)
    best = np.argmin(f, axis=1)
    z = res.z.reshape(rows, m, -1)[np.arange(rows), best]
    return variant.pmap.theta(z), f[np.arange(rows), best] / scale


def _solve(
    variant: Parameterisation,
    x: Mapping[str, FloatArray],
    log_y: FloatArray,
    weights: FloatArray,
    loss: RobustLoss,
) -> tuple[FloatArray, FloatArray]:
    """:func:`solve_weight_rows` of the variant's law on ``(x, log y)``."""
    return solve_weight_rows(
        variant,
        weights,
        lambda w, _owner: LawObjective(variant.law, variant.pmap, x, log_y, w, loss),
    )


def _base_params(law: Law, theta: FloatArray) -> dict[str, float]:
    """Fitted parameters in the base law's terms (a subspace law reports its base's)."""
    named = dict(zip(law.param_names, map(float, theta), strict=True))
    return law.base_params(named) if isinstance(law, SubspaceLaw) else named


def _thin_mask(
    fam: _Family, candidates: NDArray[np.bool_], max_per_run: int | None
) -> NDArray[np.bool_]:
    """Candidates thinned per run to ``max_per_run`` checkpoints evenly spread in tokens."""
    if max_per_run is None:
        return candidates
    rows = np.flatnonzero(candidates)
    frame = pd.DataFrame(
        {"run_id": fam.code[rows], "tokens": fam.tokens[rows], "loss": fam.loss[rows]}
    )
    kept = select_checkpoints(frame, max_per_run=max_per_run).index.to_numpy()
    keep = np.zeros_like(candidates)
    keep[rows[kept]] = True
    return keep


def _seen(
    fam: _Family, pool: NDArray[np.intp], k: int, p: float, q: float, choice: FitChoice
) -> NDArray[np.intp]:
    """Indices (into the family arrays) of the pool checkpoints a scenario's fit sees."""
    code = fam.code[pool]
    tokens = fam.tokens[pool]
    length = fam.run_length[code]
    rank = fam.run_size_rank[code]
    train = (rank >= 0) & (rank < k) & (tokens <= p * length * (1 + _EPS))
    target = (code == fam.target_code) & (tokens <= q * length * (1 + _EPS)) if q > 0 else False
    mask = (
        (train | target)
        & (tokens >= choice.min_tokens)
        & (tokens >= choice.min_fraction * length * (1 - _EPS))
    )
    if choice.checkpoints == "final" and mask.any():
        last = np.zeros(len(fam.runs))
        np.maximum.at(last, code[mask], tokens[mask])
        mask &= tokens == last[code]
    return pool[mask]


def _baselines(fam: _Family, k: int, p: float, q: float) -> FloatArray | None:
    """The source run's visible losses, in token order (see the module notes)."""
    t = fam.rows_of(fam.target_code)
    seen_target = fam.tokens[t] <= q * fam.run_length[fam.target_code] * (1 + _EPS)
    if q > 0 and seen_target.any():
        return fam.loss[t][seen_target]
    source = fam.largest_training_run(k)
    r = fam.rows_of(source)
    seen = fam.tokens[r] <= p * fam.run_length[source] * (1 + _EPS)
    return fam.loss[r][seen] if seen.any() else None


def _ceiling(fam: _Family, k: int, p: float, q: float) -> float | None:
    """The lowest visible loss a plausible forecast of the target's end must be below.

    The source run's (see :func:`_baselines`): a model at least as large, trained on at least
    as many tokens, does not end worse. ``None`` where the target is not both.
    """
    t = fam.rows_of(fam.target_code)
    final_tokens = fam.tokens[t][-1]
    if q > 0:
        rows, limit = t, q * fam.run_length[fam.target_code]
    else:
        source = fam.largest_training_run(k)
        if fam.params[fam.rows_of(source)][0] > fam.params[t][0]:
            return None
        rows, limit = fam.rows_of(source), p * fam.run_length[source]
    seen = fam.tokens[rows] <= limit * (1 + _EPS)
    if not seen.any() or fam.tokens[rows][seen].max() > final_tokens:
        return None
    return float(fam.loss[rows][seen].min())


def backtest_family(
    observations: pd.DataFrame,
    family: str,
    *,
    target: str | None = None,
    ks: Iterable[int] | None = None,
    fractions: Iterable[float] = DEFAULT_FRACTIONS,
    target_fractions: Iterable[float] = DEFAULT_TARGET_FRACTIONS,
    choices: Mapping[str, FitChoice] | None = None,
    collection: pd.DataFrame | None = None,
    law: str | Law = "chinchilla",
    test_from: float = TEST_FROM,
    max_per_run: int | None = DEFAULT_MAX_PER_RUN,
    loss: RobustLoss | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[BacktestResult]:
    """Backtest one family over a grid of scenarios and fitting choices.

    Parameters
    ----------
    observations
        Observations (``run_id``, ``params``, ``tokens``, ``loss`` in nats; ``family``).
    family
        The family to backtest (a table without a ``family`` column is one family).
    target
        The run to forecast; default the largest model.
    ks
        Numbers of training sizes (the k smallest); default 2..5 and all below the target.
    fractions
        Fractions p of the training models' runs that are seen.
    target_fractions
        Fractions q of the target's own run that are seen (0: none).
    choices
        Named fitting choices; default :data:`CHOICES`. Choices that borrow parameters need
        ``collection``; without one their results carry the reason as ``error``.
    collection
        Fitted parameters of *other* families (see :func:`collection_for`), one row each.
    law
        The law of (params, tokens) to fit; default Chinchilla.
    test_from
        Test checkpoints start at this fraction of the target's run.
    max_per_run
        Thin each run to this many checkpoints for fitting (``None``: all).
    loss
        Robust loss of the objective; default Huber(1e-3) on log residuals.
    progress
        Called as ``progress(done, total)`` after each batch of fits (one per kind of
        parameterisation).

    Returns
    -------
    list of BacktestResult
        One per (k, p, q, choice), failed fits included with their ``error``.

    Raises
    ------
    InputError
        A family with too few sizes, an unknown target, a target without checkpoints after
        the cutoff, or fractions outside (0, 1] (q in [0, test_from)).
    """
    base = get_law(law) if isinstance(law, str) else law
    choices = dict(CHOICES if choices is None else choices)
    if not choices:
        raise InputError("no fitting choice to backtest")
    fracs = sorted({float(p) for p in fractions})
    tfracs = sorted({float(q) for q in target_fractions})
    if not fracs or not all(0 < p <= 1 for p in fracs):
        raise InputError(f"fractions of training must be in (0, 1], got {fracs}")
    if not tfracs or not all(0 <= q < test_from for q in tfracs):
        raise InputError(
            f"target fractions must be in [0, {test_from:g}) so that the seen part of the "
            f"target precedes its test checkpoints; got {tfracs}"
        )
    max_cut = max(c.min_tokens for c in choices.values())
    fam = _prepare(observations, family, target, max_cut, test_from)
    n_sizes = len(fam.sizes)
    k_list = _default_ks(n_sizes) if ks is None else sorted({int(k) for k in ks})
    bad = [k for k in k_list if not 1 <= k <= n_sizes]
    if bad or not k_list:
        raise InputError(
            f"k must be between 1 and {n_sizes} (the sizes below target '{fam.target}'), "
            f"got {', '.join(map(str, bad or k_list))}"
        )
    loss = loss or RobustLoss()

    # the checkpoints any scenario may see, thinned once
    code_rank = fam.run_size_rank[fam.code]
    is_target = fam.code == fam.target_code
    target_total = fam.run_length[fam.target_code]
    candidates = ((code_rank >= 0) & (code_rank < max(k_list))) | (
        is_target & (fam.tokens <= max(tfracs) * target_total * (1 + _EPS)) & (max(tfracs) > 0)
    )
    pool = np.flatnonzero(_thin_mask(fam, candidates, max_per_run))
    x_all = {"params": fam.params, "tokens": fam.tokens}
    x = {name: v[pool] for name, v in x_all.items()}
    log_y = np.log(fam.loss[pool])
    pool_pos = np.full(fam.code.size, -1, dtype=np.intp)
    pool_pos[pool] = np.arange(pool.size)

    scenarios = [(k, p, q) for k in k_list for p in fracs for q in tfracs]
    visible = {s: _baselines(fam, *s) for s in scenarios}
    variants: dict[str, Parameterisation | str] = {}
    for kind in {c.parameters for c in choices.values()}:
        try:
            variants[kind] = parameterisation(base, kind, collection, x, fam.loss[pool])
        except FitError as err:
            variants[kind] = str(err)

    results: list[BacktestResult] = []
    # choices sharing a parameterisation are solved in one batch
    for done, parameters in enumerate(sorted(variants)):
        if progress is not None:
            progress(done, len(variants))
        variant = variants[parameters]
        weight_rows: list[FloatArray] = []
        pending: list[tuple[BacktestResult, FloatArray, FloatArray]] = []
        for name, choice in choices.items():
            if choice.parameters != parameters:
                continue
            t = fam.rows_of(fam.target_code)
            test = fam.tokens[t] >= max(test_from * target_total, choice.min_tokens) * (1 - _EPS)
            test_loss = fam.loss[t][test]
            test_x = {n: v[t][test] for n, v in x_all.items()}
            for k, p, q in scenarios:
                seen_losses = visible[(k, p, q)]
                baselines = {b: math.nan for b in BASELINES}
                if seen_losses is not None:
                    forecast = {
                        "last_loss": seen_losses[-1],
                        "mean_last_5": seen_losses[-5:].mean(),
                    }
                    baselines = {
                        b: are(np.full(test_loss.size, forecast[b]), test_loss) for b in BASELINES
                    }
                result = BacktestResult(
                    family=fam.name,
                    target=fam.target,
                    k=k,
                    fraction=p,
                    target_fraction=q,
                    choice=name,
                    are=math.nan,
                    baselines=baselines,
                    n_train_points=0,
                    n_test_points=int(test_loss.size),
                    train_runs=[r for c, r in enumerate(fam.runs) if 0 <= fam.run_size_rank[c] < k],
                )
                results.append(result)
                if isinstance(variant, str):
                    result.error = variant
                    continue
                seen = _seen(fam, pool, k, p, q, choice)
                result.n_train_points = int(seen.size)
                n_free = len(variant.pmap.free)
                distinct = len(
                    np.unique(np.column_stack([fam.params[seen], fam.tokens[seen]]), axis=0)
                )
                if distinct <= n_free:
                    result.error = (
                        f"{distinct} distinct (params, tokens) point(s) seen at or after "
                        f"{choice.min_tokens:.3g} tokens and {choice.min_fraction:g} of each "
                        f"run, within {p:g} of it; "
                        f"{n_free} free parameters need more"
                    )
                    continue
                w = np.zeros(pool.size)
                w[pool_pos[seen]] = group_weights(fam.code[seen], choice.weighting)
                weight_rows.append(w)
                result.extrapolation = float(
                    fam.params[t][-1] * target_total / np.max(fam.params[seen] * fam.tokens[seen])
                )
                pending.append(
                    (result, test_loss, np.column_stack([test_x["params"], test_x["tokens"]]))
                )
        if not pending:
            continue
        assert not isinstance(variant, str)
        # scenarios that see the same checkpoints with the same weights are one fit
        unique_rows, which = np.unique(np.vstack(weight_rows), axis=0, return_inverse=True)
        theta, objective = _solve(variant, x, log_y, unique_rows, loss)
        theta, objective = theta[which.ravel()], objective[which.ravel()]
        for (result, test_loss, test_pts), th, f in zip(pending, theta, objective, strict=True):
            with np.errstate(all="ignore"):
                pred = np.exp(
                    variant.law.log_predict(
                        th[None, :], {"params": test_pts[:, 0], "tokens": test_pts[:, 1]}
                    )[0]
                )
            if not (np.isfinite(f) and np.all(np.isfinite(pred))):
                result.error = "no start gave a finite objective and forecast"
                continue
            result.are = are(pred, test_loss)
            result.params = _base_params(variant.law, th)
            ceiling = _ceiling(fam, result.k, result.fraction, result.target_fraction)
            if ceiling is not None:
                result.plausible = bool(0 < pred[-1] < ceiling)
    if progress is not None:
        progress(len(variants), len(variants))
    return results


def backtest_all(
    observations: pd.DataFrame,
    *,
    ks: Iterable[int] | None = None,
    fractions: Iterable[float] = DEFAULT_FRACTIONS,
    target_fractions: Iterable[float] = DEFAULT_TARGET_FRACTIONS,
    choices: Mapping[str, FitChoice] | None = None,
    collection: pd.DataFrame | None = None,
    law: str | Law = "chinchilla",
    max_per_run: int | None = DEFAULT_MAX_PER_RUN,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """Backtest every family with at least three model sizes, each forecasting its largest.

    Choices that borrow parameters use leave-one-family-out collections: the target family's
    own fit is dropped from ``collection`` (by default the fits of every family in
    ``observations``, see :func:`collection_for`).

    Parameters
    ----------
    observations
        Observations with a ``family`` column (e.g. from
        :func:`~scalinglab.evaluation.families.load_families`).
    ks, fractions, target_fractions, choices, law, max_per_run
        As in :func:`backtest_family`.
    collection
        Fitted parameters by family; default computed from ``observations``.
    workers
        Processes that backtest families in parallel (1: in this process).
    progress
        Called as ``progress(done, total)``: 0 before the collection's fits, then as each
        family's backtest finishes.

    Returns
    -------
    BacktestReport
        Results of every family; families that cannot be backtested are in ``skipped`` with
        the reason (also those ``observations.attrs["skipped_families"]`` lists).
    """
    if "family" not in observations.columns:
        raise InputError("backtesting all families needs a 'family' column")
    if workers < 1:
        raise InputError("workers must be at least 1", value=workers)
    base = get_law(law) if isinstance(law, str) else law
    choices = dict(CHOICES if choices is None else choices)
    if progress is not None:
        progress(0, observations["family"].nunique())
    if collection is None and any(c.needs_collection for c in choices.values()):
        collection = collection_for(observations, base, max_per_run=max_per_run)
    skipped = dict(observations.attrs.get("skipped_families", {}))
    columns = [c for c in ("run_id", "family", "params", "tokens", "loss") if c in observations]
    plain = observations[columns]
    plain.attrs = {}  # pandas deep-copies attrs on every operation
    frames = {str(f): rows for f, rows in plain.groupby("family", sort=True)}
    tasks = [
        (
            family,
            dict(
                ks=None if ks is None else list(ks),
                fractions=list(fractions),
                target_fractions=list(target_fractions),
                choices=choices,
                collection=None
                if collection is None
                else collection.drop(index=family, errors="ignore"),
                law=base,
                max_per_run=max_per_run,
            ),
        )
        for family in frames
    ]

    def finished(done: int) -> None:
        if progress is not None:
            progress(done, len(tasks))

    if workers == 1:
        outcomes = []
        for f, opts in tasks:
            outcomes.append(_family_task(frames[f], f, opts))
            finished(len(outcomes))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_family_task, frames[f], f, opts) for f, opts in tasks]
            for done, _ in enumerate(as_completed(futures), start=1):
                finished(done)
            outcomes = [fut.result() for fut in futures]
    results: list[BacktestResult] = []
    for (family, _), outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, str):
            skipped[str(family)] = outcome
        else:
            results.extend(outcome)
    return BacktestReport(results, skipped, collection)


def _family_task(
    rows: pd.DataFrame, family: str, options: dict[str, Any]
) -> list[BacktestResult] | str:
    """One family of :func:`backtest_all` (module-level so that worker processes can run it)."""
    try:
        return backtest_family(rows, str(family), **options)
    except InputError as err:
        return str(err)


def collection_for(
    observations: pd.DataFrame,
    law: str | Law = "chinchilla",
    *,
    by: str = "family",
    min_sizes: int = 2,
    min_tokens: float = GUIDE_MIN_TOKENS,
    max_per_run: int | None = DEFAULT_MAX_PER_RUN,
    weighting: Weighting = "run",
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Fit a law to each group of runs (a family): the collection to borrow parameters from.

    Each group is fitted on all its runs' checkpoints (after the cutoff, thinned) with the
    backtests' batched solver and small start grid.

    Parameters
    ----------
    observations
        Observations with a ``by`` column.
    law
        The law to fit.
    by
        Column whose values define the groups.
    min_sizes
        Groups with fewer distinct ``params`` are left out (one size cannot separate the
        parameter term from the floor); they are listed in ``attrs["skipped"]``.
    min_tokens, max_per_run, weighting
        Checkpoint selection and weights, as in
        :func:`~scalinglab.evaluation.checkpoints.fit_checkpoints`.
    progress
        Called as ``progress(done, total)`` after each group.

    Returns
    -------
    pandas.DataFrame
        Indexed by group: one column per law parameter, plus ``n_points`` and ``objective``.
        Groups whose fit leaves a parameter at a bound (e.g. an exponent at 5 when three
        close sizes cannot pin it down) are left out too, with the others in
        ``attrs["skipped"]``.
    """
    if by not in observations.columns:
        raise InputError(f"cannot collect fits by '{by}': the table has no such column")
    base = get_law(law) if isinstance(law, str) else law
    rows: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    plain = observations.copy()
    plain.attrs = {}  # pandas deep-copies attrs on every operation
    groups = plain.groupby(by, sort=True)
    for done, (group, df) in enumerate(groups):
        if progress is not None:
            progress(done, groups.ngroups)
        sizes = df["params"].nunique()
        if sizes < min_sizes:
            skipped[str(group)] = f"{sizes} model size(s), fewer than {min_sizes}"
            continue
        points = select_checkpoints(df, min_tokens=min_tokens, max_per_run=max_per_run)
        if len(points) <= len(base.param_names):
            skipped[str(group)] = f"{len(points)} checkpoint(s) after {min_tokens:.3g} tokens"
            continue
        y = points["loss"].to_numpy(dtype=float)
        variant = parameterisation(base, "all", None, base.features(points), y)
        theta, objective = _solve(
            variant,
            base.features(points),
            np.log(y),
            run_weights(points, weighting)[None, :],
            RobustLoss(),
        )
        params = _base_params(variant.law, theta[0])
        at_bound = [
            p.name
            for p in base.parameters()
            if np.isclose(params[p.name], p.lower, rtol=1e-6, atol=1e-9)
            or np.isclose(params[p.name], p.upper, rtol=1e-6, atol=1e-9)
        ]
        if at_bound:
            # a parameter pinned at a bound is not an estimate worth borrowing from
            skipped[str(group)] = f"fit has {', '.join(at_bound)} at a bound"
            continue
        rows[str(group)] = {
            **params,
            "n_points": float(len(points)),
            "objective": float(objective[0]),
        }
    if progress is not None:
        progress(groups.ngroups, groups.ngroups)
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=[*base.param_names, "n_points", "objective"]
    )
    table.index.name = by
    table.attrs["skipped"] = skipped
    return table
