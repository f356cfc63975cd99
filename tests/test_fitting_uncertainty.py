"""Intervals that explore, prediction intervals, run-to-run noise, and the flags on a fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import scalinglab.fitting.bootstrap as bootstrap_module
from scalinglab.cli.main import app
from scalinglab.data import RunStore
from scalinglab.errors import FitError, InputError
from scalinglab.fitting import Diagnostic, Fit, bootstrap_fits, fit_law
from scalinglab.fitting.diagnostics import diagnose
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.laws import get_law

TRUTH = {"E": 1.82, "A": 482.0, "alpha": 0.348, "B": 2085.0, "beta": 0.366}
runner = CliRunner()


def design(sizes: int, ratios: list[float]) -> dict[str, np.ndarray]:
    params = np.repeat(np.geomspace(1e7, 1e9, sizes), len(ratios))
    return {"params": params, "tokens": params * np.tile(ratios, sizes)}


def noisy(x: dict[str, np.ndarray], truth: dict[str, float], seed: int = 0) -> np.ndarray:
    law = get_law("chinchilla")
    rng = np.random.default_rng(seed)
    return law.predict(truth, x) * np.exp(rng.normal(0, 0.01, x["params"].size))


def test_bootstrap_refits_do_not_start_at_the_point_estimate(monkeypatch) -> None:
    starts: list[np.ndarray] = []
    original = bootstrap_module.batched_lbfgs

    def recording(fun, z0, *args, **kwargs):
        starts.append(np.array(z0))
        return original(fun, z0, *args, **kwargs)

    monkeypatch.setattr(bootstrap_module, "batched_lbfgs", recording)
    x = design(6, [5, 10, 20, 80])
    for law_name in ("chinchilla", "kaplan"):
        starts.clear()
        law = get_law(law_name)
        result = fit_law(law, x, noisy(x, TRUTH), bootstrap=20, seed=1)
        pmap = ParameterMap.build(law)
        point = pmap.z_from_theta(result.theta[None, :])[0]
        assert starts, law_name
        every_start = np.vstack(starts)
        gap = np.min(np.max(np.abs(every_start - point), axis=1))
        assert gap > 1e-6, f"{law_name}: a bootstrap refit started at the point estimate"
        # chinchilla: one optimised start per resample's lattice minimum (the lattice itself is
        # searched by projection); kaplan: every start of its grid, per resample
        per_resample = 1 if law_name == "chinchilla" else len(law.initial_grid())
        assert every_start.shape[0] >= per_resample * 20


def test_exploring_refits_match_independent_full_fits() -> None:
    """A resample's refit equals a from-scratch fit of the same resampled data."""
    law = get_law("chinchilla")
    x = design(5, [5, 20, 80])
    y = noisy(x, TRUTH, seed=3)
    result = fit_law(law, x, y, bootstrap=8, seed=4, bootstrap_kind="cases")
    rng = np.random.default_rng(4)
    draws = rng.integers(0, y.size, size=(8, y.size))
    for b in range(3):
        weights = np.bincount(draws[b], minlength=y.size).astype(float)
        alone = fit_law(law, x, y, weights=weights)
        refit = result.bootstrap_params[b]
        assert law.predict(refit, x) == pytest.approx(alone.predict(x), rel=2e-3)


def test_prediction_interval_adds_run_to_run_noise() -> None:
    law = get_law("chinchilla")
    x = design(6, [5, 10, 20, 80])
    result = fit_law(law, x, noisy(x, TRUTH), bootstrap=100, seed=0)
    assert result.noise is not None
    assert result.noise.sd_log == pytest.approx(0.01, rel=0.5)
    point = {"params": [1e10], "tokens": [2e11]}
    c_lo, c_hi = result.predict_interval(point, 0.9, kind="confidence")
    p_lo, p_hi = result.predict_interval(point, 0.9, kind="prediction")
    assert p_lo[0] < c_lo[0] < c_hi[0] < p_hi[0]
    assert result.predict_interval(point, 0.9)[0][0] == p_lo[0]  # prediction is the default
    with pytest.raises(FitError, match="interval kind"):
        result.predict_interval(point, kind="both")  # type: ignore[arg-type]
    ratio = result.extrapolation_ratio(point)
    assert ratio is not None and ratio[0] > 10
    codes = {d.code for d in result.forecast_diagnostics(point)}
    assert "extrapolation" in codes


