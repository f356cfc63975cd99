"""Variable projection: exact linear coefficients per lattice point, and lattice minima."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.fitting import fit_law
from scalinglab.fitting.parameters import ParameterMap
from scalinglab.fitting.projection import lattice_minima, project_starts
from scalinglab.laws import get_law

TRUE = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}


def clean_data(n: int = 60) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    x = {
        "params": np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n)),
        "tokens": np.exp(rng.uniform(np.log(5e9), np.log(5e11), n)),
    }
    return x, get_law("chinchilla").predict(TRUE, x)


def as_theta(law, pmap: ParameterMap, z: np.ndarray) -> dict[str, np.ndarray]:
    theta = pmap.theta(z)
    return {n: theta[:, i] for i, n in enumerate(law.param_names)}


def test_noise_free_data_give_the_true_coefficients_at_the_true_exponents() -> None:
    law = get_law("chinchilla")
    x, y = clean_data()
    pmap = ParameterMap.build(law)
    grid = {"alpha": [0.2, TRUE["alpha"], 0.6], "beta": [0.2, TRUE["beta"], 0.6]}
    z0 = pmap.z_from_theta(
        np.array([[1.0, 1.0, a, 1.0, b] for a in grid["alpha"] for b in grid["beta"]])
    )
    lattice = project_starts(law, pmap, z0, x, y, np.ones_like(y))
    assert lattice is not None and lattice.shape == (3, 3) and lattice.z.shape == (9, 5)
    theta = as_theta(law, pmap, lattice.z)
    centre = 4  # row-major: (alpha index 1, beta index 1)
    for name in ("E", "A", "B"):
        assert theta[name][centre] == pytest.approx(TRUE[name], rel=1e-8)
    assert theta["alpha"][centre] == pytest.approx(TRUE["alpha"])


def test_fixed_and_tied_parameters_are_respected() -> None:
    law = get_law("chinchilla")
    x, y = clean_data()
    # E fixed at its true value: A and B are still solved for exactly
    pmap = ParameterMap.build(law, fixed={"E": TRUE["E"]})
    z0 = pmap.z_from_theta(np.array([[TRUE["E"], 1.0, TRUE["alpha"], 1.0, TRUE["beta"]]]))
    lattice = project_starts(law, pmap, z0, x, y, np.ones_like(y))
    assert lattice is not None
    theta = as_theta(law, pmap, lattice.z)
    assert theta["A"][0] == pytest.approx(TRUE["A"], rel=1e-8)
    assert theta["B"][0] == pytest.approx(TRUE["B"], rel=1e-8)
    # beta tied to alpha: a one-dimensional lattice over alpha
    pmap = ParameterMap.build(law, tie={"beta": "alpha"})
    z0 = pmap.z_from_theta(np.array([[1.0, 1.0, a, 1.0, a] for a in (0.2, 0.35, 0.5)]))
    lattice = project_starts(law, pmap, z0, x, y, np.ones_like(y))
    assert lattice is not None and lattice.shape == (3,)
    # every linear coefficient fixed: nothing to project
    pmap = ParameterMap.build(law, fixed={"E": 1.8, "A": 400.0, "B": 2000.0})
    z0 = pmap.z_from_theta(np.array([[1.8, 400.0, 0.3, 2000.0, 0.3]]))
    assert project_starts(law, pmap, z0, x, y, np.ones_like(y)) is None
    # a law with no linear coefficients is never projected
    kaplan = get_law("kaplan")
    pmap = ParameterMap.build(kaplan)
    assert project_starts(kaplan, pmap, np.zeros((1, 4)), x, y, np.ones_like(y)) is None


def test_coefficients_stay_non_negative() -> None:
    law = get_law("chinchilla")
    x, _ = clean_data()
    # a loss that grows with N wants A < 0 at positive alpha: the start keeps A small instead
    y_up = 2.0 + 1e-3 * x["params"] ** 0.3
    pmap = ParameterMap.build(law)
    z0 = pmap.z_from_theta(np.array([[1.0, 1.0, 0.3, 1.0, 0.3]]))
    lattice = project_starts(law, pmap, z0, x, y_up, np.ones_like(y_up))
    assert lattice is not None
    theta = as_theta(law, pmap, lattice.z)
    assert all(theta[n][0] > 0 for n in ("E", "A", "B"))
    # A sits at its floor: its term is a thousandth of the loss, free to grow in the fit
    assert theta["A"][0] * np.mean(x["params"] ** -0.3) < 2e-3 * np.mean(y_up)


def test_lattice_minima_finds_each_basin_best_first() -> None:
    values = np.array(
        [
            [5.0, 5.5, 6.0, 7.0],
            [3.0, 4.5, 6.5, 2.0],
            [4.0, 5.0, 6.0, 2.5],
        ]
    )
    rows = lattice_minima(values.reshape(-1), values.shape)
    assert list(rows) == [7, 4]  # 2.0 at (1, 3), then 3.0 at (1, 0)
    # without a lattice shape every finite point is a candidate
    assert list(lattice_minima(np.array([2.0, np.nan, 1.0]), None)) == [2, 0]


def test_projection_and_full_search_agree_with_a_fixed_exponent() -> None:
    law = get_law("chinchilla")
    x, y = clean_data()
    y = y * np.exp(np.random.default_rng(1).normal(0, 0.01, y.size))
    fast = fit_law(law, x, y, fixed={"alpha": 0.34})
    full = fit_law(law, x, y, fixed={"alpha": 0.34}, search="full")
    assert fast.options["search"] == "projection"
    assert fast.objective <= full.objective * (1 + 1e-9)


def test_a_minimum_on_the_lattice_edge_falls_back_on_the_grid() -> None:
    # alpha = 2.7 lies beyond the law's exponent grid (0 to 2): the lattice's best point sits
    # on its edge, so the engine also runs the grid, the polished point among its starts
    law = get_law("params_only")
    rng = np.random.default_rng(2)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 40))
    y = (2.0 + 1e8**2.7 * n**-2.7) * np.exp(rng.normal(0, 0.002, n.size))
    fast = fit_law(law, {"params": n}, y)
    full = fit_law(law, {"params": n}, y, search="full")
    assert fast.options["search"].startswith("projection+")
    assert fast.params["alpha"] == pytest.approx(2.7, rel=0.02)
    assert fast.objective <= full.objective * (1 + 1e-9)
