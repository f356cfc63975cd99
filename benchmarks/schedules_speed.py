"""Speed of the schedule areas and of fitting loss-curve laws, against straightforward peers.

1. S1/S2 (Tissue et al.'s forward and annealing areas) of a 1,000,000-step cosine schedule:
   ``scalinglab.schedules.lr_areas`` (cumsum + ``scipy.signal.lfilter``) against the recursion
   ``m_i = λ m_{i−1} + (η_{i−1} − η_i)`` written as a Python loop.
2. Fitting two 24k-step curves (constant_24000 + cosine_24000 of Luo et al.'s 25M and 100M
   models, ``../shared/data/lr_schedules``): ``scalinglab.fitting.fit`` (batched multi-start,
   analytic gradients; the multi-power loss drop on bins) against scipy's L-BFGS-B from one
   start with finite-difference gradients on the same Huber-log objective, the multi-power
   law summed exactly over every decay step (as Luo et al.'s code evaluates it), started from
   Luo et al.'s published parameters. Both fits then predict the seven held-out curves.

Run: ``.venv/bin/python benchmarks/schedules_speed.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from _common import ROOT, record
from scalinglab.fitting import fit
from scalinglab.fitting.objective import RobustLoss
from scalinglab.laws import get_law
from scalinglab.laws.curve import curve_errors, run_lr
from scalinglab.schedules import lr_areas, lr_drops, parse_schedule, warmup_end
from scalinglab.schedules.reference import luo2025_spec

DATA = ROOT.parent / "shared" / "data" / "lr_schedules"
TRAIN = ("constant_24000", "cosine_24000")
#: Luo et al.'s published multi-power parameters (their repository's README), the peer's start
LUO_PARAMS = {
    25: {"L0": 3.040, "A": 0.525, "alpha": 0.508, "B": 363.788, "C": 2.066, "beta": 0.583,
         "gamma": 0.641},
    100: {"L0": 2.651, "A": 0.601, "alpha": 0.453, "B": 437.946, "C": 2.132, "beta": 0.598,
          "gamma": 0.655},
}  # fmt: skip
ANNEALING_START = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.5}


def best_of(repeats: int, func: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time of ``repeats`` calls, and the last result."""
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - start)
    return best, out


def areas_loop(lr: np.ndarray, decay: float, start: int) -> tuple[np.ndarray, np.ndarray]:
    """The recursion as written in the paper, one step at a time."""
    s1 = np.empty_like(lr)
    s2 = np.empty_like(lr)
    total1 = total2 = m = 0.0
    prev = lr[0]
    for i, eta in enumerate(lr.tolist()):
        if i > start:
            m = decay * m + (prev - eta)
        prev = eta
        total1 += eta
        total2 += m
        s1[i] = total1
        s2[i] = total2
    return s1, s2


def bench_areas() -> dict[str, Any]:
    sched = parse_schedule("cosine:peak=3e-4,total=1000000,warmup=2000,final=3e-5")
    lr = sched.array()
    start = warmup_end(lr)
    ours_s, (s1, s2) = best_of(5, lambda: lr_areas(lr, 0.999, anneal_start=start))
    loop_s, (l1, l2) = best_of(1, lambda: areas_loop(lr, 0.999, start))
    return {
        "steps": lr.size,
        "lr_areas_s": ours_s,
        "python_loop_s": loop_s,
        "speedup": loop_s / ours_s,
        "max_rel_diff_s1": float(np.max(np.abs(s1 - l1) / l1.max())),
        "max_rel_diff_s2": float(np.max(np.abs(s2 - l2) / np.abs(l2).max())),
    }


def load_size(size: int) -> pd.DataFrame:
    frames = []
    for path in sorted((DATA / f"csv_{size}").glob("*.csv")):
        df = pd.read_csv(path)
        frames.append(df.assign(run_id=path.stem, schedule=luo2025_spec(path.stem)))
    return pd.concat(frames, ignore_index=True)


class ExactPeer:
    """The curve laws evaluated directly from each run's per-step learning rate.

    The multi-power loss drop is summed over every decay step before each point: a
    (points × decay steps) matrix per run, built once.
    """

    def __init__(self, law: str, table: pd.DataFrame) -> None:
        self.law = law
        self.runs = []
        for _, run in table.groupby("run_id", sort=False):
            steps = run["step"].to_numpy(dtype=np.int64)
            lr = run_lr(run, int(steps.max()))
            w = warmup_end(lr)
            drops = lr_drops(lr, anneal_start=w)
            s1, s2 = lr_areas(lr, 0.999, anneal_start=w)
            ks = np.flatnonzero(drops)
            cum = np.cumsum(lr)
            before = np.where(ks > 0, cum[ks - 1], 0.0)
            t = steps - 1
            # S_k(t) = Σ_{τ=k..t} η_τ for every point t and decay step k <= t (else 0)
            area = np.where(ks[None, :] <= t[:, None], cum[t][:, None] - before[None, :], 0.0)
            log_lr = np.log(np.maximum(lr[ks], 1e-12))
            self.runs.append((s1[t], s2[t], drops[ks], log_lr, area))

    def predict(self, p: dict[str, float]) -> np.ndarray:
        out = []
        for s1, s2, drops, log_lr, area in self.runs:
            forward = p["L0"] + p["A"] * s1 ** -p["alpha"]
            if self.law == "annealing":
                out.append(forward - p["C"] * s2)
                continue
            x = np.exp(-p["gamma"] * log_lr)[None, :] * area
            g = 1.0 - (p["C"] * x + 1.0) ** -p["beta"]
            out.append(forward - p["B"] * (g @ drops))
        return np.concatenate(out)


