"""Compute-optimal plans: closed form, numeric minimisation, bootstrap intervals, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.fitting import Fit, fit
from scalinglab.laws import get_law
from scalinglab.laws.base import Law
from scalinglab.laws.compute import Chinchilla
from scalinglab.planning import allocation_exponents, compute_optimal

# Besiroglu et al. 2024's refit of the Chinchilla data (shared/data/README.md)
BESIROGLU = {"E": 1.817, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}
CHINCHILLA_FLOPS = 5.88e23  # Chinchilla's own training budget


class NumericChinchilla(Chinchilla):
    """Chinchilla's form under another name, so that the planner minimises it numerically."""

    name = "chinchilla_numeric"


def make_fit(law: Law, params: dict[str, float], replicates: int = 0, seed: int = 0) -> Fit:
    """A Fit whose bootstrap replicates scatter the parameters by about 5%."""
    boot = None
    if replicates:
        rng = np.random.default_rng(seed)
        theta = law.theta_vector(params)
        boot = theta * np.exp(rng.normal(0.0, 0.05, (replicates, theta.size)))
    return Fit(
        law=law,
        params=dict(params),
        objective=0.0,
        converged=True,
        n_points=1,
        n_groups=1,
        n_starts=1,
        bootstrap_params=boot,
    )


def test_besiroglu_parameters_give_about_18_tokens_per_param() -> None:
    plan = compute_optimal(BESIROGLU, CHINCHILLA_FLOPS)
    assert plan.tokens_per_param[0] == pytest.approx(17.88, abs=0.05)
    assert 6 * plan.params[0] * plan.tokens[0] == pytest.approx(CHINCHILLA_FLOPS, rel=1e-12)
    law = get_law("chinchilla")
    expected_loss = law.predict(BESIROGLU, {"params": plan.params, "tokens": plan.tokens})
    assert plan.loss[0] == pytest.approx(expected_loss[0], rel=1e-12)
    a, b = allocation_exponents(BESIROGLU["alpha"], BESIROGLU["beta"])
    assert (plan.params_exponent, plan.tokens_exponent) == pytest.approx((a, b))
    assert plan.ci == {} and plan.n_samples == 0


def test_closed_form_is_the_minimum_along_the_isoflop_line() -> None:
    plan = compute_optimal(BESIROGLU, [1e19, 1e22])
    law = get_law("chinchilla")
    for flops, n_opt, loss in zip(plan.flops, plan.params, plan.loss, strict=True):
        sizes = n_opt * np.array([0.8, 0.95, 1.05, 1.25])
        nearby = law.predict(BESIROGLU, {"params": sizes, "tokens": flops / (6 * sizes)})
        assert (nearby > loss).all()


def test_allocation_exponents_sum_to_one() -> None:
    a, b = allocation_exponents(0.34, 0.28)
    assert a == pytest.approx(0.28 / 0.62) and a + b == pytest.approx(1.0)
    with pytest.raises(InputError, match="positive"):
        allocation_exponents(0.0, 0.3)


def test_numeric_minimisation_matches_closed_form_with_replicates() -> None:
    budgets = [1e18, 1e21, CHINCHILLA_FLOPS]
    exact = compute_optimal(make_fit(get_law("chinchilla"), BESIROGLU, 200), budgets)
    numeric = compute_optimal(make_fit(NumericChinchilla(), BESIROGLU, 200), budgets)
    assert numeric.law == "chinchilla_numeric" and numeric.params_exponent is None
    np.testing.assert_allclose(numeric.params, exact.params, rtol=1e-4)
    np.testing.assert_allclose(numeric.loss, exact.loss, rtol=1e-8)
    for name in ("params", "tokens", "tokens_per_param", "loss"):
        np.testing.assert_allclose(numeric.ci[name], exact.ci[name], rtol=1e-3)


