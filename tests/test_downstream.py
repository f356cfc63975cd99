"""Downstream error laws, tables, two-step forecasts, verdicts and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.errors import InputError
from scalinglab.evaluation.downstream import DownstreamFit, choose_loss_settings, fit_downstream
from scalinglab.evaluation.downstream_backtest import backtest_downstream
from scalinglab.evaluation.downstream_data import DownstreamTable, load_downstream
from scalinglab.fitting import fit_law
from scalinglab.laws import get_law
from tests import synthetic_downstream as synth

runner = CliRunner()

THETA = {
    "error_exp": np.array([[0.8, 3.0, 0.6], [0.9, 20.0, 1.2]]),
    "error_sigmoid": np.array([[0.3, 0.75, 2.0, 3.5], [0.1, 0.5, 0.7, 4.0]]),
    "error_compute": np.array([[0.3, 0.75, 0.4, 1e19], [0.1, 0.5, 1.3, 3e17]]),
}


@pytest.mark.parametrize("name", sorted(THETA))
def test_gradients_match_finite_differences(name: str) -> None:
    law = get_law(name)
    rng = np.random.default_rng(1)
    x = {"loss": rng.uniform(2.5, 6.0, 9), "flops": 10 ** rng.uniform(15, 21, 9)}
    synth.assert_gradients(law, THETA[name], x)


@pytest.mark.parametrize(
    ("name", "truth", "fixed"),
    [
        ("error_exp", synth.ERROR_TRUTH, None),
        ("error_sigmoid", {"floor": 0.2, "chance": 0.75, "k": 2.5, "L0": 3.2}, {"chance": 0.75}),
        ("error_compute", {"floor": 0.2, "chance": 0.75, "k": 0.6, "flops_mid": 1e19}, None),
    ],
)
def test_fits_recover_the_truth(name: str, truth: dict[str, float], fixed: dict | None) -> None:
    table = synth.runs(scatter=0.0)
    x = {"loss": table["loss"].to_numpy(), "flops": 6 * table["params"] * table["tokens"]}
    x = {k: np.asarray(v, dtype=float) for k, v in x.items()}
    y = get_law(name).predict(truth, x)
    result = fit_law(get_law(name), x, y, fixed=fixed, loss="squares")
    for key, value in truth.items():
        assert result.params[key] == pytest.approx(value, rel=2e-3), key


def _tables(tmp_path: Path) -> tuple[Path, Path, Path]:
    wide = tmp_path / "wide.csv"
    synth.wide().to_csv(wide, index=False)
    runs = tmp_path / "runs.csv"
    synth.runs().to_csv(runs, index=False)
    long = tmp_path / "long.csv"
    synth.long().to_csv(long, index=False)
    return wide, runs, long


def test_wide_and_long_tables_agree(tmp_path: Path) -> None:
    wide, runs, long = _tables(tmp_path)
    a = load_downstream(wide, loss="loss")
    b = load_downstream(long, runs=runs, loss="loss")
    assert a.tasks == b.tasks == ["clean", "at_chance", "unrelated"]
    pd.testing.assert_frame_equal(a.errors, b.errors)
    assert a.chance == {"clean": None, "at_chance": None, "unrelated": None}
    assert b.chance == {"clean": 1.0, "at_chance": 0.75, "unrelated": 1.0}
    assert b.averages == {"pair": ("clean", "at_chance")}
    np.testing.assert_allclose(b.error("pair"), (b.errors["clean"] + b.errors["at_chance"]) / 2)
    assert b.chance_error("pair") == pytest.approx(0.875)
    assert b.effective_examples("pair") == pytest.approx(2 * synth.EXAMPLES)
    assert a.has_compute and "flops" in a.runs and "multiplier" in a.runs
    c = load_downstream(
        wide, loss="loss", chance={"at_chance": 0.25}, averages={"two": ["clean", "unrelated"]}
    )
    assert c.chance["at_chance"] == 0.75 and c.averages == {"two": ("clean", "unrelated")}


BAD_WIDE = [
    (lambda t: t.assign(clean=t["clean"].where(t.index != 3, 1.3)), "row 4, column 'clean'"),
    (
        lambda t: t.assign(clean=t["clean"].astype(object).where(t.index != 2, "abc")),
        "not a number",
    ),
    (lambda t: t.assign(loss=t["loss"].where(t.index != 5, -1.0)), "row 6, column 'loss'"),
    (lambda t: t.drop(columns="loss"), "no validation-loss column 'loss'"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "run_id repeated"),
    (lambda t: t.assign(family=["a", "b"] * 12 + ["a"]), "choose one with family="),
    (lambda t: t.assign(params=t["params"].where(t.index != 0, 0.0)), "row 1, column 'params'"),
]


@pytest.mark.parametrize(("change", "message"), BAD_WIDE)
def test_bad_wide_tables_are_named(
    tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    path = tmp_path / "bad.csv"
    change(synth.wide()).to_csv(path, index=False)
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as err:
        load_downstream(path, loss="loss")
    assert "bad.csv" in str(err.value)


def test_bad_long_tables_are_named(tmp_path: Path) -> None:
    _, runs, _ = _tables(tmp_path)
    rows = synth.long()
    cases = [
        (pd.concat([rows, rows.iloc[:1].assign(value=0.1)]), "different values for task 'clean'"),
        (rows.assign(run_id=rows["run_id"].where(rows.index != 7, "ghost")), "run 'ghost'"),
        (
            rows.assign(random_baseline=rows["random_baseline"].where(rows.index != 1, 0.5)),
            "different values of 'random_baseline'",
        ),
        (
            rows.assign(in_pair=rows["in_pair"].astype(object).where(rows.index != 0, "maybe")),
            "group flag",
        ),
    ]
    for frame, message in cases:
        path = tmp_path / "bad_long.csv"
        frame.to_csv(path, index=False)
        with pytest.raises(InputError, match=message):
            load_downstream(path, runs=runs, loss="loss")
    with pytest.raises(InputError, match="no task"):
        load_downstream(tmp_path / "long.csv", runs=runs, loss="loss", tasks=["nope"])
    # an average is never computed from part of its tasks
    part = load_downstream(tmp_path / "long.csv", runs=runs, loss="loss", tasks=["clean"])
    assert part.averages == {} and "average 'pair' left out" in part.notes[0]
    with pytest.raises(InputError, match="names task"):
        load_downstream(tmp_path / "long.csv", runs=runs, loss="loss", averages={"x": ["nope"]})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[DownstreamFit, DownstreamTable]:
    path = tmp_path_factory.mktemp("ds") / "long.csv"
    synth.long().to_csv(path, index=False)
    runs = path.parent / "runs.csv"
    synth.runs().to_csv(runs, index=False)
    table = load_downstream(path, runs=runs, loss="loss")
    return fit_downstream(table, bootstrap=60, seed=3), table


def test_verdicts_on_known_truth(fitted: tuple[DownstreamFit, DownstreamTable]) -> None:
    result, _ = fitted
    status = {t: v.status for t, v in result.verdicts.items()}
    assert status["clean"] == "predictable"
    assert status["at_chance"] == "near_chance"
    assert status["unrelated"] == "non_monotone"
    assert result.selected_form("clean") in ("exp", "sigmoid", "compute")
    assert result.verdicts["clean"].backtest_mae[result.selected_form("clean")] < 0.02
    assert result.options["loss_law"] in ("overtraining", "chinchilla_m")
    assert result.loss_fit is not None and result.loss_fit.n_points >= 15


def test_two_step_intervals_carry_the_loss_uncertainty(
    fitted: tuple[DownstreamFit, DownstreamTable],
) -> None:
    result, _ = fitted
    n, m = 3e9, 40.0  # beyond the fitted sizes
    flops = 6 * n * n * m
    two = result.forecast(flops=[flops], multiplier=[m], targets=["clean"])
    two = two[two["form"] == "exp"].iloc[0]
    true_loss = get_law("overtraining").predict(
        synth.LOSS_TRUTH, {"flops": np.array([flops]), "multiplier": np.array([m])}
    )
    assert two["loss_low"] <= true_loss[0] <= two["loss_high"]
    assert two["error_low"] <= synth.true_error(true_loss)[0] <= two["error_high"]
    one = result.forecast(loss=[two["loss"]], targets=["clean"])
    one = one[one["form"] == "exp"].iloc[0]
    assert one["error"] == pytest.approx(two["error"])
    assert (two["error_high"] - two["error_low"]) > (one["error_high"] - one["error_low"])
    conf = result.forecast(flops=[flops], multiplier=[m], targets=["clean"], kind="confidence")
    conf = conf[conf["form"] == "exp"].iloc[0]
    assert two["error_low"] <= conf["error_low"] <= conf["error_high"] <= two["error_high"]
    with pytest.raises(InputError, match="either"):
        result.forecast(flops=[1e20], multiplier=[20], loss=[3.0])
    with pytest.raises(InputError, match="no fitted target"):
        result.forecast(loss=[3.0], targets=["nope"])


def test_round_trip_through_json(
    fitted: tuple[DownstreamFit, DownstreamTable], tmp_path: Path
) -> None:
    result, _ = fitted
    path = tmp_path / "fit.json"
    result.save(path)
    again = DownstreamFit.load(path)
    a = result.forecast(flops=[1e20], multiplier=[20])
    b = again.forecast(flops=[1e20], multiplier=[20])
    pd.testing.assert_frame_equal(a, b)
    assert {t: v.status for t, v in again.verdicts.items()} == {
        t: v.status for t, v in result.verdicts.items()
    }
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(InputError, match="not a scalinglab downstream fit"):
        DownstreamFit.load(tmp_path / "other.json")


def test_backtest_of_the_largest_runs(fitted: tuple[DownstreamFit, DownstreamTable]) -> None:
    _, table = fitted
    runs = table.runs
    train = list(runs.index[runs["params"] < 1e9])
    test = list(runs.index[runs["params"] >= 1e9])
    result = backtest_downstream(table, train, test, bootstrap=40, targets=["clean", "pair"])
    assert result.are("clean") < 0.03  # binomial noise alone is 1.3% per run
    assert 0.0 <= result.coverage("clean") <= 1.0
    assert set(result.forecasts["run_id"]) == set(test)


def test_loss_settings_are_cross_validated(fitted: tuple[DownstreamFit, DownstreamTable]) -> None:
    _, table = fitted
    law, _, scores = choose_loss_settings(table)
    assert len(scores) == 6 and law in ("overtraining", "chinchilla_m")
    assert min(s["are"] for s in scores) < 0.01  # the truth is an over-training law


def test_cli_fit_predict_backtest(tmp_path: Path) -> None:
    wide, runs, long = _tables(tmp_path)
    fit_json = tmp_path / "fit.json"
    res = runner.invoke(
        app,
        [
            "downstream",
            "fit",
            str(long),
            "--runs",
            str(runs),
            "--loss",
            "loss",
            "--bootstrap",
            "20",
            "--out",
            str(fit_json),
            "--report-dir",
            str(tmp_path / "report"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["verdicts"]["at_chance"]["status"] == "near_chance"
    assert (tmp_path / "report" / "report.html").is_file()
    res = runner.invoke(
        app,
        ["downstream", "predict", str(fit_json), "--params", "3e9", "--tokens", "1.2e11", "--json"],
    )
    assert res.exit_code == 0, res.output
    forecasts = json.loads(res.stdout)
    by_target = {r["target"]: r for r in forecasts["forecasts"]}
    assert (
        by_target["clean"]["error_low"]
        < by_target["clean"]["error"]
        < by_target["clean"]["error_high"]
    )
    assert by_target["at_chance"]["error"] is None and "at_chance" in forecasts["not_forecastable"]
    res = runner.invoke(
        app,
        [
            "downstream",
            "predict",
            str(fit_json),
            "--loss",
            "2.5",
            "--all-forms",
            "--show-unpredictable",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "at_chance" in res.stdout
    res = runner.invoke(
        app,
        [
            "downstream",
            "backtest",
            str(wide),
            "--loss",
            "loss",
            "--max-train-params",
            "5e8",
            "--form",
            "exp",
            "--bootstrap",
            "0",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["loss_are"] < 0.02 and len(out["test"]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{wide}", "--loss", "nope"], "no validation-loss column 'nope'"),
        (["fit", "{wide}", "--loss", "loss", "--form", "cubic"], "unknown downstream form"),
        (["fit", "{wide}", "--loss", "loss", "--metric", "f1"], "--metric"),
        (["fit", "{wide}", "--loss", "loss", "--min-multiplier", "-3"], "--min-multiplier"),
        (["fit", "{wide}", "--loss", "loss", "--chance", "clean"], "--chance expects NAME=VALUE"),
        (["fit", "{wide}", "--loss", "loss", "--task", "nope"], "no task column"),
        (["fit", "{missing}", "--loss", "loss"], "no such file"),
        (["predict", "{wide}", "--loss", "3"], "not valid JSON"),
        (["backtest", "{wide}", "--loss", "loss", "--max-train-params", "1"], "both need some"),
        (["fit", "{wide}", "--loss", "loss", "--bootstrap", "-1"], "--bootstrap"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    wide, _, _ = _tables(tmp_path)
    (tmp_path / "wide.json").write_text("[]")
    names = {"wide": str(wide), "missing": str(tmp_path / "missing.csv")}
    argv = ["downstream", *(a.format(**names) for a in args)]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1


def test_report_escapes_user_text(tmp_path: Path) -> None:
    table = synth.wide().rename(columns={"clean": "<b>clean</b>"})
    path = tmp_path / "wide.csv"
    table.to_csv(path, index=False)
    res = runner.invoke(
        app,
        [
            "downstream",
            "fit",
            str(path),
            "--loss",
            "loss",
            "--task",
            "<b>clean</b>",
            "--bootstrap",
            "0",
            "--report-dir",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "&lt;b&gt;clean&lt;/b&gt;" in html and "<b>clean</b>" not in html


def test_shared_data_verdicts(shared_data: Path) -> None:
    data = shared_data / "downstream"
    table = load_downstream(
        data / "evals.csv",
        runs=data / "models.csv",
        loss="loss_c4_val",
        columns={"train_dataset": "family"},
        family="rpj",
        tasks=["arc_easy", "mmlu", *[]],
    )
    models = pd.read_csv(data / "models.csv").set_index("run_id")
    full = load_downstream(
        data / "evals.csv",
        runs=data / "models.csv",
        loss="loss_c4_val",
        columns={"train_dataset": "family"},
        family="rpj",
    )
    np.testing.assert_allclose(
        full.error("avg17"), models.loc[full.runs.index, "top1_error_avg17"], atol=1e-12
    )
    assert len(full.averages["avg17"]) == 17 and full.chance_error("mmlu") == pytest.approx(0.75)
    runs = table.runs
    small = table.subset(list(runs.index[(runs["params"] < 1e9) & (runs["multiplier"] <= 160)]))
    result = fit_downstream(small, forms=("exp", "sigmoid"))
    assert result.verdicts["arc_easy"].status == "predictable"
    assert result.verdicts["mmlu"].status == "near_chance"
