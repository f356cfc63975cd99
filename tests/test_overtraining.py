"""Over-training laws L(C, M) and the plans made with them (synthetic truth, CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.errors import FitError, InputError
from scalinglab.fitting import fit, fit_law
from scalinglab.laws import get_law
from scalinglab.planning.overtraining import (
    inference_optimal,
    loss_at,
    training_flops_for_loss,
)
from tests import synthetic_downstream as synth

runner = CliRunner()


def _x(table: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "flops": 6.0 * table["params"].to_numpy() * table["tokens"].to_numpy(),
        "multiplier": (table["tokens"] / table["params"]).to_numpy(),
    }


@pytest.mark.parametrize("name", ["overtraining", "chinchilla_m"])
def test_gradients_match_finite_differences(name: str) -> None:
    law = get_law(name)
    rng = np.random.default_rng(0)
    x = {"flops": 10 ** rng.uniform(15, 21, 9), "multiplier": 10 ** rng.uniform(0.5, 3, 9)}
    theta = (
        np.array([[1.8, 150.0, 300.0, 0.14], [2.1, 20.0, 80.0, 0.3]])
        if name == "overtraining"
        else np.array([[1.8, 150.0, 0.3, 300.0, 0.25]])
    )
    synth.assert_gradients(law, theta, x)


def test_overtraining_is_chinchilla_with_tied_exponents() -> None:
    """With C = 6ND, Gadre et al.'s law is Chinchilla with α = β = 2η, A = a·6^−η, B = b·6^−η."""
    p = synth.LOSS_TRUTH
    n, d = np.array([1e7, 3e8, 2e9]), np.array([2e8, 1e10, 3e11])
    ours = get_law("overtraining").predict(p, {"flops": 6 * n * d, "multiplier": d / n})
    six = 6.0 ** -p["eta"]
    chinchilla = get_law("chinchilla").predict(
        {
            "E": p["E"],
            "A": p["a"] * six,
            "alpha": 2 * p["eta"],
            "B": p["b"] * six,
            "beta": 2 * p["eta"],
        },
        {"params": n, "tokens": d},
    )
    np.testing.assert_allclose(ours, chinchilla, rtol=1e-12)


def test_fit_recovers_the_overtraining_truth() -> None:
    table = synth.runs(scatter=0.0)
    result = fit_law(get_law("overtraining"), _x(table), table["loss"])
    for name, value in synth.LOSS_TRUTH.items():
        assert result.params[name] == pytest.approx(value, rel=1e-4), name
    assert result.options["search"] == "projection"


def test_chinchilla_along_m_recovers_chinchilla() -> None:
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.28}
    table = synth.runs(scatter=0.0)
    table["loss"] = get_law("chinchilla").predict(
        truth, {"params": table["params"].to_numpy(), "tokens": table["tokens"].to_numpy()}
    )
    result = fit_law(get_law("chinchilla_m"), _x(table), table["loss"])
    for name, value in truth.items():
        assert result.params[name] == pytest.approx(value, rel=1e-4), name


def test_fit_reads_the_multiplier_from_an_observations_table() -> None:
    table = synth.runs(scatter=0.0)
    result = fit(table, "overtraining")
    assert result.params["eta"] == pytest.approx(synth.LOSS_TRUTH["eta"], rel=1e-4)
    with pytest.raises(InputError, match="tokens per parameter"):
        get_law("overtraining").features(pd.DataFrame({"flops": [1.0], "loss": [2.0]}))


