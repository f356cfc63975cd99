"""Built-in example data that the project generates itself (no download, no reference files).

The example is an isoFLOP sweep in the style of Hoffmann et al. 2022: for each compute budget,
several model sizes trained for ``D = C / (6 N)`` tokens, with losses drawn from a known
Chinchilla law plus lognormal noise, so that a fit can be checked against the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Besiroglu et al. 2024's estimate of the Chinchilla law, used as the example's ground truth
CHINCHILLA_TRUTH = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}


def isoflop_sweep(
    budgets_flops: tuple[float, ...] = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    sizes_per_budget: int = 9,
    noise: float = 0.01,
    seed: int = 0,
) -> pd.DataFrame:
    """A synthetic isoFLOP sweep with losses from :data:`CHINCHILLA_TRUTH`.

    Parameters
    ----------
    budgets_flops
        Training compute of each isoFLOP curve, FLOPs (C = 6·N·D).
    sizes_per_budget
        Model sizes per budget, log-spaced around the compute-optimal size (÷8 … ×8).
    noise
        Standard deviation of the multiplicative lognormal noise on the loss.
    seed
        Random seed.

    Returns
    -------
    pandas.DataFrame
        Observations: ``run_id, family, params, tokens, flops, dataset, loss`` (one final
        loss per run, nats/token).
    """
    rng = np.random.default_rng(seed)
    t = CHINCHILLA_TRUTH
    a = t["beta"] / (t["alpha"] + t["beta"])
    g = (t["alpha"] * t["A"] / (t["beta"] * t["B"])) ** (1 / (t["alpha"] + t["beta"]))
    rows = []
    for c in budgets_flops:
        n_opt = g * (c / 6.0) ** a
        for n in n_opt * np.geomspace(1 / 8, 8, sizes_per_budget):
            d = c / (6.0 * n)
            clean = t["E"] + t["A"] / n ** t["alpha"] + t["B"] / d ** t["beta"]
            rows.append(
                {
                    "run_id": f"C{c:.0e}-N{n:.3g}",
                    "family": "example",
                    "params": float(np.round(n)),
                    "tokens": float(np.round(d)),
                    "flops": float(c),
                    "dataset": "train",
                    "loss": float(clean * np.exp(rng.normal(0.0, noise))),
                }
            )
    return pd.DataFrame(rows)
