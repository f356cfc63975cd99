"""Kaplan ↔ Chinchilla conversions (Pearce & Song 2024)."""

from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import InputError
from scalinglab.planning import (
    allocation_exponents,
    count_params,
    embedding_gamma,
    implied_allocation_exponent,
    kaplan_exponent_from_chinchilla,
    nonembedding_from_total,
    total_from_nonembedding,
    total_param_slope,
)

# Pearce & Song's setting: 32k vocabulary, aspect ratio 39.2, Epoch's Chinchilla exponents
GAMMA = embedding_gamma(39.2, 32000)
ALPHA, BETA = 0.3478, 0.3658
# Kaplan et al. 2020: N_opt = 1.3e9 · (C in PF-days)^0.73, in non-embedding parameters
KAPLAN_EXPONENT = 0.73
KAPLAN_COEFFICIENT = 1.3e9 / (8.64e19) ** KAPLAN_EXPONENT  # per FLOP


def test_gamma_matches_pearce_and_song_and_a_real_model_count() -> None:
    assert GAMMA == pytest.approx(47491, rel=1e-3)
    # a GPT with d_model = 40·layers: Kaplan's 12·L·d² plus embeddings of vocab rows
    layers, d_model = 24, 960
    count = count_params(d_model, layers, 32000, 2048, positions="rotary", bias=False)
    gamma = embedding_gamma(d_model / layers, 32000)
    approx = total_from_nonembedding(12 * layers * d_model**2, gamma)
    assert approx == pytest.approx(count.total, rel=1e-3)


def test_total_and_nonembedding_are_inverse() -> None:
    n = np.geomspace(1e2, 1e14, 25)
    roundtrip = nonembedding_from_total(total_from_nonembedding(n, GAMMA), GAMMA)
    np.testing.assert_allclose(roundtrip, n, rtol=1e-12)
    assert nonembedding_from_total(5.0, 0.0) == pytest.approx(5.0)


def test_slope_is_between_a_third_and_one() -> None:
    slope = total_param_slope(np.geomspace(1e3, 1e15, 13), GAMMA)
    assert (np.diff(slope) > 0).all()
    assert slope[0] == pytest.approx(1 / 3, abs=0.01) and slope[-1] == pytest.approx(1, abs=1e-3)
    # numerically: d log N_T / d log N_E
    n, h = 1e8, 1e-5
    numeric = (
        np.log(total_from_nonembedding(n * np.exp(h), GAMMA))
        - np.log(total_from_nonembedding(n * np.exp(-h), GAMMA))
    ) / (2 * h)
    assert total_param_slope(n, GAMMA) == pytest.approx(numeric, rel=1e-6)


def test_kaplan_exponent_maps_to_a_smaller_total_exponent_at_small_budgets() -> None:
    flops = np.geomspace(1e15, 1e27, 13)
    total = implied_allocation_exponent(
        KAPLAN_EXPONENT, flops, coefficient=KAPLAN_COEFFICIENT, gamma=GAMMA
    )
    assert (total < KAPLAN_EXPONENT).all()
    assert (np.diff(total) > 0).all()  # trends up towards 0.73
    assert total[0] < 0.5 and total[-1] == pytest.approx(KAPLAN_EXPONENT, abs=0.005)
    # and back: a total-parameter fit through the same optimum at 1e20 FLOPs with the
    # implied exponent implies Kaplan's exponent again
    local = float(
        implied_allocation_exponent(
            KAPLAN_EXPONENT, 1e20, coefficient=KAPLAN_COEFFICIENT, gamma=GAMMA
        )
    )
    n_total = float(total_from_nonembedding(KAPLAN_COEFFICIENT * 1e20**KAPLAN_EXPONENT, GAMMA))
    back = implied_allocation_exponent(
        local, 1e20, coefficient=n_total / 1e20**local, gamma=GAMMA, source="total"
    )
    assert back == pytest.approx(KAPLAN_EXPONENT, rel=1e-9)


def brute_force_kaplan_exponent(n_nonemb: float, log_step: float = 0.05) -> float:
    """Local slope of the Kaplan-optimal non-embedding size under a Chinchilla law in N_T."""
    big_a, big_b = 482.01, 2085.43

    def optimum(c_nonemb: float) -> float:
        x = np.exp(np.linspace(np.log(n_nonemb) - 3, np.log(n_nonemb) + 3, 200_001))
        loss = (
            big_a * total_from_nonembedding(x, GAMMA) ** -ALPHA
            + big_b * (c_nonemb / (6 * x)) ** -BETA
        )
        return float(x[np.argmin(loss)])

    # the compute at which n_nonemb is optimal (first-order condition, solved for C)
    slope_emb = total_param_slope(n_nonemb, GAMMA)
    n_total = total_from_nonembedding(n_nonemb, GAMMA)
    tokens = (BETA * big_b / (ALPHA * big_a * slope_emb) * n_total**ALPHA) ** (1 / BETA)
    c = 6 * n_nonemb * tokens
    assert optimum(c) == pytest.approx(n_nonemb, rel=1e-3)
    up, down = optimum(c * np.exp(log_step)), optimum(c * np.exp(-log_step))
    return float(np.log(up / down) / (2 * log_step))


@pytest.mark.parametrize("n_nonemb", [1e4, 1e6, 1e8, 1e10])
def test_pearce_song_exponent_matches_brute_force(n_nonemb: float) -> None:
    expected = brute_force_kaplan_exponent(n_nonemb)
    assert kaplan_exponent_from_chinchilla(ALPHA, BETA, n_nonemb, GAMMA) == pytest.approx(
        expected, abs=0.005
    )


def test_pearce_song_exponent_limits() -> None:
    small, large = kaplan_exponent_from_chinchilla(ALPHA, BETA, np.array([1e-3, 1e20]), GAMMA)
    assert small == pytest.approx(BETA / (ALPHA / 3 + BETA), abs=1e-3)
    assert large == pytest.approx(allocation_exponents(ALPHA, BETA)[0], abs=1e-3)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InputError, match="aspect_ratio"):
        embedding_gamma(0.0, 32000)
    with pytest.raises(InputError, match="n_total"):
        nonembedding_from_total(-1.0, GAMMA)
    with pytest.raises(InputError, match="gamma"):
        total_from_nonembedding(1e6, -1.0)
    with pytest.raises(InputError, match="source"):
        implied_allocation_exponent(0.5, 1e20, coefficient=1.0, gamma=GAMMA, source="kaplan")  # type: ignore[arg-type]