def test_loss_at_and_compute_optimal_multiplier_in_closed_form() -> None:
    table = synth.runs(scatter=0.0)
    exact = fit_law(get_law("overtraining"), _x(table), table["loss"])
    # at one budget the loss is least where a·M^η + b·M^−η is: M* = (b/a)^(1/2η) (~870)
    p = synth.LOSS_TRUTH
    best = (p["b"] / p["a"]) ** (1 / (2 * p["eta"]))
    frame = loss_at(exact, 1e21, [20.0, best, 40 * best])
    assert frame["loss"].iloc[1] < min(frame["loss"].iloc[0], frame["loss"].iloc[2])
    np.testing.assert_allclose(frame["params"] ** 2 * 6 * frame["multiplier"], 1e21)
    # so is the training cost of reaching a loss
    plan = inference_optimal(exact, 0.0, target_loss=2.6)
    assert plan.multiplier == pytest.approx(best, rel=2e-3)
    assert plan.savings == pytest.approx(0.0, abs=1e-6)
    # with run-to-run scatter and bootstrap replicates: prediction intervals and plan CIs
    noisy = synth.runs(scatter=0.003)
    result = fit_law(get_law("overtraining"), _x(noisy), noisy["loss"], bootstrap=30)
    frame = loss_at(result, 1e21, [20.0, 200.0])
    assert (frame["low"] < frame["loss"]).all() and (frame["loss"] < frame["high"]).all()
    served = inference_optimal(result, 1e13, target_loss=2.6)
    reference = inference_optimal(result, 0.0, target_loss=2.6)
    assert served.multiplier > 3 * reference.multiplier  # serving favours longer training
    assert served.total_flops < served.compute_optimal["total_flops"]
    assert served.ci["multiplier"][0] <= served.multiplier <= served.ci["multiplier"][1]


def test_bisection_agrees_with_the_closed_form() -> None:
    law = get_law("overtraining")
    theta = np.array([[1.9, 60.0, 400.0, 0.14]])
    m = np.array([5.0, 20.0, 500.0])
    closed = training_flops_for_loss(law, theta, m, 2.6)
    achieved = law.predict(theta[0], {"flops": closed[0], "multiplier": m})
    np.testing.assert_allclose(achieved, 2.6, rtol=1e-10)
    chin = get_law("chinchilla_m")
    theta_c = np.array([[1.9, 60.0 * 6**-0.14, 0.28, 400.0 * 6**-0.14, 0.28]])
    bisected = training_flops_for_loss(chin, theta_c, m, 2.6)
    np.testing.assert_allclose(bisected, closed, rtol=1e-9)
    assert math.isinf(training_flops_for_loss(law, theta, m, 1.5)[0, 0])  # below E


def test_plans_refuse_the_impossible() -> None:
    table = synth.runs(scatter=0.0)
    result = fit_law(get_law("overtraining"), _x(table), table["loss"])
    with pytest.raises(InputError, match="never reaches"):
        inference_optimal(result, 1e12, target_loss=1.0)
    with pytest.raises(InputError, match="either"):
        inference_optimal(result, 1e12)
    with pytest.raises(InputError, match="non-negative"):
        inference_optimal(result, -1.0, target_loss=2.5)
    chinchilla = fit(table, "chinchilla")
    with pytest.raises(FitError, match="not an over-training law"):
        loss_at(chinchilla, 1e21, 20)


def test_cli_fit_and_plan(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    synth.runs().to_csv(csv, index=False)
    fit_json = tmp_path / "fit.json"
    res = runner.invoke(
        app, ["fit", str(csv), "--law", "overtraining", "--bootstrap", "20", "--out", str(fit_json)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["plan", str(fit_json), "--flops", "1e21", "--multiplier", "200", "--json"]
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["plans"][0]
    assert row["multiplier"] == 200 and row["low"] <= row["loss"] <= row["high"]
    res = runner.invoke(
        app, ["plan", str(fit_json), "--inference-tokens", "1e13", "--flops", "1e21", "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["optimum"]["multiplier"] > payload["compute_optimal"]["multiplier"]
    for args, message in (
        (["--inference-tokens", "1e13"], "target loss or a training budget"),
        (["--inference-tokens", "1e13", "--loss", "0.5"], "never reaches"),
        (["--flops", "1e21"], "--multiplier"),
        (["--inference-tokens", "1e13", "--loss", "2.5", "--multiplier", "20"], "chosen by"),
    ):
        res = runner.invoke(app, ["plan", str(fit_json), *args])
        assert res.exit_code == 2, res.output
        assert message in res.stderr and "Traceback" not in res.output
    chinchilla_json = tmp_path / "chin.json"
    assert runner.invoke(app, ["fit", str(csv), "--out", str(chinchilla_json)]).exit_code == 0
    res = runner.invoke(
        app, ["plan", str(chinchilla_json), "--flops", "1e21", "--multiplier", "20"]
    )
    assert res.exit_code == 2 and "over-training fit" in res.stderr
