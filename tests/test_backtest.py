"""Backtests: scenarios, baselines, borrowed parameters, bad input, heatmap, recommendation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import InputError
from scalinglab.evaluation.backtest import (
    CHOICES,
    BacktestReport,
    FitChoice,
    backtest_all,
    backtest_family,
    collection_for,
)
from scalinglab.evaluation.families import convert_perplexity, load_families
from scalinglab.evaluation.metrics import are
from scalinglab.evaluation.recommend import _implausible, recommend
from scalinglab.report.backtest_plot import are_grid, plot_are_heatmap

LAW = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
SIZES = (1e9, 2e9, 4e9, 8e9, 1.6e10)
SIZES7 = tuple(1e9 * 2**i for i in range(7))


def make_family(
    name: str = "synth",
    sizes: tuple[float, ...] = SIZES,
    law: dict[str, float] | None = None,
    n_ckpt: int = 30,
    noise: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """One run per size trained to 20 tokens per parameter, checkpoints evenly spaced."""
    p = LAW if law is None else law
    rng = np.random.default_rng(seed)
    frames = []
    for n in sizes:
        tokens = np.linspace(1, n_ckpt, n_ckpt) * 20 * n / n_ckpt
        loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / tokens ** p["beta"]
        frames.append(
            pd.DataFrame(
                {
                    "run_id": f"{name}-{n:.0e}",
                    "family": name,
                    "params": n,
                    "tokens": tokens,
                    "loss": loss * np.exp(noise * rng.standard_normal(n_ckpt)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def family_collection(n: int = 6) -> pd.DataFrame:
    """Synthetic families with nearby laws: the collection to borrow from."""
    frames = []
    for i in range(n):
        law = dict(LAW, E=1.6 + 0.05 * i, alpha=0.32 + 0.01 * i, beta=0.27 + 0.005 * i)
        frames.append(make_family(f"f{i}", law=law, n_ckpt=12))
    return pd.concat(frames, ignore_index=True)


def test_exact_law_is_forecast_far_better_than_baselines() -> None:
    obs = make_family()
    results = backtest_family(
        obs, "synth", choices={"default": CHOICES["default"]}, fractions=(0.5, 1.0)
    )
    assert {r.k for r in results} == {2, 3, 4}
    assert all(r.target == "synth-2e+10" for r in results)
    for r in results:
        assert r.error is None
        assert r.beats_baselines
        assert r.n_test_points == 10  # checkpoints 21..30 of 30 are at >= 70%
        # two sizes cannot separate the size term from the floor; three can
        if r.k >= 3:
            assert r.are < 0.005
    full = next(r for r in results if r.k == 4 and r.fraction == 1.0 and r.target_fraction == 0)
    assert full.params["alpha"] == pytest.approx(LAW["alpha"], rel=0.05)


def test_baselines_follow_their_definition() -> None:
    obs = make_family()
    results = backtest_family(
        obs,
        "synth",
        ks=[2],
        fractions=[0.5],
        target_fractions=[0.0, 0.3],
        choices={"default": CHOICES["default"]},
    )
    target = obs[obs["run_id"] == "synth-2e+10"]
    total = target["tokens"].max()
    test = target[target["tokens"] >= 0.7 * total]["loss"].to_numpy()
    # without the target: the largest training model (2e9) seen up to half its run
    source = obs[(obs["params"] == 2e9) & (obs["tokens"] <= 0.5 * 20 * 2e9 * (1 + 1e-9))]
    no_target = next(r for r in results if r.target_fraction == 0)
    seen = source.sort_values("tokens")["loss"].to_numpy()
    assert no_target.baselines["last_loss"] == pytest.approx(are(np.full(10, seen[-1]), test))
    assert no_target.baselines["mean_last_5"] == pytest.approx(
        are(np.full(10, seen[-5:].mean()), test)
    )
    # with 30% of the target seen, the target itself is the source
    with_target = next(r for r in results if r.target_fraction == 0.3)
    seen_t = target[target["tokens"] <= 0.3 * total * (1 + 1e-9)]["loss"].to_numpy()
    assert with_target.baselines["last_loss"] == pytest.approx(are(np.full(10, seen_t[-1]), test))
    assert with_target.n_train_points > no_target.n_train_points


def test_borrowed_parameters_and_final_only() -> None:
    others = family_collection()
    collection = collection_for(others, min_tokens=0.0)
    assert len(collection) == 6
    assert collection["alpha"].to_numpy() == pytest.approx(0.32 + 0.01 * np.arange(6), rel=0.05)
    obs = make_family(sizes=SIZES7, noise=0.002)
    results = backtest_family(obs, "synth", ks=[4, 6], fractions=[1.0], collection=collection)
    by = {(r.choice, r.k, r.target_fraction): r for r in results}
    for choice in ("fixed_exponents", "relations", "pca"):
        r = by[(choice, 4, 0.0)]
        assert r.error is None, r.error
        assert r.are < 0.05
        assert set(r.params) == set(LAW)
    # final losses only: 4 training runs give 4 points, too few for 5 parameters; 6 do
    final = by[("final_only", 4, 0.0)]
    assert math.isnan(final.are)
    assert final.error is not None and "5 free parameters need more" in final.error
    assert by[("final_only", 6, 0.0)].error is None
    # without a collection, borrowing choices say why
    lone = backtest_family(obs, "synth", ks=[2], fractions=[1.0], choices={"pca": CHOICES["pca"]})
    assert all("collection" in str(r.error) for r in lone)


def test_report_tables_and_heatmap(tmp_path: Path) -> None:
    obs = pd.concat(
        [
            make_family("a", SIZES7, n_ckpt=12),
            make_family("b", SIZES7, n_ckpt=12, noise=0.003),
            make_family("c", SIZES[:1]),
        ]
    )
    obs.attrs["skipped_families"] = {"c": "1 model size(s)"}
    choices = {n: CHOICES[n] for n in ("default", "no_cutoff", "final_only")}
    report = backtest_all(
        obs[obs["family"] != "c"], ks=(2, 6), fractions=(0.5, 1.0), choices=choices
    )
    assert {r.family for r in report.results} == {"a", "b"}
    comps = report.comparisons()
    assert set(comps) == {"checkpoints", "cutoff"}
    cutoff = comps["cutoff"]
    assert list(cutoff.index) == ["a", "b", "all"]
    assert {"default", "no_cutoff", "are_last_loss", "are_mean_last_5"} <= set(cutoff.columns)
    assert (cutoff["default"] < cutoff["are_last_loss"]).all()
    best = report.best()
    assert best.index[0] in choices and best["median_are"].is_monotonic_increasing
    grid = are_grid(report)
    assert list(grid.index) == [2, 6] and list(grid.columns) == [0.5, 1.0]
    out = tmp_path / "heat.png"
    plot_are_heatmap(report, out)
    assert out.stat().st_size > 1000
    with pytest.raises(InputError, match="no backtest result"):
        are_grid(report, choice="pca")
    payload = report.to_dict()
    assert payload["comparisons"]["cutoff"][-1]["family"] == "all"


def test_parallel_workers_give_the_same_results() -> None:
    obs = pd.concat([make_family("a"), make_family("b", noise=0.003)])
    opts = {"fractions": (1.0,), "target_fractions": (0.0,), "choices": {"d": FitChoice()}}
    one = backtest_all(obs, **opts)  # type: ignore[arg-type]
    two = backtest_all(obs, workers=2, **opts)  # type: ignore[arg-type]
    assert [r.are for r in one.results] == [r.are for r in two.results]


def test_bad_input_is_named() -> None:
    obs = make_family()
    with pytest.raises(InputError, match="no run 'nope'"):
        backtest_family(obs, "synth", target="nope")
    with pytest.raises(InputError, match="k must be between 1 and 4"):
        backtest_family(obs, "synth", ks=[7])
    with pytest.raises(InputError, match="precedes its test checkpoints"):
        backtest_family(obs, "synth", target_fractions=[0.8])
    with pytest.raises(InputError, match=r"fractions of training must be in \(0, 1\]"):
        backtest_family(obs, "synth", fractions=[0.0])
    # the target trained on 3.2e11 tokens has nothing after a 1e12-token cutoff
    late = {"late": FitChoice(min_tokens=1e12)}
    with pytest.raises(InputError, match="no checkpoint at or after 1e\\+12 tokens"):
        backtest_family(obs, "synth", choices=late)
    with pytest.raises(InputError, match="1 model size"):
        backtest_family(obs[obs["params"] >= 8e9], "synth")


def test_loading_families_rejects_one_size_and_perplexity(tmp_path: Path) -> None:
    good = make_family("good")
    small = make_family("tiny", sizes=(1e9,))
    ppl = make_family("ppl").assign(loss=lambda d: np.exp(d["loss"] + 1.5))
    table = pd.concat([good, small, ppl])
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match="family 'tiny' has 1 model size"):
        load_families(path, family="tiny")
    with pytest.raises(InputError, match=r"look like perplexities.*--perplexity auto") as err:
        load_families(path, family="ppl")
    assert err.value.row is not None and err.value.column == "loss"
    everything = load_families(path)
    assert set(everything["family"]) == {"good"}
    assert set(everything.attrs["skipped_families"]) == {"tiny", "ppl"}
    converted = load_families(path, perplexity="auto")
    assert set(converted["family"]) == {"good", "ppl"}
    assert converted.attrs["perplexity_families"] == ["ppl"]
    ppl_rows = converted[converted["family"] == "ppl"]["loss"].to_numpy()
    np.testing.assert_allclose(ppl_rows, good["loss"].to_numpy() + 1.5)
    with pytest.raises(InputError, match="unknown family nope"):
        convert_perplexity(table, ["nope"])
    with pytest.raises(InputError, match="no family 'zzz'"):
        load_families(path, family="zzz")


def test_recommend_picks_a_choice_and_forecasts() -> None:
    obs = make_family(noise=0.002)
    rec = recommend(
        obs,
        reference=family_collection(),
        choices={n: CHOICES[n] for n in ("default", "fixed_exponents", "pca")},
        fractions=(1.0,),
        forecast_at={"params": [7e10], "tokens": [1.4e12]},
    )
    assert rec.best_choice in CHOICES
    assert rec.ranking["median_are"].iloc[0] < 0.02
    truth = LAW["E"] + LAW["A"] / 7e10 ** LAW["alpha"] + LAW["B"] / 1.4e12 ** LAW["beta"]
    assert rec.forecast["loss_nats"].iloc[0] == pytest.approx(truth, rel=0.02)
    assert set(rec.params) == set(LAW)
    assert rec.ranked_by == "in-family backtest"
    # the error to expect: realized errors of the chosen method in ColPret at this extrapolation
    assert rec.expected is not None and rec.expected.method == rec.best_choice
    assert rec.extrapolation_ratio == pytest.approx(7e10 * 1.4e12 / (1.6e10 * 3.2e11))
    assert rec.expected.median < rec.expected.q90
    assert "90% of cases below" in rec.expected.statement()
    # without reference data, the borrowing choices learn from the shipped ColPret fits
    lone = recommend(obs, choices={n: CHOICES[n] for n in ("default", "pca")}, fractions=(1.0,))
    assert "learn from 7 ColPret families" in lone.notes[0]
    assert set(lone.ranking.index) == {"default", "pca"}
    with pytest.raises(InputError, match="choose one"):
        recommend(pd.concat([obs, make_family("other")]))


def test_recommend_with_two_sizes_ranks_by_colpret_and_skips_implausible_forecasts() -> None:
    obs = make_family(sizes=SIZES[:2], noise=0.002)
    rec = recommend(
        obs,
        choices={n: CHOICES[n] for n in ("default", "guide", "pca")},
        forecast_at={"params": [1.6e10], "tokens": [3.2e11]},
    )
    # nothing to backtest inside two sizes: the ColPret backtests at this extrapolation rank
    assert rec.ranked_by == "ColPret backtests" and rec.backtest is None
    assert any("too few to backtest inside the family" in n for n in rec.notes)
    ranking = rec.ranking
    assert ranking["median_are"].isna().all()
    assert ranking["expected_median"].is_monotonic_increasing
    assert rec.expected is not None and rec.expected.method == rec.best_choice
    rows = obs[obs["params"] == SIZES[1]]
    floor = float(rows["loss"].min())
    point = pd.DataFrame({"params": [1e11], "tokens": [1e12], "loss_nats": [floor * 1.01]})
    assert "whose loss fell to" in str(_implausible(obs, point))
    assert _implausible(obs, point.assign(loss_nats=floor * 0.9)) is None
    assert "finite positive" in str(_implausible(obs, point.assign(loss_nats=np.inf)))
    # a smaller or shorter model may end above the largest run's lowest loss
    assert _implausible(obs, point.assign(params=1e9, loss_nats=floor * 1.01)) is None


def test_colpret_gpt2_c4_one_epoch_beats_the_baselines(shared_data: Path) -> None:
    """Acceptance: on GPT-2 C4 1-epoch, the best fitting choice beats the no-fit baselines."""
    path = shared_data / "colpret" / "colpret_checkpoints.csv.gz"
    family = "GPT2-c4-1.0"
    obs = load_families(path, family=family, columns={"model_name": "run_id"})
    others = load_families(path, columns={"model_name": "run_id"}, min_sizes=3)
    siblings = others[others["family"].str.startswith("GPT2-c4-") & (others["family"] != family)]
    report = BacktestReport(
        backtest_family(
            obs,
            family,
            fractions=(0.3, 0.5, 0.7, 1.0),
            target_fractions=(0.0,),
            collection=collection_for(siblings),
        )
    )
    best = report.best()
    top = best.iloc[0]
    assert top["median_are"] < top["median_are_last_loss"]
    assert top["median_are"] < top["median_are_mean_last_5"]
    assert top["median_are"] < 0.05
    table = report.table()
    mine = table[table["choice"] == best.index[0]]
    assert (mine["are"] < mine[["are_last_loss", "are_mean_last_5"]].min(axis=1)).mean() >= 0.75
