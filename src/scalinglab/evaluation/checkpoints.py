"""Checkpoint-aware fitting: every intermediate checkpoint is an ``(N, D, loss)`` point.

Choshen, Zhang & Andreas 2024 found that fitting on the whole loss curve of each run beats
fitting on final losses only, once the earliest checkpoints (the first 1e10 tokens, which are
mostly noise) are dropped. This module selects checkpoints (early-token cutoff, a fraction of
each run, final only), weights them per run so that a long, densely logged curve does not drown
a short one, and hands them to the fitting engine.

Fractions are of each run's own length: the largest ``tokens`` the table holds for that run.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from scalinglab.data.runs import final_rows
from scalinglab.errors import FitError, InputError
from scalinglab.fitting import Fit, fit_law
from scalinglab.laws.base import FloatArray, Law, get_law

#: how points are weighted in the objective: ``"none"`` (every checkpoint counts 1), ``"run"``
#: (every run counts 1 in total), ``"sqrt"`` (a run of n checkpoints counts √n)
Weighting = Literal["none", "run", "sqrt"]
WEIGHTINGS: tuple[str, ...] = ("none", "run", "sqrt")

#: the early-token cutoff Choshen et al. recommend, tokens
GUIDE_MIN_TOKENS = 1e10

_NEEDED = ("run_id", "tokens", "loss")


def _require(observations: pd.DataFrame, columns: Collection[str]) -> None:
    missing = [c for c in columns if c not in observations.columns]
    if missing:
        raise InputError(
            f"checkpoint selection needs column(s) {', '.join(missing)}; "
            f"the table has {', '.join(map(str, observations.columns))}"
        )


def run_lengths(observations: pd.DataFrame) -> pd.Series:
    """Length of each run in tokens: the largest ``tokens`` the table holds for it.

    Parameters
    ----------
    observations
        Observations table (needs ``run_id`` and ``tokens``).

    Returns
    -------
    pandas.Series
        Tokens indexed by ``run_id``.
    """
    _require(observations, ("run_id", "tokens"))
    return observations.groupby("run_id", sort=False)["tokens"].max()


def select_checkpoints(
    observations: pd.DataFrame,
    *,
    min_tokens: float = 0.0,
    min_fraction: float = 0.0,
    max_fraction: float = 1.0,
    final_only: bool = False,
    max_per_run: int | None = None,
    run_tokens: pd.Series | None = None,
) -> pd.DataFrame:
    """Keep the checkpoints a fit (or a test) should see.

    Parameters
    ----------
    observations
        Observations table (needs ``run_id``, ``tokens`` and ``loss``).
    min_tokens
        Early-token cutoff: checkpoints before this many tokens are dropped.
    min_fraction, max_fraction
        Keep checkpoints with ``min_fraction·T ≤ tokens ≤ max_fraction·T``, ``T`` the run's
        length (see ``run_tokens``).
    final_only
        Keep only the last selected checkpoint of each run (the classic final-loss fit).
    max_per_run
        Thin each run to at most this many checkpoints, spread evenly in tokens and always
        keeping the last (a densely logged curve carries little more than a thinned one and
        costs more to fit). ``None`` keeps every checkpoint.
    run_tokens
        Run lengths in tokens indexed by ``run_id``; by default :func:`run_lengths` of
        ``observations``. Pass the full table's lengths when ``observations`` is a subset.

    Returns
    -------
    pandas.DataFrame
        The selected rows, in their original order.

    Raises
    ------
    InputError
        If a required column is missing or the fractions are not ``0 ≤ min < max ≤ 1``.
    """
    _require(observations, _NEEDED)
    if not (0.0 <= min_fraction < max_fraction <= 1.0):
        raise InputError(
            f"fractions of training must satisfy 0 <= min < max <= 1, "
            f"got min {min_fraction} and max {max_fraction}"
        )
    if not (math.isfinite(min_tokens) and min_tokens >= 0):
        raise InputError("the early-token cutoff must be a finite number >= 0", value=min_tokens)
    lengths = run_lengths(observations) if run_tokens is None else run_tokens
    total = observations["run_id"].map(lengths).to_numpy(dtype=float)
    tokens = observations["tokens"].to_numpy(dtype=float)
    # a relative tolerance so that fraction 1.0 keeps the final checkpoint exactly
    keep = (
        (tokens >= min_tokens)
        & (tokens >= min_fraction * total * (1 - 1e-12))
        & (tokens <= max_fraction * total * (1 + 1e-12))
    )
    selected = observations.loc[keep]
    if final_only:
        selected = final_rows(selected)
    elif max_per_run is not None:
        if max_per_run < 1:
            raise InputError("max_per_run must be at least 1", value=max_per_run)
        selected = selected.loc[_thin(selected, max_per_run)]
    return selected


def _thin(observations: pd.DataFrame, max_per_run: int) -> NDArray[np.bool_]:
    """Mask keeping, per run, the checkpoints nearest to evenly spaced token counts."""
    keep = np.zeros(len(observations), dtype=bool)
    tokens = observations["tokens"].to_numpy(dtype=float)
    for indices in observations.groupby("run_id", sort=False).indices.values():
        rows = np.asarray(indices, dtype=np.intp)
        if rows.size <= max_per_run:
            keep[rows] = True
            continue
        order = rows[np.argsort(tokens[rows], kind="stable")]
        t = tokens[order]
        marks = np.linspace(t[0], t[-1], max_per_run)
        pos = np.clip(np.searchsorted(t, marks), 1, t.size - 1)
        nearer_left = (marks - t[pos - 1]) <= (t[pos] - marks)
        keep[order[np.where(nearer_left, pos - 1, pos)]] = True
    return keep


def run_weights(observations: pd.DataFrame, weighting: Weighting = "run") -> FloatArray:
    """Per-point weights for the objective, normalised to mean 1.

    Parameters
    ----------
    observations
        The points to be fitted (needs ``run_id``).
    weighting
        ``"none"``: every checkpoint counts the same; ``"run"``: each run's checkpoints share
        a total weight of 1, so a curve logged every 100 steps does not outweigh one logged
        every 10,000; ``"sqrt"``: a run of ``n`` checkpoints weighs ``√n`` in total.

    Returns
    -------
    numpy.ndarray
        Weights of shape ``(len(observations),)``.
    """
    _require(observations, ("run_id",))
    codes = pd.factorize(observations["run_id"])[0]
    return group_weights(np.asarray(codes, dtype=np.intp), weighting)


def group_weights(groups: NDArray[np.intp], weighting: Weighting = "run") -> FloatArray:
    """:func:`run_weights` for integer run codes (``0..m-1``) per point."""
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting '{weighting}'; use one of {', '.join(WEIGHTINGS)}")
    if groups.size == 0:
        return np.zeros(0)
    n = np.bincount(groups)[groups].astype(float)
    w = {"none": np.ones_like(n), "run": 1.0 / n, "sqrt": 1.0 / np.sqrt(n)}[weighting]
    return w / w.mean()


def fit_checkpoints(
    observations: pd.DataFrame,
    law: str | Law = "chinchilla",
    *,
    min_tokens: float = 0.0,
    max_fraction: float = 1.0,
    final_only: bool = False,
    max_per_run: int | None = None,
    weighting: Weighting = "run",
    fixed: Mapping[str, float] | None = None,
    min_fraction: float = 0.0,
    **options: Any,
) -> Fit:
    """Fit a law to the checkpoints of several runs.

    Parameters
    ----------
    observations
        Observations table (``run_id``, ``tokens``, ``loss`` and the law's inputs).
    law
        A law or its registered name.
    min_tokens
        Early-token cutoff in tokens (Choshen et al. use :data:`GUIDE_MIN_TOKENS`).
    max_fraction
        Fit on the first fraction of each run only (1 uses the whole run).
    min_fraction
        Leave out each run's checkpoints before this fraction of its length.
    final_only
        Fit on each run's last selected checkpoint only.
    max_per_run
        Thin each run to at most this many checkpoints (see :func:`select_checkpoints`).
    weighting
        Per-point weights, see :func:`run_weights`.
    fixed
        Borrowed parameters held at these values (e.g. exponents from other families).
    **options
        Passed to :func:`scalinglab.fitting.fit_law` (``loss``, ``delta``, ``grid``,
        ``bootstrap``, ``tie``, ``bounds``...).

    Returns
    -------
    Fit
        The engine's fit; its ``options`` also record the checkpoint selection.

    Raises
    ------
    FitError
        If no checkpoint survives the selection.
    """
    law_obj = get_law(law) if isinstance(law, str) else law
    points = select_checkpoints(
        observations,
        min_tokens=min_tokens,
        min_fraction=min_fraction,
        max_fraction=max_fraction,
        final_only=final_only,
        max_per_run=max_per_run,
    )
    if points.empty:
        raise FitError(
            f"no checkpoint left to fit: {len(observations)} rows, none at or after "
            f"{min_tokens:g} tokens between {min_fraction:g} and {max_fraction:g} of its run"
        )
    result = fit_law(
        law_obj,
        law_obj.features(points),
        points["loss"].to_numpy(dtype=float),
        groups=points["run_id"].to_numpy(),
        weights=run_weights(points, weighting),
        fixed=fixed,
        **options,
    )
    result.options["checkpoints"] = {
        "min_tokens": min_tokens,
        "min_fraction": min_fraction,
        "max_fraction": max_fraction,
        "final_only": final_only,
        "max_per_run": max_per_run,
        "weighting": weighting,
    }
    return result
