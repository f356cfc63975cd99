"""ARE, checkpoint selection, per-run weights and checkpoint-aware fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.checkpoints import (
    fit_checkpoints,
    group_weights,
    run_lengths,
    run_weights,
    select_checkpoints,
)
from scalinglab.evaluation.metrics import are

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def chinchilla_loss(params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return TRUE["E"] + TRUE["A"] / params ** TRUE["alpha"] + TRUE["B"] / tokens ** TRUE["beta"]


def curves(sizes: list[float], n_ckpt: int = 20) -> pd.DataFrame:
    """One run per size, trained to 20 tokens per parameter, checkpoints evenly spaced."""
    frames = []
    for n in sizes:
        tokens = np.linspace(1, n_ckpt, n_ckpt) * 20 * n / n_ckpt
        frames.append(
            pd.DataFrame(
                {
                    "run_id": f"m{n:.0e}",
                    "params": n,
                    "tokens": tokens,
                    "loss": chinchilla_loss(np.full(n_ckpt, n), tokens),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_are_is_mean_absolute_relative_error() -> None:
    assert are([1.1, 1.8], [1.0, 2.0]) == pytest.approx((0.1 + 0.1) / 2)
    assert are(np.array([3.0]), np.array([3.0])) == 0.0


@pytest.mark.parametrize(
    ("pred", "obs", "message"),
    [([1.0], [1.0, 2.0], "as many"), ([], [], "empty"), ([1.0], [0.0], "positive")],
)
def test_are_rejects_bad_input(pred: list[float], obs: list[float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        are(pred, obs)


def test_selection_by_cutoff_fraction_and_final() -> None:
    df = curves([1e8, 4e8], n_ckpt=10)
    lengths = run_lengths(df)
    assert lengths["m1e+08"] == pytest.approx(2e9)
    half = select_checkpoints(df, max_fraction=0.5)
    assert len(half) == 10 and (half.groupby("run_id")["tokens"].max() <= lengths / 2).all()
    late = select_checkpoints(df, min_fraction=0.7)
    assert len(late) == 8  # 0.7, 0.8, 0.9 and 1.0 of each run
    cut = select_checkpoints(df, min_tokens=1.5e9)
    assert cut["tokens"].min() >= 1.5e9 and set(cut["run_id"]) == {"m1e+08", "m4e+08"}
    final = select_checkpoints(df, max_fraction=0.55, final_only=True)
    assert len(final) == 2
    np.testing.assert_allclose(final["tokens"].to_numpy(), lengths.to_numpy() * 0.5)
    # fractions relative to the full runs even when a subset is selected
    subset = df[df["tokens"] < 3e9]
    kept = select_checkpoints(subset, max_fraction=0.5, run_tokens=lengths)
    assert kept["tokens"].max() <= 0.5 * lengths.max()


def test_thinning_keeps_last_and_spreads() -> None:
    df = curves([1e8], n_ckpt=200)
    thin = select_checkpoints(df, max_per_run=10)
    assert len(thin) == 10
    assert thin["tokens"].max() == df["tokens"].max()
    assert thin["tokens"].min() == df["tokens"].min()
    gaps = np.diff(np.sort(thin["tokens"].to_numpy()))
    assert gaps.max() / gaps.min() < 1.5


def test_selection_rejects_bad_options() -> None:
    df = curves([1e8], n_ckpt=5)
    with pytest.raises(InputError, match="0 <= min < max <= 1"):
        select_checkpoints(df, max_fraction=1.5)
    with pytest.raises(InputError, match="cutoff"):
        select_checkpoints(df, min_tokens=-1)
    with pytest.raises(InputError, match="needs column"):
        select_checkpoints(df.drop(columns="loss"))


def test_run_weights_balance_runs() -> None:
    df = pd.DataFrame({"run_id": ["a"] * 9 + ["b"] * 1})
    w = run_weights(df, "run")
    assert w[:9].sum() == pytest.approx(w[9:].sum())
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(run_weights(df, "none"), 1.0)
    sq = run_weights(df, "sqrt")
    assert sq[:9].sum() / sq[9] == pytest.approx(3.0)
    with pytest.raises(InputError, match="unknown weighting"):
        group_weights(np.array([0, 1]), "nope")  # type: ignore[arg-type]


def test_fit_on_checkpoints_recovers_the_law() -> None:
    df = curves([1e8, 2e8, 4e8, 8e8])
    result = fit_checkpoints(
        df,
        "chinchilla",
        min_tokens=1e9,
        max_per_run=12,
        grid={"E": [1.0, 2.0], "A": [100.0, 1000.0], "B": [100.0, 1000.0]},
    )
    for name in ("E", "alpha", "beta"):
        assert result.params[name] == pytest.approx(TRUE[name], rel=0.05)
    assert result.options["checkpoints"]["min_tokens"] == 1e9
    assert result.n_groups == 4


def test_fit_with_no_checkpoint_left_is_an_error() -> None:
    with pytest.raises(FitError, match="no checkpoint left"):
        fit_checkpoints(curves([1e8]), min_tokens=1e12)
