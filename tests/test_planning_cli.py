"""`scalinglab plan | isoflop | params` from the command line, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.examples import isoflop_sweep
from scalinglab.fitting import Fit
from scalinglab.laws import get_law

runner = CliRunner()
BESIROGLU = {"E": 1.817, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}


@pytest.fixture
def fit_file(tmp_path: Path) -> Path:
    law = get_law("chinchilla")
    theta = law.theta_vector(BESIROGLU)
    boot = theta * np.exp(np.random.default_rng(0).normal(0.0, 0.03, (100, theta.size)))
    path = tmp_path / "fit.json"
    Fit(
        law=law,
        params=BESIROGLU,
        objective=0.0,
        converged=True,
        n_points=240,
        n_groups=240,
        n_starts=1,
        bootstrap_params=boot,
    ).save(path)
    return path


def assert_one_error(args: list[str], *words: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (args, res.output)
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error:"), message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    assert "Traceback" not in res.output


def test_plan_json_and_table(fit_file: Path) -> None:
    res = runner.invoke(
        app, ["plan", str(fit_file), "--flops", "5.88e23", "--flops", "1e21", "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    first = payload["budgets"][0]
    assert first["flops"] == 5.88e23
    assert first["tokens_per_param"] == pytest.approx(17.88, abs=0.05)
    assert first["tokens_per_param_lo"] < first["tokens_per_param"] < first["tokens_per_param_hi"]
    assert payload["params_exponent"] == pytest.approx(0.3672 / (0.3473 + 0.3672))
    res = runner.invoke(app, ["plan", str(fit_file), "--flops", "1e23"])
    assert res.exit_code == 0, res.output
    assert "tokens_per_param" in res.stdout and "bootstrap replicates" in res.stdout


def test_plan_bad_input(fit_file: Path, tmp_path: Path) -> None:
    assert_one_error(["plan", str(fit_file)], "--flops")
    assert_one_error(["plan", str(fit_file), "--flops", "-1"], "positive")
    assert_one_error(["plan", str(fit_file), "--flops", "1e20", "--level", "2"], "level")
    assert_one_error(["plan", str(tmp_path / "missing.json"), "--flops", "1e20"], "no such file")
    not_fit = tmp_path / "runs.json"
    not_fit.write_text("[1, 2]")
    assert_one_error(["plan", str(not_fit), "--flops", "1e20"], "not a scalinglab fit")
    compute_fit = tmp_path / "compute.json"
    Fit(
        law=get_law("compute"),
        params={"E": 1.7, "A": 1e3, "alpha": 0.05},
        objective=0.0,
        converged=True,
        n_points=5,
        n_groups=5,
        n_starts=1,
    ).save(compute_fit)
    assert_one_error(["plan", str(compute_fit), "--flops", "1e20"], "params and tokens")


def test_isoflop_json_and_table(tmp_path: Path) -> None:
    csv = tmp_path / "sweep.csv"
    isoflop_sweep(noise=0.0).to_csv(csv, index=False)
    res = runner.invoke(app, ["isoflop", str(csv), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["params_exponent"] == pytest.approx(0.5126, abs=0.005)
    assert len(payload["minima"]) == 7
    res = runner.invoke(app, ["isoflop", str(csv), "--budget", "1e19", "--budget", "1e20"])
    assert res.exit_code == 0, res.output
    assert "N_opt" in res.stdout and "only 2 budgets" in res.stdout


def test_isoflop_bad_input(tmp_path: Path) -> None:
    sweep = isoflop_sweep(noise=0.0)
    top = sweep["flops"] == sweep["flops"].max()
    csv = tmp_path / "edge.csv"
    sweep[~top | (sweep["params"] < sweep.loc[top, "params"].median())].to_csv(csv, index=False)
    assert_one_error(["isoflop", str(csv)], "1e+21", "above the largest")
    res = runner.invoke(app, ["isoflop", str(csv), "--drop-invalid", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["dropped"]) == 1
    assert_one_error(["isoflop", str(csv), "--budget-column", "compute"], "compute")
    bad = tmp_path / "bad.csv"
    sweep.assign(loss=sweep["loss"].where(sweep.index != 3, -2.0)).to_csv(bad, index=False)
    assert_one_error(["isoflop", str(bad)], "row 4", "loss")
    assert_one_error(["isoflop", str(tmp_path / "none.csv")], "no such file")


def test_params_command() -> None:
    res = runner.invoke(
        app,
        [
            "params",
            "--d-model",
            "768",
            "--layers",
            "12",
            "--vocab",
            "50257",
            "--context",
            "1024",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["params"]["total"] == 124_439_808
    assert payload["flops_per_token"]["training"] == 3 * payload["flops_per_token"]["forward"]
    res = runner.invoke(
        app,
        [
            "params",
            "--d-model",
            "4096",
            "--layers",
            "32",
            "--vocab",
            "32000",
            "--context",
            "4096",
            "--d-ff",
            "11008",
            "--untied",
            "--mlp",
            "swiglu",
            "--positions",
            "rotary",
            "--norm",
            "rmsnorm",
            "--no-bias",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "6738415616" in res.stdout


def test_params_bad_input() -> None:
    base = ["params", "--d-model", "64", "--layers", "2", "--vocab", "100", "--context", "16"]
    assert_one_error([*base, "--mlp", "relu"], "mlp", "relu")
    assert_one_error([*base, "--heads", "5"], "heads")
    assert_one_error(
        ["params", "--d-model", "0", "--layers", "2", "--vocab", "100", "--context", "16"],
        "d_model",
    )
    res = runner.invoke(app, ["params", "--d-model", "64"])
    assert res.exit_code == 2 and "--layers" in res.output
