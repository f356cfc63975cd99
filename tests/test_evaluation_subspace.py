"""Reduced-parameter laws: relations and principal components learned from a collection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import FitError, InputError
from scalinglab.evaluation.subspace import (
    SubspaceLaw,
    coordinate_bounds,
    coordinate_name,
    pca_law,
    relation_law,
    to_coordinates,
)
from scalinglab.fitting import Fit
from scalinglab.laws import get_law

X = {"params": np.array([1e8, 4e8, 1.6e9, 6.4e9]), "tokens": np.array([2e9, 5e10, 3e10, 2e11])}


def collection(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """Fits where α = 0.1 + 0.04·log A and β = 0.05 + 0.03·log B exactly."""
    rng = np.random.default_rng(seed)
    log_a = rng.uniform(4, 9, n)
    log_b = rng.uniform(4, 9, n)
    return pd.DataFrame(
        {
            "E": rng.uniform(1.5, 2.0, n),
            "A": np.exp(log_a),
            "alpha": 0.1 + 0.04 * log_a,
            "B": np.exp(log_b),
            "beta": 0.05 + 0.03 * log_b,
        }
    )


def check_gradient(law: SubspaceLaw, c: np.ndarray) -> None:
    value, grad = law.log_predict(c[None, :], X, grad=True)
    step = 1e-6
    for j in range(c.size):
        up, down = c.copy(), c.copy()
        up[j] += step
        down[j] -= step
        numeric = (law.log_predict(up[None, :], X) - law.log_predict(down[None, :], X)) / (2 * step)
        np.testing.assert_allclose(grad[0, :, j], numeric[0], rtol=1e-5, atol=1e-8)
    assert value.shape == (1, 4)


def test_relation_law_learns_the_lines_and_has_exact_gradients() -> None:
    law = relation_law(collection())
    assert law.param_names == ("log_E", "log_A", "log_B")
    base = law.base_params({"log_E": np.log(1.8), "log_A": 6.0, "log_B": 5.0})
    assert base["alpha"] == pytest.approx(0.1 + 0.04 * 6.0)
    assert base["beta"] == pytest.approx(0.05 + 0.03 * 5.0)
    assert base["E"] == pytest.approx(1.8)
    check_gradient(law, np.array([0.5, 6.0, 5.0]))


def test_pca_law_spans_the_collection_and_has_exact_gradients() -> None:
    col = collection()
    law = pca_law(col, n_components=3)
    # E, log A, log B vary freely; alpha, beta follow: three directions hold everything
    assert "100.0% of variance" in law.description
    target = to_coordinates(law.base, col[list(law.base.param_names)].to_numpy()[:1])[0]
    coeffs, *_ = np.linalg.lstsq(law.basis, target - law.offset, rcond=None)
    np.testing.assert_allclose(law.offset + law.basis @ coeffs, target, atol=1e-8)
    check_gradient(law, np.array([0.3, -0.2, 0.1]))
    with pytest.raises(FitError, match="spans only"):
        pca_law(col, n_components=4)
    with pytest.raises(FitError, match="at least 6 fits"):
        pca_law(col.iloc[:3], n_components=5)


def test_default_subspace_is_the_base_law() -> None:
    law = SubspaceLaw()
    theta = np.array([[1.7, 400.0, 0.34, 410.0, 0.28]])
    coords = to_coordinates(law.base, theta)
    np.testing.assert_allclose(
        law.log_predict(coords, X), get_law("chinchilla").log_predict(theta, X)
    )
    assert law.param_names == ("log_E", "log_A", "alpha", "log_B", "beta")
    assert law.initial_grid().shape[0] == 5**5
    assert coordinate_name(law.base, "alpha") == "alpha"
    assert coordinate_bounds(law.base, "A")[0] == -np.inf


def test_subspace_fit_round_trips_through_json() -> None:
    law = relation_law(collection())
    fit = Fit(
        law=law,
        params={"log_E": 0.5, "log_A": 6.0, "log_B": 5.0},
        objective=0.0,
        converged=True,
        n_points=4,
        n_groups=4,
        n_starts=1,
    )
    again = Fit.from_dict(fit.to_dict())
    assert isinstance(again.law, SubspaceLaw)
    np.testing.assert_allclose(again.predict(X), fit.predict(X))
    assert again.law.description == law.description


def test_bad_collections_and_relations() -> None:
    with pytest.raises(InputError, match="lacks parameter"):
        relation_law(collection().drop(columns="beta"))
    with pytest.raises(FitError, match="has parameters"):
        relation_law(collection(), relations={"gamma": "A"})
    with pytest.raises(FitError, match="itself a dependent"):
        relation_law(collection(), relations={"alpha": "A", "A": "B"})
    with pytest.raises(FitError, match="needs a base law of params, tokens"):
        SubspaceLaw("compute")