def test_noise_from_repeated_seeds() -> None:
    law = get_law("chinchilla")
    x = design(5, [5, 20, 80])
    # every run repeated with a second seed: their spread measures the run-to-run noise
    both = {k: np.concatenate([v, v]) for k, v in x.items()}
    y = noisy(both, TRUTH, seed=5)
    result = fit_law(law, both, y, groups=np.arange(y.size))
    assert result.noise is not None and result.noise.source == "seeds"
    assert result.noise.dof == x["params"].size


def test_auto_bootstrap_kind_follows_the_number_of_runs() -> None:
    law = get_law("chinchilla")
    few = design(5, [5, 20, 80])
    assert fit_law(law, few, noisy(few, TRUTH), bootstrap=5).options["bootstrap_kind"] == (
        "parametric"
    )
    many = design(10, [2, 5, 10, 20, 40, 80])
    result = fit_law(law, many, noisy(many, TRUTH), bootstrap=5)
    assert result.options["bootstrap_kind"] == "cases"
    with pytest.raises(FitError, match="bootstrap kind"):
        fit_law(law, few, noisy(few, TRUTH), bootstrap=5, bootstrap_kind="jackknife")
    with pytest.raises(FitError, match="bootstrap must be between"):
        fit_law(law, few, noisy(few, TRUTH), bootstrap=10_000_000)


def test_bootstrap_fits_equals_fit_law_with_bootstrap() -> None:
    law = get_law("chinchilla")
    x = design(5, [5, 20, 80])
    ys = [noisy(x, TRUTH, seed=s) for s in range(3)]
    together = bootstrap_fits([fit_law(law, x, y, seed=s) for s, y in enumerate(ys)], x, ys, 30)
    for s, y in enumerate(ys):
        alone = fit_law(law, x, y, bootstrap=30, seed=s)
        np.testing.assert_allclose(together[s].bootstrap_params, alone.bootstrap_params)


def test_a_clean_fit_raises_no_flag() -> None:
    x = design(6, [5, 10, 20, 80])
    result = fit_law(get_law("chinchilla"), x, noisy(x, TRUTH), bootstrap=100)
    assert result.diagnostics == []


def test_a_collapsed_floor_is_flagged() -> None:
    # losses with no floor at all: E has nothing to fit and runs towards 0
    x = design(5, [5, 20, 80])
    y = noisy(x, TRUTH | {"E": 1e-9})
    result = fit_law(get_law("chinchilla"), x, y, bootstrap=50)
    codes = {d.code for d in result.diagnostics}
    assert "floor_collapsed" in codes
    flag = next(d for d in result.diagnostics if d.code == "floor_collapsed")
    assert flag.parameter == "E" and "fix E" in flag.advice


def test_a_floor_above_the_data_and_a_bound_are_flagged() -> None:
    law = get_law("shifted_power")
    loss_x = np.linspace(2.0, 3.0, 12)
    theta = law.theta_vector({"K": 0.6, "kappa": 1.1, "E_x": 2.1, "E_y": 1.0})
    pmap = ParameterMap.build(law)
    flags = diagnose(
        law,
        pmap,
        theta,
        {"loss_x": loss_x},
        np.full(12, 2.5),
        np.ones(12),
        n_groups=12,
        converged=True,
        near_ties=[],
        bootstrap=None,
        bootstrap_failed=0,
    )
    above = [d for d in flags if d.code == "floor_above_data"]
    assert [d.parameter for d in above] == ["E_x"]
    assert "loss_x" in above[0].message


def test_ill_conditioned_fit_is_flagged() -> None:
    # one model size: A and alpha cannot be told apart from E
    x = {"params": np.full(12, 1e8), "tokens": np.geomspace(1e9, 1e11, 12)}
    y = noisy(x, TRUTH)
    result = fit_law(get_law("chinchilla"), x, y, fixed={"E": 1.8, "B": 2085.0, "beta": 0.366})
    codes = {d.code for d in result.diagnostics}
    assert "ill_conditioned" in codes
    assert all(isinstance(d, Diagnostic) and d.advice for d in result.diagnostics)


def test_too_few_runs_per_parameter_is_flagged() -> None:
    x = design(3, [5, 20, 80])
    result = fit_law(get_law("chinchilla"), x, noisy(x, TRUTH))
    assert "few_runs" in {d.code for d in result.diagnostics}


