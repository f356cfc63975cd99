"""The study's analysis on example data with known truth, and `scalinglab report`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import load_observations
from scalinglab.errors import InputError, ScalingLabError
from scalinglab.examples import CHINCHILLA_TRUTH, isoflop_sweep, schedule_runs
from scalinglab.study import analyse, primary_dataset, primary_family

runner = CliRunner()


@pytest.fixture(scope="module")
def sweep_study():
    return analyse(load_observations(isoflop_sweep(held_out=True)), bootstrap=50)


def test_compute_transfer_and_backtest_parts(sweep_study) -> None:
    study = sweep_study
    assert study.dataset == "train"
    assert study.compute_fit is not None and study.compute_fit.converged
    assert study.compute_fit.params["alpha"] == pytest.approx(CHINCHILLA_TRUTH["alpha"], rel=0.1)
    assert study.plan is not None and len(study.plan.flops) == 2
    assert study.isoflop is not None
    transfer = study.extras["transfer"]
    assert transfer.fit.y.dataset == "held-out"
    # the translated law beats the law fitted on the same few runs alone
    assert transfer.scores["are_translated"] < transfer.scores["are_direct"]
    backtest = study.extras["backtest"]
    assert backtest.headline["are"] < backtest.headline["baseline last_loss"]
    # curves need schedules: the part is skipped with its reason, not silently
    assert "loss curves" in study.notes and "schedule" in study.notes["loss curves"]
    assert any(line.startswith("Backtest") for line in study.summary)


def test_curve_part_predicts_the_held_out_schedule() -> None:
    study = analyse(load_observations(schedule_runs()), parts=("curve",))
    curve = study.extras["curve"]
    assert curve.fitted_runs == ["example-constant", "example-cosine"]
    assert curve.held_out_runs == ["example-wsd"]
    held = curve.errors[
        (curve.errors["role"] == "held out") & (curve.errors["law"] == curve.best_law)
    ]
    assert float(held["mean_rel_error"].iloc[0]) < 0.005  # the data carry 0.3% noise
    assert curve.choice is not None
    rec = curve.choice.recommended
    assert curve.choice.gain_over(curve.choice.cosine, rec) > 0


def test_primary_choices() -> None:
    table = pd.DataFrame({"dataset": ["a", "b", "b"], "family": ["x", "y", "y"]})
    assert primary_dataset(table) == "b"
    assert primary_dataset(table, "a") == "a"
    assert primary_family(table) == "y"
    assert primary_family(table.drop(columns="family")) is None


def test_report_command_on_a_table(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    isoflop_sweep(held_out=True).to_csv(csv, index=False)
    res = runner.invoke(
        app, ["report", str(csv), "--out-dir", str(tmp_path / "rep"), "--bootstrap", "20", "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert Path(payload["report"]["html"]).exists()
    assert any("Compute law" in line for line in payload["summary"])
    res = runner.invoke(app, ["report", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_bad_study_options_fail_before_any_work(tmp_path: Path) -> None:
    res = runner.invoke(app, ["study", "--bootstrap", "-3", "--out-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and "--bootstrap must be non-negative" in res.stderr
    assert not (tmp_path / "s").exists()  # nothing trained, nothing written
    with pytest.raises(ScalingLabError, match="unknown part"):
        analyse(load_observations(isoflop_sweep()), parts=("compute", "magic"))


def test_error_values_print_as_plain_numbers() -> None:
    import numpy as np

    assert "(value: -1.0)" in str(InputError("bad", value=np.float64(-1.0)))
