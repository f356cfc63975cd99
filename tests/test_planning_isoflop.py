"""IsoFLOP analysis (Chinchilla approach 2) on a known law, real sweeps, and bad sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.data import load_observations
from scalinglab.errors import FitError, InputError
from scalinglab.examples import CHINCHILLA_TRUTH, isoflop_sweep
from scalinglab.planning import allocation_exponents, compute_optimal, isoflop_analysis

TRUE_A, TRUE_B = allocation_exponents(CHINCHILLA_TRUTH["alpha"], CHINCHILLA_TRUTH["beta"])


def compute_loss(params: float, tokens: float) -> float:
    t = CHINCHILLA_TRUTH
    return t["E"] + t["A"] / params ** t["alpha"] + t["B"] / tokens ** t["beta"]


def test_noise_free_sweep_recovers_the_true_allocation() -> None:
    result = isoflop_analysis(isoflop_sweep(noise=0.0))
    assert len(result.minima) == 7 and not result.warnings
    assert result.params.exponent == pytest.approx(TRUE_A, abs=0.005)
    assert result.tokens.exponent == pytest.approx(TRUE_B, abs=0.005)
    lo, hi = result.params.exponent_ci
    assert lo < TRUE_A < hi
    # each vertex is close to the law's own optimum at that budget
    truth = compute_optimal(CHINCHILLA_TRUTH, result.minima["flops"].to_numpy())
    np.testing.assert_allclose(result.minima["params_opt"], truth.params, rtol=0.05)
    np.testing.assert_allclose(result.minima["loss_opt"], truth.loss, rtol=0.01)
    params, tokens = result.predict(1e22)
    assert 6 * params * tokens == pytest.approx(1e22, rel=0.02)


def test_noisy_sweep_interval_covers_truth() -> None:
    result = isoflop_analysis(isoflop_sweep(noise=0.01, seed=3))
    lo, hi = result.params.exponent_ci
    assert lo < TRUE_A < hi and hi - lo < 0.2


def test_only_final_checkpoints_are_used() -> None:
    sweep = isoflop_sweep(noise=0.0)
    early = sweep.assign(
        tokens=sweep["tokens"] / 2, flops=sweep["flops"] / 2, loss=sweep["loss"] + 0.3
    )
    with_checkpoints = pd.concat([early, sweep], ignore_index=True)
    result = isoflop_analysis(with_checkpoints)
    reference = isoflop_analysis(sweep)
    assert len(result.minima) == 7
    assert result.params.exponent == pytest.approx(reference.params.exponent, rel=1e-12)


def test_loader_derived_run_ids_do_not_merge_budgets(tmp_path: Path) -> None:
    # same model sizes at every budget and no run_id column: each row is its own run
    sweep = isoflop_sweep(noise=0.0)
    sizes = np.round(np.geomspace(5e7, 5e9, 9))
    rows = [
        {
            "params": n,
            "tokens": c / (6 * n),
            "flops": c,
            "loss": float(compute_loss(n, c / (6 * n))),
        }
        for c in sweep["flops"].unique()[2:5]
        for n in sizes
    ]
    path = tmp_path / "sweep.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = load_observations(path)
    assert "run_id" in table.attrs["derived"]
    result = isoflop_analysis(table)
    assert list(result.minima["runs"]) == [9, 9, 9]


def test_budgets_are_bucketed_within_tolerance_or_matched_to_given_ones() -> None:
    sweep = isoflop_sweep(noise=0.0)
    jitter = np.random.default_rng(0).uniform(0.97, 1.03, len(sweep))
    jittered = sweep.assign(flops=sweep["flops"] * jitter)
    result = isoflop_analysis(jittered, rel_tol=0.1)
    assert len(result.minima) == 7
    np.testing.assert_allclose(result.minima["flops"], sorted(sweep["flops"].unique()), rtol=0.03)
    chosen = isoflop_analysis(jittered, budgets=[1e19, 1e20, 1e21])
    assert list(chosen.minima["flops"]) == [1e19, 1e20, 1e21]
    assert not chosen.warnings


def test_two_budgets_give_exponents_without_interval() -> None:
    result = isoflop_analysis(isoflop_sweep(noise=0.0), budgets=[1e18, 1e21])
    assert np.isnan(result.params.exponent_ci).all()
    assert any("only 2 budgets" in w for w in result.warnings)


def test_budget_with_minimum_outside_the_sampled_sizes_is_refused() -> None:
    sweep = isoflop_sweep(noise=0.0)
    top = sweep["flops"] == sweep["flops"].max()
    small = sweep[~top | (sweep["params"] < sweep.loc[top, "params"].median())]
    with pytest.raises(FitError, match=r"budget 1e\+21 FLOPs: the minimum .* above the largest"):
        isoflop_analysis(small)
    result = isoflop_analysis(small, drop_invalid=True)
    assert len(result.minima) == 6
    assert result.dropped[0]["flops"] == pytest.approx(1e21)
    assert "above the largest" in result.warnings[0]


def test_downward_parabola_and_too_few_sizes_are_refused() -> None:
    sweep = isoflop_sweep(noise=0.0)
    first = sweep["flops"] == sweep["flops"].min()
    flipped = sweep.copy()
    flipped.loc[first, "loss"] = 10.0 - flipped.loc[first, "loss"]
    with pytest.raises(FitError, match="opens downward"):
        isoflop_analysis(flipped)
    sparse = sweep[~first | sweep["params"].isin(sweep.loc[first, "params"].iloc[:2])]
    with pytest.raises(FitError, match="2 model size"):
        isoflop_analysis(sparse)
    one_budget = sweep[first]
    with pytest.raises(FitError, match="at least 2 budgets"):
        isoflop_analysis(one_budget)


def test_bad_tables_name_the_problem() -> None:
    sweep = isoflop_sweep(noise=0.0)
    with pytest.raises(InputError, match="column"):
        isoflop_analysis(sweep.drop(columns=["tokens"]))
    two = pd.concat([sweep, sweep.assign(dataset="val")], ignore_index=True)
    with pytest.raises(InputError, match="several datasets"):
        isoflop_analysis(two)
    assert len(isoflop_analysis(two, dataset="val").minima) == 7
    with pytest.raises(InputError, match="no rows for dataset 'test'"):
        isoflop_analysis(two, dataset="test")
    bad = sweep.assign(source_row=np.arange(1, len(sweep) + 1))
    bad.loc[4, "loss"] = -1.0
    with pytest.raises(InputError, match="row 5, column 'loss'"):
        isoflop_analysis(bad)
    with pytest.raises(InputError, match="rel_tol"):
        isoflop_analysis(sweep, rel_tol=0.0)


def test_loss_to_loss_sweeps_allocate_about_equally(shared_data: Path) -> None:
    sweep = pd.read_csv(shared_data / "loss_to_loss" / "sweep.csv")
    for corpus in ("fineweb-100b", "slimpajama-chunk1"):
        part = sweep[sweep["data"] == corpus]
        table = pd.DataFrame(
            {
                "run_id": part["id"],
                "params": part["params"],
                "tokens": part["tokens"],
                # the budget is iso_flop (= 6ND); the flops column is not (data README)
                "flops": part["iso_flop"],
                "loss": part["val_loss"],
            }
        )
        result = isoflop_analysis(table)
        assert len(result.minima) == 8
        lo, hi = result.params.exponent_ci
        assert 0.45 < result.params.exponent < 0.55 and lo < result.params.exponent < hi
        assert result.params.exponent + result.tokens.exponent == pytest.approx(1.0, abs=0.01)
