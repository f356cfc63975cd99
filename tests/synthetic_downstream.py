"""Synthetic runs with known truth, and a gradient check, for the over-training and
downstream tests.

25 runs: five sizes (1e7 to 1e9 parameters) at five multipliers (10 to 160 tokens per
parameter); the loss follows Gadre et al.'s over-training law with 0.2% lognormal scatter.
Three tasks: ``clean`` follows ``ε − k·exp(−γL)`` with binomial noise of 4,000 examples,
``at_chance`` stays at its chance accuracy of 0.25, and ``unrelated`` wanders independently of
the loss (open-ended, chance 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.laws import get_law
from scalinglab.laws.base import Law

LOSS_TRUTH = {"E": 1.9, "a": 60.0, "b": 400.0, "eta": 0.14}
ERROR_TRUTH = {"epsilon": 0.9, "k": 8.0, "gamma": 1.4}
SIZES = (1e7, 3e7, 1e8, 3e8, 1e9)
MULTIPLIERS = (10, 20, 40, 80, 160)
EXAMPLES = 4000


def runs(seed: int = 0, scatter: float = 0.002) -> pd.DataFrame:
    """One row per run: run_id, params, tokens, flops, multiplier, loss (nats)."""
    rng = np.random.default_rng(seed)
    grid = [(n, m) for n in SIZES for m in MULTIPLIERS]
    params = np.array([n for n, _ in grid])
    mult = np.array([float(m) for _, m in grid])
    flops = 6.0 * params * params * mult
    loss = get_law("overtraining").predict(LOSS_TRUTH, {"flops": flops, "multiplier": mult})
    return pd.DataFrame(
        {
            "run_id": [f"n{n:.0e}-m{m}" for n, m in grid],
            "params": params,
            "tokens": params * mult,
            "loss": loss * np.exp(scatter * rng.standard_normal(loss.size)),
        }
    )


def true_error(loss: np.ndarray) -> np.ndarray:
    """The clean task's error at a loss."""
    return get_law("error_exp").predict(ERROR_TRUTH, {"loss": np.asarray(loss, dtype=float)})


def wide(seed: int = 0) -> pd.DataFrame:
    """Runs with one accuracy column per task."""
    rng = np.random.default_rng(seed + 1)
    table = runs(seed)
    n = len(table)
    table["clean"] = 1.0 - rng.binomial(EXAMPLES, true_error(table["loss"].to_numpy())) / EXAMPLES
    table["at_chance"] = rng.binomial(EXAMPLES, 0.25, n) / EXAMPLES
    table["unrelated"] = rng.uniform(0.3, 0.5, n)
    return table


def long(seed: int = 0) -> pd.DataFrame:
    """The same evaluations as (run_id, task, value) rows with chance, examples and a group."""
    table = wide(seed)
    rows = table.melt(
        id_vars=["run_id"], value_vars=["clean", "at_chance", "unrelated"], var_name="task"
    )
    rows["random_baseline"] = rows["task"].map({"clean": 0.0, "at_chance": 0.25, "unrelated": 0.0})
    rows["num_examples"] = EXAMPLES
    rows["in_pair"] = rows["task"].isin(["clean", "at_chance"])
    return rows


def assert_gradients(law: Law, theta: np.ndarray, x: dict[str, np.ndarray]) -> None:
    """The law's gradient in θ against central finite differences."""
    _, grad = law.log_predict(theta, x, grad=True)
    for j in range(theta.shape[1]):
        step = 1e-6 * theta[:, j]
        up, down = theta.copy(), theta.copy()
        up[:, j] += step
        down[:, j] -= step
        numeric = (law.log_predict(up, x) - law.log_predict(down, x)) / (2 * step[:, None])
        np.testing.assert_allclose(grad[:, :, j], numeric, rtol=1e-5, atol=1e-9)