def peer_fit(
    law: str, train: pd.DataFrame, start: dict[str, float]
) -> tuple[dict[str, float], float]:
    """scipy L-BFGS-B from one start, finite differences, Huber(1e-3) on log residuals."""
    peer = ExactPeer(law, train)
    names = list(start)
    log_y = np.log(train["loss"].to_numpy(dtype=float))
    huber = RobustLoss()
    # scale parameters on a log axis, as the engine does, so the comparison is like for like
    logged = [n for n in names if n in ("L0", "A", "B", "C")]

    def unpack(z: np.ndarray) -> dict[str, float]:
        return {n: float(np.exp(v) if n in logged else v) for n, v in zip(names, z, strict=True)}

    def objective(z: np.ndarray) -> float:
        pred = peer.predict(unpack(z))
        if not np.all(pred > 0):
            return 1e10
        rho, _ = huber.value_and_slope(np.log(pred) - log_y)
        return float(rho.sum())

    z0 = np.array([np.log(start[n]) if n in logged else start[n] for n in names])
    res = minimize(objective, z0, method="L-BFGS-B", options={"maxiter": 300})
    return unpack(res.x), float(res.fun)


class _Params:
    def __init__(self, law: str, params: dict[str, float]) -> None:
        self.law = get_law(law)
        self.params = params


def bench_fits() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in (25, 100):
        data = load_size(size)
        train = data[data["run_id"].isin(TRAIN)]
        test = data[~data["run_id"].isin(TRAIN)]
        for law in ("annealing", "multipower"):
            ours_s, result = best_of(3, lambda law=law, train=train: fit(train, get_law(law)))
            start = ANNEALING_START if law == "annealing" else LUO_PARAMS[size]
            peer_s, (peer_params, peer_obj) = best_of(
                1, lambda law=law, train=train, start=start: peer_fit(law, train, start)
            )
            ours_err = curve_errors(result, test)
            peer_err = curve_errors(_Params(law, peer_params), test)
            out[f"{law}_{size}M"] = {
                "points": len(train),
                "ours_s": ours_s,
                "ours_objective": result.objective,
                "ours_starts": result.n_starts,
                "ours_heldout_mean_rel_error": float(ours_err["mean_rel_error"].mean()),
                "ours_heldout_max_rel_error": float(ours_err["max_rel_error"].max()),
                "peer_s": peer_s,
                "peer_objective": peer_obj,
                "peer_heldout_mean_rel_error": float(peer_err["mean_rel_error"].mean()),
                "peer_heldout_max_rel_error": float(peer_err["max_rel_error"].max()),
                "speedup": peer_s / ours_s,
                "params": result.params,
                "peer_params": peer_params,
            }
            print(f"{law} {size}M: ours {ours_s:.2f} s, peer {peer_s:.2f} s", flush=True)
    return out


def main() -> int:
    areas = bench_areas()
    print(
        f"S1/S2 of 1e6 steps: {areas['lr_areas_s'] * 1e3:.1f} ms "
        f"(Python loop {areas['python_loop_s']:.2f} s)",
        flush=True,
    )
    result: dict[str, Any] = {"areas": areas}
    parts = [
        f"S1/S2 of 1e6 steps {areas['lr_areas_s'] * 1e3:.1f} ms "
        f"({areas['speedup']:.0f}x a Python loop of the recursion)"
    ]
    if DATA.is_dir():
        fits = bench_fits()
        result["fits"] = fits
        for key, r in fits.items():
            parts.append(
                f"{key} fit of 2×24k-step curves {r['ours_s']:.2f} s, "
                f"objective {r['ours_objective']:.3g} (scipy L-BFGS-B exact-sum peer "
                f"{r['peer_s']:.1f} s = {r['speedup']:.1f}x, objective {r['peer_objective']:.3g}); "
                f"held-out mean/max {r['ours_heldout_mean_rel_error']:.3%}/"
                f"{r['ours_heldout_max_rel_error']:.2%} (peer "
                f"{r['peer_heldout_mean_rel_error']:.3%}/{r['peer_heldout_max_rel_error']:.2%})"
            )
    else:
        parts.append(f"curve fits skipped: no reference data at {DATA}")
    record("schedules_speed", result, "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
