"""Loss-to-loss prediction: the shifted power law, pairing, fitting, translation, plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from scalinglab.cli.main import app
from scalinglab.data import load_observations
from scalinglab.errors import InputError

# imported as a module: pytest would collect a bare `test_to_test` as a test
from scalinglab.evaluation import transfer as l2l
from scalinglab.evaluation.transfer import (
    LossRef,
    TransferFit,
    fit_pairs,
    fit_transfer,
    pair_losses,
    select_losses,
    setting_of,
    train_to_test,
    train_to_train,
    translate_law,
)
from scalinglab.evaluation.transfer_bootstrap import ConfigResamples, compute_replicates
from scalinglab.laws import get_law
from scalinglab.laws.transfer import ShiftedPowerLaw
from scalinglab.report.transfer_plot import plot_transfer

# -- the law ---------------------------------------------------------------------------------


def test_law_value_and_gradient_match_finite_differences() -> None:
    law = ShiftedPowerLaw()
    rng = np.random.default_rng(0)
    theta = np.column_stack(
        [
            rng.uniform(0.5, 2.0, 4),  # K
            rng.uniform(0.6, 1.6, 4),  # kappa
            rng.uniform(1.0, 1.8, 4),  # E_x
            rng.uniform(0.5, 2.0, 4),  # E_y
        ]
    )
    x = {"loss_x": rng.uniform(2.0, 4.0, 7)}
    log_f, grad = law.log_predict(theta, x, grad=True)
    k, kappa, e_x, e_y = (theta[:, i : i + 1] for i in range(4))
    expected = np.log(k * (x["loss_x"][None, :] - e_x) ** kappa + e_y)
    np.testing.assert_allclose(log_f, expected, rtol=1e-12)
    step = 1e-6
    for j in range(4):
        shifted = theta.copy()
        shifted[:, j] += step
        numeric = (law.log_predict(shifted, x) - log_f) / step
        np.testing.assert_allclose(grad[..., j], numeric, rtol=1e-4, atol=1e-7)


def test_law_is_nan_outside_its_domain_and_registered() -> None:
    law = get_law("shifted_power")
    theta = np.array([[1.0, 1.0, 2.5, 1.0]])
    out = law.log_predict(theta, {"loss_x": np.array([2.0, 2.5, 3.0])})
    assert np.isnan(out[0, 0]) and np.isnan(out[0, 1])
    assert out[0, 2] == pytest.approx(np.log(0.5 + 1.0))
    assert law.param_names == ("K", "kappa", "E_x", "E_y")


# -- synthetic observations -------------------------------------------------------------------

SIZES = (1e7, 3e7, 1e8, 3e8)
TOKENS = (1e9, 3e9, 1e10)


def _loss(n: float, d: float, e: float, a: float) -> float:
    return e + a * (1e8 / n) ** 0.3 + a * (1e10 / d) ** 0.3


def synthetic_observations() -> pd.DataFrame:
    """Two corpora, same (N, D) grid (one config missing on 'b'); 'b' runs have 2 seeds."""
    rows = []
    for family, e, a, seeds in (("a", 1.8, 0.6, (0,)), ("b", 0.9, 0.4, (0, 1))):
        for n in SIZES:
            for d in TOKENS:
                if family == "b" and (n, d) == (SIZES[0], TOKENS[0]):
                    continue
                for seed in seeds:
                    run = f"{family}-{n:.0e}-{d:.0e}-s{seed}"
                    jitter = 0.002 * seed
                    # an early checkpoint, then the final one
                    for frac in (0.5, 1.0):
                        rows.append(
                            (run, family, n, d * frac, "train", _loss(n, d * frac, e, a) + jitter)
                        )
                    rows.append((run, family, n, d, "code", _loss(n, d, e + 0.5, a) * 1.1))
    return pd.DataFrame(rows, columns=["run_id", "family", "params", "tokens", "dataset", "loss"])


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_observations()


def test_train_to_train_pairs_by_config_final_checkpoint_seeds_averaged(
    synthetic: pd.DataFrame,
) -> None:
    pairs = train_to_train(synthetic, "a", "b")
    assert len(pairs) == len(SIZES) * len(TOKENS) - 1  # the config 'b' lacks
    assert list(pairs.columns) == [
        "run_id_x",
        "run_id_y",
        "params",
        "tokens",
        "flops",
        "loss_x",
        "loss_y",
    ]
    assert set(pairs["tokens"]) == set(TOKENS)  # final checkpoints only
    row = pairs[(pairs["params"] == 1e8) & (pairs["tokens"] == 3e9)].iloc[0]
    assert row["loss_x"] == pytest.approx(_loss(1e8, 3e9, 1.8, 0.6))
    assert row["loss_y"] == pytest.approx(_loss(1e8, 3e9, 0.9, 0.4) + 0.001)  # seed mean
    assert row["run_id_y"] == "b-1e+08-3e+09-s0+b-1e+08-3e+09-s1"
    np.testing.assert_allclose(pairs["flops"], 6 * pairs["params"] * pairs["tokens"])
    assert pairs["flops"].is_monotonic_increasing


def test_train_to_test_pairs_within_each_run(synthetic: pd.DataFrame) -> None:
    pairs = train_to_test(synthetic, "a", "code")
    assert len(pairs) == len(SIZES) * len(TOKENS)
    assert (pairs["run_id_x"] == pairs["run_id_y"]).all()
    every = pair_losses(synthetic, LossRef("a"), LossRef("a", "code"), final_only=False)
    assert len(every) == len(pairs)  # 'code' exists only at the final checkpoint


def test_test_to_test_and_settings(synthetic: pd.DataFrame) -> None:
    pairs = l2l.test_to_test(synthetic, "b", "a", "code")
    assert len(pairs) == len(SIZES) * len(TOKENS) - 1
    assert setting_of(LossRef("a"), LossRef("b")) == "train_to_train"
    assert setting_of(LossRef("a"), LossRef("a", "code")) == "train_to_test"
    assert setting_of(LossRef("a", "code"), LossRef("b", "code")) == "test_to_test"
    assert setting_of(LossRef("a"), LossRef("b", "code")) == "cross"


def test_loss_ref_parsing() -> None:
    assert LossRef.parse("starcoder") == LossRef("starcoder", "train")
    assert LossRef.parse("starcoder:hellaswag") == LossRef("starcoder", "hellaswag")
    assert LossRef.parse(":hellaswag") == LossRef(None, "hellaswag")
    assert str(LossRef("a", "code")) == "a:code"
    for bad in ("", "a:", ":"):
        with pytest.raises(InputError, match="FAMILY"):
            LossRef.parse(bad)


def test_wrong_names_and_no_overlap_are_clear_errors(synthetic: pd.DataFrame) -> None:
    with pytest.raises(InputError, match=r"no runs of family 'c'; known families: a, b"):
        train_to_train(synthetic, "a", "c")
    with pytest.raises(
        InputError, match=r"no losses on dataset 'math' for family 'a'.*code, train"
    ):
        train_to_test(synthetic, "a", "math")
    with pytest.raises(InputError, match="same loss"):
        train_to_train(synthetic, "a", "a")
    other = synthetic.copy()
    other.loc[other["family"] == "b", "tokens"] *= 1.5
    with pytest.raises(InputError, match=r"no pairs: no \(params, tokens\) configuration"):
        train_to_train(other, "a", "b")
    with pytest.raises(InputError, match="needs column"):
        select_losses(synthetic.drop(columns=["family"]), LossRef("a"))


def test_fit_pairs_recovers_a_known_law_and_rejects_loss_below_e() -> None:
    loss_x = np.linspace(2.3, 3.8, 25)
    k, kappa, e_x, e_y = 0.63, 1.1, 1.97, 0.85
    pairs = pd.DataFrame(
        {
            "run_id_x": [f"x{i}" for i in range(25)],
            "run_id_y": [f"y{i}" for i in range(25)],
            "loss_x": loss_x,
            "loss_y": k * (loss_x - e_x) ** kappa + e_y,
        }
    )
    result = fit_pairs(pairs, e_x=e_x, e_y=e_y)
    assert result.params["K"] == pytest.approx(k, rel=1e-6)
    assert result.params["kappa"] == pytest.approx(kappa, rel=1e-6)
    assert result.params["E_x"] == e_x and result.params["E_y"] == e_y
    with pytest.raises(
        InputError, match=r"1 value\(s\) not above .*, e\.g\. run x0; .* needs L − E > 0"
    ):
        fit_pairs(pairs, e_x=2.3, e_y=e_y)


def test_joint_fit_keeps_irreducible_losses_below_the_compute_floors(
    synthetic: pd.DataFrame,
) -> None:
    result = fit_transfer(synthetic, "a", "b")  # the default: joint
    assert result.irreducible == "joint"
    floors = {tag: fit.params["E"] for tag, fit in result.compute_fits.items()}
    assert set(floors) == {"x", "y"}
    # every loss the law may be asked to translate lies above x's compute floor
    assert 0 <= result.params["E_x"] <= floors["x"] < result.pairs["loss_x"].min()
    assert 0 <= result.params["E_y"] <= floors["y"]
    assert result.in_sample_are() < 0.01
    held = fit_transfer(synthetic, "a", "b", irreducible="kaplan_lse")
    assert (held.params["E_x"], held.params["E_y"]) == (floors["x"], floors["y"])
    with pytest.raises(InputError, match="irreducible must be one of joint, kaplan_lse"):
        fit_transfer(synthetic, "a", "b", irreducible="magic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="compute_law must be one of kaplan_lse, chinchilla"):
        fit_transfer(synthetic, "a", "b", compute_law="kaplan")  # type: ignore[arg-type]


def test_bootstrap_refits_the_floors_in_every_replicate(synthetic: pd.DataFrame) -> None:
    held = fit_transfer(synthetic, "a", "b", irreducible="chinchilla", bootstrap=20, seed=1)
    samples = held.fit.param_samples()
    # E_x, E_y come from compute fits refitted on each resample: they vary, around the fit
    for name in ("E_x", "E_y"):
        assert np.ptp(samples[name]) > 0
        assert samples[name].min() <= held.params[name] <= samples[name].max()
    assert held.fit.options["bootstrap"] == 20
    joint = fit_transfer(synthetic, "a", "b", bootstrap=20, seed=1)
    floors = joint.compute_fits["x"].params["E"]
    assert (joint.fit.param_samples()["E_x"] <= floors * 1.5).all()
    loss_x = joint.pairs["loss_x"].to_numpy()[:3]
    lo_c, hi_c = joint.predict_interval(loss_x, kind="confidence")
    lo_p, hi_p = joint.predict_interval(loss_x, kind="prediction")
    point = joint.predict(loss_x)
    # a new run also scatters about the law (here barely: the synthetic pairs are exact)
    assert (hi_p - lo_p >= hi_c - lo_c - 1e-9).all()
    assert (lo_p <= point + 1e-9).all() and (point - 1e-9 <= hi_p).all()
    with pytest.raises(InputError, match="kind must be"):
        joint.predict_interval(loss_x, kind="both")  # type: ignore[arg-type]


def test_compute_replicates_explore_to_the_point_fit() -> None:
    # a replicate that keeps every configuration once is the data itself: refitted from the
    # whole start set (not from the point estimate), it must land on the engine's optimum
    rows = synthetic_observations()
    rows = rows[(rows["family"] == "a") & (rows["dataset"] == "train")]
    rows = rows.groupby("run_id").tail(1)
    point = l2l.compute_fit(rows, LossRef("a"), law="chinchilla")
    draws = ConfigResamples.draw(rows, 3, seed=0)
    ones = ConfigResamples(draws.keys, np.ones_like(draws.counts), 0)
    replicates = compute_replicates(point, rows, ones)
    np.testing.assert_allclose(replicates[0], point.theta, rtol=1e-3)


# -- the Brandfonbrener et al. sweep --------------------------------------------------------

SWEEP_COLUMNS = {
    "id": "run_id",
    "data": "family",
    "iso_flop": "flops",  # 6·N·D; the file's own 'flops' column is not the budget
    "flops": "model_flops",
    "val_loss": "train",  # loss on the model's own training corpus
}


@pytest.fixture(scope="module")
def sweep(shared_data: Path) -> pd.DataFrame:
    return load_observations(
        shared_data / "loss_to_loss" / "sweep.csv", columns=SWEEP_COLUMNS, wide=["train"]
    )


@pytest.fixture(scope="module")
def edu_to_starcoder(sweep: pd.DataFrame) -> TransferFit:
    # the paper's method: floors held at the compute fits'
    return fit_transfer(
        sweep, "fineweb-edu-100b", "starcoder", irreducible="kaplan_lse", bootstrap=10
    )


def test_published_train_to_train_parameters(
    sweep: pd.DataFrame, edu_to_starcoder: TransferFit
) -> None:
    # Brandfonbrener et al. 2024: fineweb-edu-100b → fineweb-100b κ ≈ 1.00, K ≈ 1.01;
    # → starcoder κ ≈ 1.10, K ≈ 0.63, with E_x ≈ 1.97.
    cache = {LossRef("fineweb-edu-100b"): edu_to_starcoder.compute_fits["x"]}
    to_fineweb = fit_transfer(
        sweep, "fineweb-edu-100b", "fineweb-100b", irreducible="kaplan_lse", compute_fits=cache
    )
    assert to_fineweb.params["kappa"] == pytest.approx(1.00, abs=0.01)
    assert to_fineweb.params["K"] == pytest.approx(1.01, abs=0.01)
    p = edu_to_starcoder.params
    assert p["kappa"] == pytest.approx(1.10, abs=0.01)
    assert p["K"] == pytest.approx(0.63, abs=0.01)
    assert p["E_x"] == pytest.approx(1.97, abs=0.005)
    assert to_fineweb.params["E_x"] == p["E_x"]  # one compute fit served both
    assert edu_to_starcoder.setting == "train_to_train"
    assert len(edu_to_starcoder.pairs) == 80
    assert edu_to_starcoder.in_sample_are() < 0.01
    lo, hi = edu_to_starcoder.fit.ci()["kappa"]
    assert lo < p["kappa"] < hi
    # the held floors are refitted in every replicate, so forecasts carry their uncertainty
    lo_c, hi_c = edu_to_starcoder.predict_interval([2.5], kind="confidence")
    lo_p, hi_p = edu_to_starcoder.predict_interval([2.5], kind="prediction")
    assert lo_p[0] < lo_c[0] < edu_to_starcoder.predict([2.5])[0] < hi_c[0] < hi_p[0]


def test_default_joint_fit_explains_its_free_floors_in_one_note(
    sweep: pd.DataFrame, edu_to_starcoder: TransferFit
) -> None:
    cache = {LossRef("fineweb-edu-100b"): edu_to_starcoder.compute_fits["x"]}
    joint = fit_transfer(sweep, "fineweb-edu-100b", "starcoder", compute_fits=cache)
    floor_x = edu_to_starcoder.params["E_x"]  # the compute fit's floor
    assert 0 <= joint.params["E_x"] <= floor_x
    codes = [d.code for d in joint.fit.diagnostics]
    assert not {"floor_collapsed", "at_bound", "ill_conditioned", "near_ties"} & set(codes)
    (note,) = [d for d in joint.fit.diagnostics if "do not pin the floors" in d.message]
    assert "--irreducible kaplan_lse" in note.advice


def test_predict_save_load_and_domain(edu_to_starcoder: TransferFit, tmp_path: Path) -> None:
    path = tmp_path / "transfer.json"
    edu_to_starcoder.save(path)
    loaded = TransferFit.load(path)
    assert loaded.x == edu_to_starcoder.x and loaded.y == edu_to_starcoder.y
    assert loaded.params == edu_to_starcoder.params
    np.testing.assert_allclose(loaded.predict([2.5, 3.0]), edu_to_starcoder.predict([2.5, 3.0]))
    pd.testing.assert_frame_equal(loaded.pairs, edu_to_starcoder.pairs)
    with pytest.raises(
        InputError,
        match=r"'fineweb-edu-100b:train': 1 value\(s\) not above the irreducible loss E = 1\.967",
    ):
        loaded.predict([2.5, 1.9])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a scalinglab transfer fit"):
        TransferFit.load(tmp_path / "bad.json")


def test_translation_beats_fitting_few_runs_alone(sweep: pd.DataFrame) -> None:
    result = translate_law(sweep, "fineweb-edu-100b", "starcoder")
    assert len(result.y_runs) == 8  # one per FLOP budget
    scores = result.evaluate(sweep)
    assert scores["n_heldout"] == len(select_losses(sweep, LossRef("starcoder"))) - 8
    assert scores["are_translated"] < scores["are_direct"]
    assert scores["are_translated"] < 0.03
    with pytest.raises(InputError, match=r"run\(s\) nope have no loss 'starcoder:train'"):
        translate_law(sweep, "fineweb-edu-100b", "starcoder", y_runs=["nope"])


def test_plot_writes_a_figure(edu_to_starcoder: TransferFit, tmp_path: Path) -> None:
    held = edu_to_starcoder.pairs.tail(5)
    fig = plot_transfer(edu_to_starcoder, tmp_path / "pairs.png", held_out=held)
    assert (tmp_path / "pairs.png").stat().st_size > 10_000
    ax = fig.axes[0]
    assert "fineweb-edu-100b:train" in ax.get_xlabel()
    assert len(ax.lines) == 1 and len(ax.collections) == 2


# -- the command line --------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def runs_csv(synthetic: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic runs as a wide CSV, as a user would have them: one loss column each."""
    wide = synthetic.pivot_table(
        index=["run_id", "family", "params", "tokens"], columns="dataset", values="loss"
    ).reset_index()
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    wide.rename(columns={"train": "own_loss", "family": "corpus"}).to_csv(path, index=False)
    return path


