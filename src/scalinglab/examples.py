"""Built-in example data that the project generates itself (no download, no reference files).

The example is an isoFLOP sweep in the style of Hoffmann et al. 2022: for each compute budget,
several model sizes trained for ``D = C / (6 N)`` tokens, with losses drawn from a known
Chinchilla law plus lognormal noise, so that a fit can be checked against the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.user_input import check_finite, check_seed

#: Besiroglu et al. 2024's estimate of the Chinchilla law, used as the example's ground truth
CHINCHILLA_TRUTH = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}


#: ground truth of :func:`schedule_runs`: an annealing law (Tissue et al. 2024)
ANNEALING_TRUTH = {"L0": 2.6, "A": 0.45, "alpha": 0.5, "C": 0.35}
#: the second dataset's loss is ``K·(L − E_x)^κ + E_y`` of the first (Brandfonbrener et al.)
TRANSFER_TRUTH = {"K": 1.1, "kappa": 1.15, "E_x": 1.8, "E_y": 2.4}


def isoflop_sweep(
    budgets_flops: tuple[float, ...] = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21),
    sizes_per_budget: int = 9,
    noise: float = 0.01,
    seed: int = 0,
    held_out: bool = False,
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
    held_out
        Also measure every run on a second dataset, ``"held-out"``, whose loss follows
        :data:`TRANSFER_TRUTH` of the training loss.

    Returns
    -------
    pandas.DataFrame
        Observations: ``run_id, family, params, tokens, flops, dataset, loss`` (one final
        loss per run and dataset, nats/token).
    """
    check_seed(seed, "seed")
    noise = check_finite(noise, "noise", nonnegative=True)
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
            k = TRANSFER_TRUTH
            other = k["K"] * (clean - k["E_x"]) ** k["kappa"] + k["E_y"]
            losses = (("train", clean), ("held-out", other)) if held_out else (("train", clean),)
            for dataset, loss in losses:
                rows.append(
                    {
                        "run_id": f"C{c:.0e}-N{n:.3g}",
                        "family": "example",
                        "params": float(np.round(n)),
                        "tokens": float(np.round(d)),
                        "flops": float(c),
                        "dataset": dataset,
                        "loss": float(loss * np.exp(rng.normal(0.0, noise))),
                    }
                )
    return pd.DataFrame(rows)


def schedule_runs(
    steps: int = 6000,
    every: int = 100,
    params: float = 2.5e7,
    tokens_per_step: int = 65536,
    noise: float = 0.003,
    seed: int = 0,
) -> pd.DataFrame:
    """Loss curves of one model under three schedules, on two datasets, from known laws.

    The training loss follows :data:`ANNEALING_TRUTH` along each schedule (constant, cosine,
    and WSD with a 20% exponential cooldown; peak 3e-4, warmup 5%, floor 3e-5); the loss on a
    second dataset ``"held-out"`` follows :data:`TRANSFER_TRUTH` of it.

    Returns
    -------
    pandas.DataFrame
        Observations with ``run_id, family, params, tokens, step, lr, schedule, dataset, loss``.
    """
    from scalinglab.laws.curve import AnnealingLaw
    from scalinglab.schedules import parse_schedule

    check_seed(seed, "seed")
    noise = check_finite(noise, "noise", nonnegative=True)
    rng = np.random.default_rng(seed)
    warmup = steps // 20
    specs = {
        "constant": f"constant:peak=3e-4,warmup={warmup},total={steps}",
        "cosine": f"cosine:peak=3e-4,warmup={warmup},total={steps},final=3e-5",
        "wsd": f"wsd:peak=3e-4,warmup={warmup},total={steps},decay_start={int(steps * 0.8)},"
        "shape=exp,final=3e-5",
    }
    law = AnnealingLaw()
    at = np.arange(every, steps + 1, every)
    k = TRANSFER_TRUTH
    rows = []
    for name, spec in specs.items():
        sched = parse_schedule(spec)
        lr = sched.lr(np.arange(steps))
        clean = law.predict(ANNEALING_TRUTH, law.curve_features(lr, at))
        other = k["K"] * (clean - k["E_x"]) ** k["kappa"] + k["E_y"]
        for dataset, loss in (("train", clean), ("held-out", other)):
            noisy = loss * np.exp(rng.normal(0.0, noise, at.size))
            for step, value in zip(at, noisy, strict=True):
                rows.append(
                    {
                        "run_id": f"example-{name}",
                        "family": "example",
                        "params": params,
                        "tokens": float(step * tokens_per_step),
                        "step": int(step),
                        "lr": float(sched.lr(np.array([step - 1]))[0]),
                        "schedule": spec,
                        "dataset": dataset,
                        "loss": float(value),
                    }
                )
    return pd.DataFrame(rows)