def test_intervals_bracket_the_estimate_and_follow_the_level() -> None:
    plan = compute_optimal(make_fit(get_law("chinchilla"), BESIROGLU, 300), [1e20, 1e23])
    narrow = compute_optimal(
        make_fit(get_law("chinchilla"), BESIROGLU, 300), [1e20, 1e23], level=0.5
    )
    assert plan.n_samples == 300
    for name in ("params", "tokens", "tokens_per_param", "loss"):
        lo, hi = plan.ci[name]
        n_lo, n_hi = narrow.ci[name]
        assert (lo < getattr(plan, name)).all() and (getattr(plan, name) < hi).all(), name
        assert (lo <= n_lo).all() and (n_hi <= hi).all(), name
    lo, hi = plan.ci["params_exponent"]
    assert lo < plan.params_exponent < hi
    records = plan.to_dict()["budgets"]
    assert records[1]["tokens_lo"] < records[1]["tokens"] < records[1]["tokens_hi"]


def test_kaplan_lse_optimum_against_a_dense_scan() -> None:
    law = get_law("kaplan_lse")
    params = {"E": 1.7, "A": 2e8, "B": 5e9, "alpha": 0.34, "beta": 0.28}
    flops = 1e21
    plan = compute_optimal(make_fit(law, params), flops)
    sizes = np.geomspace(1e6, 1e13, 200_001)
    losses = law.predict(params, {"params": sizes, "tokens": flops / (6 * sizes)})
    assert plan.params[0] == pytest.approx(sizes[np.argmin(losses)], rel=1e-3)
    assert plan.loss[0] == pytest.approx(losses.min(), rel=1e-9)


def test_replicates_without_an_optimum_are_left_out_with_a_warning() -> None:
    law = NumericChinchilla()
    fit_ = make_fit(law, BESIROGLU, 50)
    assert fit_.bootstrap_params is not None
    fit_.bootstrap_params[:5, law.param_names.index("alpha")] = 0.0  # loss flat in N
    plan = compute_optimal(fit_, 1e21)
    assert plan.n_samples == 45
    assert any("5 of 50" in w for w in plan.warnings)


def test_flops_per_token_param_scales_the_budget() -> None:
    six = compute_optimal(BESIROGLU, 1.2e22)
    eight = compute_optimal(BESIROGLU, 1.6e22, flops_per_token_param=8.0)
    np.testing.assert_allclose(eight.params, six.params)
    np.testing.assert_allclose(eight.tokens, six.tokens)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"flops": -1.0}, InputError, "positive"),
        ({"flops": [1e20, float("nan")]}, InputError, "positive"),
        ({"flops": 1e20, "flops_per_token_param": 0.0}, InputError, "flops_per_token_param"),
        ({"flops": 1e20, "level": 1.5}, InputError, "level"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        compute_optimal(BESIROGLU, **kwargs)


def test_laws_without_an_allocation_are_refused() -> None:
    with pytest.raises(InputError, match="missing beta"):
        compute_optimal({k: v for k, v in BESIROGLU.items() if k != "beta"}, 1e20)
    compute_law = make_fit(get_law("compute"), {"E": 1.7, "A": 1e3, "alpha": 0.05})
    with pytest.raises(FitError, match="params and tokens"):
        compute_optimal(compute_law, 1e20)
    flat = make_fit(NumericChinchilla(), {**BESIROGLU, "alpha": 0.0})
    with pytest.raises(FitError, match="no compute-optimal model size"):
        compute_optimal(flat, 1e20)
    with pytest.raises(FitError, match="no compute-optimal model size"):
        compute_optimal({**BESIROGLU, "beta": 0.0}, 1e20)


def test_plan_from_a_real_fit_of_the_chinchilla_data(shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "chinchilla" / "svg_extracted_data.csv")
    raw = raw.sort_values("loss").iloc[:-5]  # Besiroglu et al. drop the 5 highest losses
    table = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(raw))],
            "params": raw["Model Size"].to_numpy(float),
            "tokens": raw["Training FLOP"].to_numpy(float)
            / (6 * raw["Model Size"].to_numpy(float)),
            "loss": raw["loss"].to_numpy(float),
        }
    )
    plan = compute_optimal(fit(table, "chinchilla", bootstrap=20, seed=0), CHINCHILLA_FLOPS)
    assert plan.tokens_per_param[0] == pytest.approx(18.0, abs=0.5)
    lo, hi = plan.ci["tokens_per_param"]
    assert lo[0] < plan.tokens_per_param[0] < hi[0]
