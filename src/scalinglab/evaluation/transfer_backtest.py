"""Loss-to-loss in batch: every pair of losses of a setting, fitted (matrix) or backtested.

The backtest follows Brandfonbrener et al. 2024: fit every law on the runs up to a FLOP budget,
then predict the larger runs. A transfer law predicts a large model's loss on ``y`` from its
observed loss on ``x``; two peers are scored by ARE on the same held-out models: the paper's
notebooks' method (:func:`fit_notebook`: E_x, E_y from per-loss compute fits, κ and K by least
squares in log-log) and ``y``'s own compute law extrapolated to the model's N and D.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence

import numpy as np
import pandas as pd

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.transfer import (
    COMPUTE_LAWS,
    DEFAULT_IRREDUCIBLE,
    OWN_DATASET,
    ComputeLaw,
    Irreducible,
    LossRef,
    Setting,
    check_domain,
    compute_fit,
    fit_transfer,
    flops_of,
    pair_losses,
    select_losses,
)
from scalinglab.evaluation.transfer_bootstrap import ConfigResamples
from scalinglab.fitting import Fit, fit_law
from scalinglab.laws.base import get_law
from scalinglab.laws.transfer import ShiftedPowerLaw

SETTINGS: tuple[str, ...] = ("train_to_train", "train_to_test", "test_to_test")
#: the notebooks' start grid for a compute fit (curve_fitting.py): log A and log B in
#: {5, 10, 15, 20}, log E = 0.5, α = β = 0.4; every start run to convergence, best wins
NOTEBOOK_GRID: dict[str, list[float]] = {
    "A": [math.exp(v) for v in (5.0, 10.0, 15.0, 20.0)],
    "B": [math.exp(v) for v in (5.0, 10.0, 15.0, 20.0)],
    "E": [math.exp(0.5)],
    "alpha": [0.4],
    "beta": [0.4],
}


def notebook_compute_fit(
    observations: pd.DataFrame, ref: LossRef, cache: MutableMapping[LossRef, Fit] | None = None
) -> Fit:
    """A loss's compute law as the notebooks fit it: ``E + ((A/N)^(α/β) + B/D)^β``.

    Huber (δ = 1e-3) on log residuals from :data:`NOTEBOOK_GRID`, every start to convergence
    (the notebooks average the Huber loss instead of summing it: the same minimum).
    """
    if cache is not None and ref in cache:
        return cache[ref]
    law = get_law("kaplan_lse")
    rows = select_losses(observations, ref)
    result = fit_law(
        law,
        law.features(rows),
        rows["loss"].to_numpy(dtype=float),
        groups=rows["run_id"].to_numpy(),
        grid=NOTEBOOK_GRID,
        search="full",
    )
    if cache is not None:
        cache[ref] = result
    return result


def fit_notebook(
    observations: pd.DataFrame,
    x: LossRef,
    y: LossRef,
    *,
    cache: MutableMapping[LossRef, Fit] | None = None,
) -> Fit:
    """The loss-to-loss notebooks' method (Brandfonbrener et al. 2024), as a peer.

    ``E_x`` and ``E_y`` are the floors of :func:`notebook_compute_fit` on each loss; ``κ`` and
    ``log K`` are the least-squares line of ``log(L_y − E_y)`` on ``log(L_x − E_x)`` over the
    pairs (their ``fit_power_law`` with both floors given).

    Returns
    -------
    Fit
        A :class:`~scalinglab.laws.transfer.ShiftedPowerLaw` fit (``objective``: the mean
        squared error in nats², the notebooks' selection criterion).

    Raises
    ------
    InputError
        If a pair's ``L_x`` or ``L_y`` is not above its floor.
    """
    pairs = pair_losses(observations, x, y)
    e_x = float(notebook_compute_fit(observations, x, cache).params["E"])
    e_y = float(notebook_compute_fit(observations, y, cache).params["E"])
    loss_x = pairs["loss_x"].to_numpy(dtype=float)
    loss_y = pairs["loss_y"].to_numpy(dtype=float)
    check_domain(loss_x, e_x, what=f"loss on '{x}'", run_ids=pairs["run_id_x"].to_numpy())
    check_domain(loss_y, e_y, what=f"loss on '{y}'", run_ids=pairs["run_id_y"].to_numpy())
    design = np.column_stack([np.log(loss_x - e_x), np.ones(loss_x.size)])
    (kappa, log_k), *_ = np.linalg.lstsq(design, np.log(loss_y - e_y), rcond=None)
    law = ShiftedPowerLaw()
    params = {"K": math.exp(log_k), "kappa": float(kappa), "E_x": e_x, "E_y": e_y}
    predicted = law.predict(law.theta_vector(params), {"loss_x": loss_x})
    if not np.all(np.isfinite(predicted)):
        raise FitError(f"the notebooks' fit from '{x}' to '{y}' gives non-finite predictions")
    return Fit(
        law=law,
        params=params,
        objective=float(np.mean((predicted - loss_y) ** 2)),
        converged=True,
        n_points=int(loss_x.size),
        n_groups=int(loss_x.size),
        n_starts=1,
        options={"method": "notebook: log-log least squares, E from compute fits"},
    )


def _families(observations: pd.DataFrame, families: Sequence[str] | None) -> list[str]:
    if "family" not in observations.columns:
        raise InputError("pairs across training corpora need a 'family' column")
    known = sorted(map(str, observations["family"].dropna().unique()))
    if families is None:
        return known
    unknown = [f for f in families if f not in known]
    if unknown:
        raise InputError(
            f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"known families: {', '.join(known)}",
            column="family",
            value=unknown[0],
        )
    return list(families)


def _test_datasets(
    observations: pd.DataFrame, test_datasets: Sequence[str] | None, train_dataset: str
) -> list[str]:
    known = sorted(map(str, observations["dataset"].dropna().unique()))
    if test_datasets is None:
        return [d for d in known if d != train_dataset]
    unknown = [d for d in test_datasets if d not in known]
    if unknown:
        raise InputError(
            f"unknown dataset(s) {', '.join(unknown)}; known datasets: {', '.join(known)}",
            column="dataset",
            value=unknown[0],
        )
    return list(test_datasets)


def loss_pairs(
    observations: pd.DataFrame,
    setting: Setting | str,
    *,
    families: Sequence[str] | None = None,
    test_datasets: Sequence[str] | None = None,
    train_dataset: str = OWN_DATASET,
) -> list[tuple[LossRef, LossRef]]:
    """Every ordered ``(x, y)`` pair of losses of one setting.

    Parameters
    ----------
    observations
        Long Observations table with ``family`` and ``dataset``.
    setting
        ``train_to_train`` (own-corpus losses of every two families), ``train_to_test``
        (each family's own-corpus loss to each test dataset) or ``test_to_test`` (each test
        dataset, every two families).
    families
        Families to use (default: all).
    test_datasets
        Test datasets (default: every dataset except ``train_dataset``).
    train_dataset
        Dataset name of a run's loss on its own corpus.
    """
    if setting not in SETTINGS:
        raise InputError(f"setting must be one of {', '.join(SETTINGS)}", value=setting)
    fams = _families(observations, families)
    tests = (
        []
        if setting == "train_to_train"
        else _test_datasets(observations, test_datasets, train_dataset)
    )
    if setting == "train_to_train":
        pairs = [
            (LossRef(a, train_dataset), LossRef(b, train_dataset))
            for a in fams
            for b in fams
            if a != b
        ]
    elif setting == "train_to_test":
        pairs = [(LossRef(f, train_dataset), LossRef(f, t)) for f in fams for t in tests]
    else:
        pairs = [
            (LossRef(a, t), LossRef(b, t)) for t in tests for a in fams for b in fams if a != b
        ]
    if not pairs:
        need = {
            "train_to_train": "two families",
            "train_to_test": f"a test dataset besides '{train_dataset}'",
            "test_to_test": f"two families and a test dataset besides '{train_dataset}'",
        }[str(setting)]
        have = f"families {', '.join(map(repr, fams)) or 'none'}"
        if setting != "train_to_train":
            have += f" and test datasets {', '.join(map(repr, tests)) or 'none'}"
        raise InputError(
            f"setting '{setting}' has no pair of losses: it needs {need}; the data have {have}"
        )
    return pairs


def transfer_matrix(
    observations: pd.DataFrame,
    setting: Setting | str = "train_to_train",
    *,
    families: Sequence[str] | None = None,
    test_datasets: Sequence[str] | None = None,
    train_dataset: str = OWN_DATASET,
    irreducible: Irreducible = DEFAULT_IRREDUCIBLE,
) -> pd.DataFrame:
    """Fit the loss-to-loss law for every pair of a setting.

    Each loss's compute fit is made once and shared by all pairs it takes part in.

    Returns
    -------
    pandas.DataFrame
        One row per ordered pair: ``x``, ``y``, ``K``, ``kappa``, ``E_x``, ``E_y``,
        ``n_pairs``, ``are`` (in-sample), ``converged``. Pivot ``kappa`` on ``x``/``y`` for the
        matrix.
    """
    cache: dict[LossRef, Fit] = {}
    rows = []
    for x, y in loss_pairs(
        observations,
        setting,
        families=families,
        test_datasets=test_datasets,
        train_dataset=train_dataset,
    ):
        tf = fit_transfer(observations, x, y, irreducible=irreducible, compute_fits=cache)
        rows.append(
            {
                "x": str(x),
                "y": str(y),
                **tf.params,
                "n_pairs": len(tf.pairs),
                "are": tf.in_sample_are(),
                "converged": tf.fit.converged,
            }
        )
    return pd.DataFrame(rows)


def backtest_transfer(
    observations: pd.DataFrame,
    setting: Setting | str = "train_to_train",
    *,
    max_train_flops: float = 1e19,
    families: Sequence[str] | None = None,
    test_datasets: Sequence[str] | None = None,
    train_dataset: str = OWN_DATASET,
    law: ComputeLaw = "kaplan_lse",
    irreducible: Irreducible = DEFAULT_IRREDUCIBLE,
    bootstrap: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit on runs up to ``max_train_flops``, predict the larger ones, score by ARE.

    For each pair ``(x, y)`` of the setting, every law sees only the small runs: the transfer
    law (:func:`~scalinglab.evaluation.transfer.fit_transfer` with ``irreducible``, its
    floors from ``law``) predicts the large pairs' ``y`` losses from their observed ``x``
    losses; so does the notebooks' method (:func:`fit_notebook`); ``y``'s compute law
    (``law``) is extrapolated to the same models.

    Parameters
    ----------
    observations
        Long Observations table with ``family`` and ``dataset``.
    setting, families, test_datasets, train_dataset
        Which pairs (see :func:`loss_pairs`).
    max_train_flops
        Fit on runs up to this compute (6·N·D, or the ``flops`` column).
    law
        Compute law of the floors and of the baseline.
    irreducible
        How the transfer law's floors are set.
    bootstrap, level, seed
        With ``bootstrap`` replicates (configurations resampled, compute fits refitted in
        each), also score the transfer law's ``level`` prediction intervals.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``setting``, ``x``, ``y``, ``kappa``, ``K``, ``E_x``, ``E_y``,
        ``n_train``, ``n_test``, ``are_transfer``, ``are_notebook``, ``are_compute``
        (``are_notebook`` is NaN, with the reason in ``notebook_error``, where that method
        cannot predict); with ``bootstrap``, ``coverage`` (share of the large runs inside
        their interval) and ``width`` (mean interval width over the observed loss).

    Raises
    ------
    InputError
        If a pair has no runs above ``max_train_flops``, or a larger model's loss on ``x`` is
        not above the ``E_x`` fitted on the small runs (the law cannot predict it).
    """
    if law not in COMPUTE_LAWS:
        raise InputError(f"law must be one of {', '.join(COMPUTE_LAWS)}", value=law)
    small = observations[flops_of(observations) <= max_train_flops]
    cache: dict[LossRef, Fit] = {}
    notebook_cache: dict[LossRef, Fit] = {}
    draws = ConfigResamples.draw(small, bootstrap, seed) if bootstrap else None
    rows = []
    for x, y in loss_pairs(
        observations,
        setting,
        families=families,
        test_datasets=test_datasets,
        train_dataset=train_dataset,
    ):
        pairs = pair_losses(observations, x, y)
        test = pairs[pairs["flops"] > max_train_flops]
        if test.empty:
            raise InputError(
                f"pair '{x}' → '{y}': no runs above max_train_flops = {max_train_flops:.3g} "
                "to test on"
            )
        tf = fit_transfer(
            small,
            x,
            y,
            irreducible=irreducible,
            compute_law=law,
            compute_fits=cache,
            resamples=draws,
        )
        y_law = compute_fit(small, y, law=law, cache=cache)
        loss_x = test["loss_x"].to_numpy()
        observed = test["loss_y"].to_numpy()
        row: dict[str, object] = {
            "setting": str(setting),
            "x": str(x),
            "y": str(y),
            **{k: tf.params[k] for k in ("kappa", "K", "E_x", "E_y")},
            "n_train": len(tf.pairs),
            "n_test": len(test),
            "are_transfer": are(tf.predict(loss_x), observed),
            "are_notebook": math.nan,
            "notebook_error": None,
            "are_compute": are(
                y_law.predict(
                    {"params": test["params"].to_numpy(), "tokens": test["tokens"].to_numpy()}
                ),
                observed,
            ),
        }
        try:
            notebook = fit_notebook(small, x, y, cache=notebook_cache)
            check_domain(loss_x, notebook.params["E_x"], what=f"loss on '{x}'")
            row["are_notebook"] = are(notebook.predict({"loss_x": loss_x}), observed)
        except (InputError, FitError) as err:
            row["notebook_error"] = str(err)
        if draws is not None:
            lo, hi = tf.predict_interval(loss_x, level, kind="prediction")
            row["coverage"] = float(np.mean((observed >= lo) & (observed <= hi)))
            row["width"] = float(np.mean((hi - lo) / observed))
        rows.append(row)
    return pd.DataFrame(rows)


def summarize_backtest(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and worst ARE per setting: the transfer law against its two peers.

    Returns
    -------
    pandas.DataFrame
        ``setting``, ``n_pairs``, ``are_transfer``, ``are_notebook`` and ``are_compute``
        (means over pairs), ``ratio`` (transfer / compute: below 1 means the transfer law
        predicts better), ``max_are_transfer`` and ``max_are_notebook`` (the worst pair),
        ``wins`` (pairs where the transfer law's ARE is below the compute law's),
        ``notebook_failed`` (pairs the notebooks' method could not predict), and, when the
        results have them, ``coverage`` (share of all held-out runs inside their
        prediction interval) and ``width`` (mean relative width).
    """
    frame = results.assign(
        win=results["are_transfer"] < results["are_compute"],
        notebook_failed=results["are_notebook"].isna(),
    )
    aggregations: dict[str, tuple[str, str]] = {
        "n_pairs": ("y", "size"),
        "are_transfer": ("are_transfer", "mean"),
        "are_notebook": ("are_notebook", "mean"),
        "are_compute": ("are_compute", "mean"),
        "max_are_transfer": ("are_transfer", "max"),
        "max_are_notebook": ("are_notebook", "max"),
        "wins": ("win", "sum"),
        "notebook_failed": ("notebook_failed", "sum"),
    }
    if "coverage" in frame.columns:
        frame = frame.assign(
            covered=frame["coverage"] * frame["n_test"], width_sum=frame["width"] * frame["n_test"]
        )
        aggregations |= {
            "covered": ("covered", "sum"),
            "width_sum": ("width_sum", "sum"),
            "n_test": ("n_test", "sum"),
        }
    out = frame.groupby("setting", sort=False).agg(**aggregations).reset_index()
    out.insert(5, "ratio", out["are_transfer"] / out["are_compute"])
    if "covered" in out.columns:
        out["coverage"] = out.pop("covered") / out["n_test"]
        out["width"] = out.pop("width_sum") / out.pop("n_test")
    return out