def _invoke(*args: str) -> Result:
    return runner.invoke(app, ["transfer", *args])


def _load_options(path: Path) -> list[str]:
    return [
        str(path),
        "--column",
        "own_loss=train",
        "--column",
        "corpus=family",
        "--wide",
        "train",
        "--wide",
        "code",
    ]


def test_cli_fit_then_predict(runs_csv: Path, tmp_path: Path) -> None:
    out, plot = tmp_path / "fit.json", tmp_path / "pairs.png"
    res = _invoke(
        "fit",
        *_load_options(runs_csv),
        "--x",
        "a",
        "--y",
        "b",
        "--irreducible",
        "joint",
        "--out",
        str(out),
        "--plot",
        str(plot),
        "--json",
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["setting"] == "train_to_train" and payload["n_pairs"] == 11
    assert set(payload["params"]) == {"K", "kappa", "E_x", "E_y"}
    assert out.exists() and plot.stat().st_size > 10_000
    res = _invoke("predict", str(out), "--loss-x", "3.0", "--loss-x", "3.5", "--json")
    assert res.exit_code == 0, res.output
    predictions = json.loads(res.stdout)["predictions"]
    expected = TransferFit.load(out).predict([3.0, 3.5])
    np.testing.assert_allclose([p["loss_y"] for p in predictions], expected)
    res = _invoke("predict", str(out))
    assert res.exit_code == 2 and "--loss-x" in res.output
    res = _invoke("predict", str(out), "--loss-x", "0.01")
    assert res.exit_code == 2 and "not above the irreducible loss" in res.stderr
    table = _invoke(
        "fit", *_load_options(runs_csv), "--x", "a", "--y", "a:code", "--irreducible", "joint"
    )
    assert table.exit_code == 0, table.output
    assert "train_to_test:" in table.stdout and "E from joint" in table.stdout


def test_cli_matrix_translate_backtest(runs_csv: Path) -> None:
    # E from compute fits is covered by `translate` and `backtest`; joint keeps this quick
    res = _invoke("matrix", *_load_options(runs_csv), "--irreducible", "joint", "--json")
    assert res.exit_code == 0, res.output
    assert {(r["x"], r["y"]) for r in json.loads(res.stdout)} == {
        ("a:train", "b:train"),
        ("b:train", "a:train"),
    }
    res = _invoke(
        "matrix", *_load_options(runs_csv), "--setting", "train_to_test", "--irreducible", "joint"
    )
    assert res.exit_code == 0, res.output
    assert "train_to_test: κ" in res.stdout and "b:code" in res.stdout
    few = [f"b-{n:.0e}-{d:.0e}-s0" for n in SIZES[1:] for d in TOKENS[::2]]
    args = [arg for run in few for arg in ("--run", run)]
    res = _invoke("translate", *_load_options(runs_csv), "--x", "a", "--y", "b", *args, "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["y_runs"] == few and payload["n_heldout"] == 2 * 11 - 6
    assert payload["are_translated"] < 0.05
    res = _invoke(
        "backtest",
        *_load_options(runs_csv),
        "--max-train-flops",
        "2e18",
        "--law",
        "chinchilla",  # the form the synthetic losses follow
        "--setting",
        "train_to_train",
        "--setting",
        "train_to_test",
        "--json",
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert [(r["x"], r["y"]) for r in payload["pairs"]] == [
        ("a:train", "b:train"),
        ("b:train", "a:train"),
        ("a:train", "a:code"),
        ("b:train", "b:code"),
    ]
    assert {r["setting"] for r in payload["summary"]} == {"train_to_train", "train_to_test"}


def test_cli_bad_input_exits_2_with_a_message(runs_csv: Path) -> None:
    cases = [
        (["fit", *_load_options(runs_csv), "--x", "a", "--y", "zz"], "no runs of family 'zz'"),
        (
            ["fit", *_load_options(runs_csv), "--x", "a", "--y", "b:math"],
            "no losses on dataset 'math'",
        ),
        (
            ["fit", *_load_options(runs_csv), "--x", "a", "--y", "b", "--irreducible", "x"],
            "irreducible must be one of",
        ),
        (["fit", str(runs_csv), "--x", "a", "--y", "b"], "missing required column(s) loss"),
        (["matrix", *_load_options(runs_csv), "--setting", "t2t"], "setting must be one of"),
        (
            ["backtest", *_load_options(runs_csv), "--max-train-flops", "1e30"],
            "no runs above max_train_flops",
        ),
        (["translate", *_load_options(runs_csv), "--x", "a", "--y", "b", "--law", "kaplan"], "law"),
        (["predict", str(runs_csv), "--loss-x", "3"], "not valid JSON"),
        (["fit", "missing.csv", "--x", "a", "--y", "b"], "no such file"),
    ]
    for args, message in cases:
        res = _invoke(*args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