#: per-family variation of :data:`CHINCHILLA_TRUTH` in :func:`checkpoint_families`
_FAMILY_SHIFTS = (
    {"E": 0.0, "alpha": 0.0, "beta": 0.0},
    {"E": 0.15, "alpha": 0.02, "beta": -0.02},
    {"E": -0.1, "alpha": -0.02, "beta": 0.01},
    {"E": 0.3, "alpha": 0.01, "beta": 0.03},
    {"E": 0.05, "alpha": -0.01, "beta": -0.03},
    {"E": -0.2, "alpha": 0.03, "beta": 0.02},
)


def family_truth(index: int) -> dict[str, float]:
    """The Chinchilla law of family ``index`` of :func:`checkpoint_families`."""
    shift = _FAMILY_SHIFTS[index % len(_FAMILY_SHIFTS)]
    return {k: round(v + shift.get(k, 0.0), 6) for k, v in CHINCHILLA_TRUTH.items()}


def checkpoint_families(
    families: int = 6,
    sizes: tuple[float, ...] = (1e8, 2.5e8, 6e8, 1.5e9, 4e9),
    tokens_per_param: float = 100.0,
    checkpoints: int = 24,
    noise: float = 0.005,
    seed: int = 0,
    prefix: str = "family",
) -> pd.DataFrame:
    """Families of runs with intermediate checkpoints, each family from its own known law.

    Family ``i`` follows :func:`family_truth` ``(i)``; each of its runs trains a model of
    ``params`` for ``tokens_per_param × params`` tokens and is measured at ``checkpoints``
    log-spaced points from 2% of its tokens to the end, loss ``L(N, D_seen)`` with
    lognormal noise. The data of ``scalinglab backtest`` (forecast each family's largest
    model from its smaller ones).

    Returns
    -------
    pandas.DataFrame
        Observations: ``run_id, family, params, tokens, loss`` (nats/token).
    """
    check_seed(seed, "seed")
    noise = check_finite(noise, "noise", nonnegative=True)
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(families):
        truth = family_truth(f)
        name = f"{prefix}-{f + 1}" if families > 1 else prefix
        for n in sizes:
            total = tokens_per_param * n
            for d in np.geomspace(0.02 * total, total, checkpoints):
                clean = (
                    truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"]
                )
                rows.append(
                    {
                        "run_id": f"{name}-N{n:.2g}",
                        "family": name,
                        "params": float(n),
                        "tokens": float(np.round(d)),
                        "loss": float(clean * np.exp(rng.normal(0.0, noise))),
                    }
                )
    return pd.DataFrame(rows)


#: the loss-to-loss relations of :func:`transfer_sweep`: validation set → (K, κ, E_y) of its
#: loss as a function of the loss on a run's own training corpus, with E_x the corpus's E
TRANSFER_SWEEP_TRUTH = {
    "web-val": {"K": 1.05, "kappa": 1.1, "E_y": 2.0},
    "code-val": {"K": 1.4, "kappa": 1.3, "E_y": 1.1},
}


def transfer_sweep(
    budgets_flops: tuple[float, ...] = (1e18, 2e18, 5e18, 1e19, 2e19, 5e19, 1e20, 2e20),
    sizes_per_budget: int = 5,
    noise: float = 0.005,
    seed: int = 0,
) -> pd.DataFrame:
    """An isoFLOP sweep on two training corpora, each run measured on three datasets.

    Corpus ``web`` follows :data:`CHINCHILLA_TRUTH`, corpus ``code`` the same law with E
    lowered by 0.6 (an easier corpus). Every run is measured on its own corpus (dataset
    ``train``) and on two validation sets whose losses follow
    :data:`TRANSFER_SWEEP_TRUTH` of the own-corpus loss: the data of ``scalinglab
    transfer`` (loss-to-loss fits, matrices, translated laws).

    Returns
    -------
    pandas.DataFrame
        Observations: ``run_id, family, params, tokens, flops, dataset, loss``; ``family`` is
        the training corpus.
    """
    check_seed(seed, "seed")
    noise = check_finite(noise, "noise", nonnegative=True)
    rng = np.random.default_rng(seed)
    base = isoflop_sweep(budgets_flops, sizes_per_budget, noise=0.0)
    rows = []
    for corpus, e_shift in (("web", 0.0), ("code", -0.6)):
        for rec in base.to_dict(orient="records"):
            own = float(rec["loss"]) + e_shift
            e_x = CHINCHILLA_TRUTH["E"] + e_shift
            losses = {"train": own}
            for dataset, t in TRANSFER_SWEEP_TRUTH.items():
                losses[dataset] = t["K"] * (own - e_x) ** t["kappa"] + t["E_y"]
            for dataset, loss in losses.items():
                rows.append(
                    {
                        "run_id": f"{corpus}-{rec['run_id']}",
                        "family": corpus,
                        "params": rec["params"],
                        "tokens": rec["tokens"],
                        "flops": rec["flops"],
                        "dataset": dataset,
                        "loss": float(loss * np.exp(rng.normal(0.0, noise))),
                    }
                )
    return pd.DataFrame(rows)
