"""Loss-to-loss in batch: every pair of losses of a setting, fitted (matrix) or backtested.

The backtest follows Brandfonbrener et al. 2024: fit every law on the runs up to a FLOP budget,
then predict the larger runs. A transfer law predicts a large model's loss on ``y`` from its
observed loss on ``x``; the baseline extrapolates ``y``'s own compute law to the model's N and
D. Both are scored by ARE on the same held-out models.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from scalinglab.errors import InputError
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.transfer import (
    COMPUTE_LAWS,
    OWN_DATASET,
    ComputeLaw,
    Irreducible,
    LossRef,
    Setting,
    compute_fit,
    fit_transfer,
    flops_of,
    pair_losses,
)
from scalinglab.fitting import Fit

SETTINGS: tuple[str, ...] = ("train_to_train", "train_to_test", "test_to_test")


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
    irreducible: Irreducible = "kaplan_lse",
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
) -> pd.DataFrame:
    """Fit on runs up to ``max_train_flops``, predict the larger ones, score by ARE.

    For each pair ``(x, y)`` of the setting: compute laws (``law``) are fitted on each loss's
    small runs to give ``E_x`` and ``E_y``; ``K`` and ``κ`` are fitted on the small pairs; the
    large pairs' ``y`` losses are predicted from their observed ``x`` losses. The baseline is
    ``y``'s compute law extrapolated to the same models.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``setting``, ``x``, ``y``, ``kappa``, ``K``, ``n_train``,
        ``n_test``, ``are_transfer``, ``are_compute``.

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
        tf = fit_transfer(small, x, y, irreducible=law, compute_fits=cache)
        y_law = compute_fit(small, y, law=law, cache=cache)
        observed = test["loss_y"].to_numpy()
        rows.append(
            {
                "setting": str(setting),
                "x": str(x),
                "y": str(y),
                "kappa": tf.params["kappa"],
                "K": tf.params["K"],
                "n_train": len(tf.pairs),
                "n_test": len(test),
                "are_transfer": are(tf.predict(test["loss_x"].to_numpy()), observed),
                "are_compute": are(
                    y_law.predict(
                        {"params": test["params"].to_numpy(), "tokens": test["tokens"].to_numpy()}
                    ),
                    observed,
                ),
            }
        )
    return pd.DataFrame(rows)


def summarize_backtest(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ARE per setting, transfer law against compute law, with their ratio.

    Returns
    -------
    pandas.DataFrame
        ``setting``, ``n_pairs``, ``are_transfer``, ``are_compute``, ``ratio``
        (transfer / compute: below 1 means the transfer law predicts better), and
        ``wins`` (pairs where the transfer law's ARE is lower).
    """
    wins = results["are_transfer"] < results["are_compute"]
    out = (
        results.assign(win=wins)
        .groupby("setting", sort=False)
        .agg(
            n_pairs=("y", "size"),
            are_transfer=("are_transfer", "mean"),
            are_compute=("are_compute", "mean"),
            wins=("win", "sum"),
        )
        .reset_index()
    )
    out.insert(4, "ratio", out["are_transfer"] / out["are_compute"])
    return out