def test_fit_json_keeps_diagnostics_noise_and_checks_its_content(tmp_path: Path) -> None:
    x = design(5, [5, 20, 80])
    result = fit_law(get_law("chinchilla"), x, noisy(x, TRUTH | {"E": 1e-9}), bootstrap=20)
    path = tmp_path / "fit.json"
    result.save(path)
    again = Fit.load(path)
    assert again.diagnostics == result.diagnostics
    assert again.noise == result.noise
    assert again.data_range == result.data_range
    data = json.loads(path.read_text())
    for change, message in (
        ({"scalinglab_fit": 99}, "newer scalinglab"),
        ({"scalinglab_fit": "x"}, "format version"),
        ({"params": data["params"] | {"E": float("nan")}}, "'E' must be finite"),
        ({"params": data["params"] | {"alpha": -1.0}}, "'alpha' must be finite and within"),
        ({"params": {"E": 1.0}}, "no value for"),
        ({"bootstrap_params": [[1.0, 2.0]]}, "bootstrap_params"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data | change))
        with pytest.raises(InputError, match=message):
            Fit.load(bad)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(InputError, match=r"nested too deeply|not valid JSON"):
        Fit.load(deep)
    with pytest.raises(InputError, match="directory"):
        Fit.load(tmp_path)


def store_with_checkpoints(path: Path) -> RunStore:
    """Runs of two schedules at 5 sizes × 3 budgets, each with 5 checkpoints on 'code'."""
    law = get_law("chinchilla")
    store = RunStore(path)
    rng = np.random.default_rng(0)
    rows = []
    for schedule in ("cosine", "constant"):
        for n in np.geomspace(1e7, 4e8, 5):
            for ratio in (5.0, 20.0, 80.0):
                run_id = f"n{n:.3g}-r{ratio:g}-{schedule}"
                total = n * ratio
                store.add_run(
                    run_id,
                    {"schedule": f"{schedule}:peak=1e-3,warmup=10,total=1000"},
                    family=f"sweep-{schedule}-adamw",
                )
                for step in (200, 400, 600, 800, 1000):
                    tokens = total * step / 1000
                    # a decaying schedule's checkpoints sit above the law until the end
                    bump = 1.0 + (0.03 * (1 - step / 1000) if schedule == "cosine" else 0.01)
                    loss = law.predict(TRUTH, {"params": [n], "tokens": [tokens]})[0] * bump
                    rows.append(
                        {
                            "run_id": run_id,
                            "step": step,
                            "tokens": tokens,
                            "params": n,
                            "lr": 1e-3,
                            "dataset": "code",
                            "loss": loss * float(np.exp(rng.normal(0, 0.003))),
                        }
                    )
    store.add_observations(rows)
    return store


def test_fit_on_a_run_store_uses_each_runs_final_loss(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store_with_checkpoints(path)
    res = runner.invoke(app, ["fit", str(path), "--dataset", "code", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    # one recipe (the more measured family: both tie, so the first), final losses only
    assert payload["n_points"] == 15
    assert any("last measurement" in note for note in payload["notes"])
    assert any("family" in note for note in payload["notes"])
    every = runner.invoke(
        app, ["fit", str(path), "--dataset", "code", "--all-checkpoints", "--json"]
    )
    assert json.loads(every.stdout)["n_points"] == 75
    chosen = runner.invoke(
        app, ["fit", str(path), "--dataset", "code", "--schedule", "constant", "--json"]
    )
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["n_points"] == 15
    by_run = runner.invoke(
        app,
        ["fit", str(path), "--dataset", "code", "--run", "*-cosine", "--min-tokens", "1e8"],
    )
    assert by_run.exit_code == 0, by_run.output
    missing = runner.invoke(app, ["fit", str(path), "--dataset", "code", "--schedule", "wsd"])
    assert missing.exit_code == 2
    assert "no run has a 'wsd' schedule" in missing.output


def test_fit_prints_flags_and_noise(tmp_path: Path) -> None:
    x = design(5, [5, 20, 80])
    table = pd.DataFrame(
        {"run_id": [f"r{i}" for i in range(15)], **x, "loss": noisy(x, TRUTH | {"E": 1e-9})}
    )
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    res = runner.invoke(app, ["fit", str(path), "--bootstrap", "30"])
    assert res.exit_code == 0, res.output
    assert "flag:" in res.output and "collapsed" in res.output
    assert "run-to-run noise" in res.output
    assert "95% CI (parametric bootstrap)" in res.output
