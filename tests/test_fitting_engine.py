"""The fitting engine on synthetic data: recovery, options, gradients, diagnostics, JSON."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.fitting import Fit, fit_law
from scalinglab.fitting.optimize import batched_lbfgs
from scalinglab.laws import available_laws, get_law

TRUE = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}
# 32 starts: enough for synthetic data; the default 3,125-start grid is tested on its own
SMALL = {
    "E": [1.0, 2.0],
    "A": [100.0, 1e4],
    "alpha": [0.2, 0.5],
    "B": [100.0, 1e4],
    "beta": [0.2, 0.5],
}


def synthetic(n: int = 120, noise: float = 0.005, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {
        "params": np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n)),
        "tokens": np.exp(rng.uniform(np.log(5e9), np.log(5e11), n)),
    }
    clean = get_law("chinchilla").predict(TRUE, x)
    return x, clean * np.exp(rng.normal(0, noise, n))


@pytest.mark.parametrize(
    "name", ["chinchilla", "kaplan", "kaplan_lse", "compute", "params_only", "tokens_only"]
)
def test_gradients_match_finite_differences(name: str) -> None:
    law = get_law(name)
    rng = np.random.default_rng(1)
    x = {
        "params": np.exp(rng.uniform(17, 23, 7)),
        "tokens": np.exp(rng.uniform(21, 26, 7)),
        "flops": np.exp(rng.uniform(40, 50, 7)),
    }
    theta = np.array(
        [
            [
                rng.uniform(0.5, 3)
                if p.log_scale and p.name == "E"
                else (np.exp(rng.uniform(3, 12)) if p.log_scale else rng.uniform(0.1, 0.6))
                for p in law.parameters()
            ]
            for _ in range(3)
        ]
    )
    value, grad = law.log_predict(theta, x, grad=True)
    assert value.shape == (3, 7) and grad.shape == (3, 7, theta.shape[1])
    for j in range(theta.shape[1]):
        h = 1e-6 * max(abs(theta[0, j]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[:, j] += h
        down[:, j] -= h
        fd = (law.log_predict(up, x) - law.log_predict(down, x)) / (2 * h)
        np.testing.assert_allclose(grad[:, :, j], fd, rtol=1e-4, atol=1e-9)


def test_recovers_chinchilla_parameters() -> None:
    x, y = synthetic(noise=0.002)
    fit = fit_law(get_law("chinchilla"), x, y)
    assert fit.converged
    assert fit.params["E"] == pytest.approx(TRUE["E"], rel=0.02)
    assert fit.params["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05)
    assert fit.params["beta"] == pytest.approx(TRUE["beta"], rel=0.05)


def test_fast_search_finds_same_optimum_as_full_run() -> None:
    x, y = synthetic()
    law = get_law("chinchilla")
    fast = fit_law(law, x, y)
    full = fit_law(law, x, y, search="full")
    # the 3,125-start grid collapses onto its 25 exponent pairs, E, A, B solved at each
    assert fast.options["search"] == "projection" and full.options["search"] == "full"
    assert fast.objective <= full.objective * (1 + 1e-9)
    assert fast.n_starts == full.n_starts == 5**5
    assert fast.n_starts_dropped > 0 and full.n_starts_dropped == 0


def test_racing_finds_same_optimum_as_full_run_for_a_nonlinear_law() -> None:
    x, y = synthetic(n=60)
    law = get_law("kaplan_lse")  # not linear in any parameter: racing on its 720 starts
    raced = fit_law(law, x, y)
    full = fit_law(law, x, y, search="full")
    assert raced.options["search"] == "racing"
    assert raced.objective <= full.objective * (1 + 1e-6)
    assert raced.n_starts_dropped > 0


def test_fixed_tied_and_capped_parameters() -> None:
    x, y = synthetic()
    law = get_law("chinchilla")
    fixed = fit_law(law, x, y, fixed={"E": 1.9}, grid=SMALL)
    assert fixed.params["E"] == 1.9
    tied = fit_law(law, x, y, tie={"beta": "alpha"}, grid=SMALL)
    assert tied.params["beta"] == tied.params["alpha"]
    bounded = fit_law(law, x, y, bounds={"E": (0.0, 1.5)}, grid=SMALL)
    assert bounded.params["E"] <= 1.5 + 1e-12
    assert any("at its upper bound" in w for w in bounded.warnings)
    capped = fit_law(law, x, y - 0.5 * (y - y.min()), cap_irreducible=True)
    assert capped.params["E"] <= (y - 0.5 * (y - y.min())).min() + 1e-12


def test_overestimate_penalty_shifts_predictions_down() -> None:
    x, y = synthetic(noise=0.02)
    law = get_law("chinchilla")
    plain = fit_law(law, x, y, grid=SMALL)
    cautious = fit_law(law, x, y, overestimate_penalty=10.0, grid=SMALL)
    assert np.mean(cautious.predict(x) > y) < np.mean(plain.predict(x) > y)


def test_weights_and_squares_loss_run() -> None:
    x, y = synthetic()
    w = np.ones_like(y)
    w[:10] = 0.0
    fit = fit_law(get_law("chinchilla"), x, y, weights=w, loss="squares", grid=SMALL)
    assert np.isfinite(fit.objective)
    with pytest.raises(FitError, match="weights"):
        fit_law(get_law("chinchilla"), x, y, weights=-w, grid=SMALL)


def test_bootstrap_is_deterministic_and_resamples_groups() -> None:
    x, y = synthetic(n=80)
    groups = np.repeat(np.arange(20), 4)
    law = get_law("chinchilla")
    a = fit_law(law, x, y, groups=groups, bootstrap=50, seed=3, grid=SMALL)
    b = fit_law(law, x, y, groups=groups, bootstrap=50, seed=3, grid=SMALL)
    assert a.n_groups == 20
    assert a.bootstrap_params is not None and a.bootstrap_params.shape == (50, 5)
    np.testing.assert_array_equal(a.bootstrap_params, b.bootstrap_params)
    lo, hi = a.ci()["E"]
    assert lo <= a.params["E"] <= hi
    lo_pred, hi_pred = a.predict_interval({"params": [7e9], "tokens": [1.4e12]})
    assert lo_pred[0] < hi_pred[0]


def test_json_round_trip(tmp_path) -> None:
    x, y = synthetic(n=60)
    fit = fit_law(get_law("kaplan_lse"), x, y, bootstrap=20, max_iter=100)
    path = tmp_path / "fit.json"
    fit.save(path)
    back = Fit.load(path)
    assert back.params == fit.params and back.law.name == "kaplan_lse"
    np.testing.assert_array_equal(back.bootstrap_params, fit.bootstrap_params)
    np.testing.assert_allclose(back.predict(x), fit.predict(x))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a scalinglab fit"):
        Fit.load(tmp_path / "bad.json")


def test_clear_errors() -> None:
    law = get_law("chinchilla")
    x, y = synthetic(n=5)
    with pytest.raises(FitError, match="5 free parameters but the data have only 5"):
        fit_law(law, x, y)
    x, y = synthetic(n=30)
    y[3] = np.nan
    with pytest.raises(InputError, match="row 4"):
        fit_law(law, x, y)
    with pytest.raises(FitError, match="unknown law"):
        get_law("chinchila")
    with pytest.raises(FitError, match="no parameter gamma"):
        fit_law(law, *synthetic(n=30), fixed={"gamma": 1.0})
    assert "chinchilla" in available_laws()


@pytest.mark.parametrize("law_name", ["chinchilla", "kaplan_lse"])
def test_non_convergence_is_reported(law_name: str) -> None:
    x, y = synthetic(n=60)
    grid = SMALL if law_name == "chinchilla" else None
    fit = fit_law(get_law(law_name), x, y, max_iter=1, grid=grid)
    assert not fit.converged
    assert any("did not converge" in w for w in fit.warnings)
    assert fit.n_starts_converged < fit.n_starts


def test_batched_lbfgs_respects_bounds_on_quadratic() -> None:
    target = np.array([2.0, -3.0])

    def fun(z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.sum((z - target) ** 2, axis=1), 2 * (z - target)

    res = batched_lbfgs(
        fun, np.zeros((4, 2)) + np.arange(4)[:, None], np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    )
    np.testing.assert_allclose(
        res.z[res.merged_into < 0], [[1.0, -1.0]] * int(np.sum(res.merged_into < 0)), atol=1e-8
    )
