"""Loss-to-loss prediction on the Brandfonbrener et al. 2024 sweep (528 models, 6 corpora).

1. Published train-to-train parameters (fineweb-edu-100b → fineweb-100b and → starcoder)
   against ours.
2. Backtest: every law fitted on budgets ≤ 1e19 FLOPs predicts the models at 2.2e19 and
   4.84e19. The peer is each loss's own compute law (E + ((A/N)^(α/β) + B/D)^β) extrapolated
   to the same models; the ratio is transfer ARE / compute-law ARE (< 1: transfer better).
   Train-to-train over all 30 ordered corpus pairs; train-to-test onto every downstream
   cross-entropy column, reported for all 19, for the 15 cloze-format ones (the four
   MMLU multiple-choice 5-shot columns are at chance accuracy for every model here), and
   for the sweep's two suite aggregates.
3. Translation: a corpus' compute law translated from another corpus' law through 8 runs
   (one per budget) against the same law fitted on those 8 runs alone, ARE on the rest.

Run: ``.venv/bin/python benchmarks/transfer.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, record
from scalinglab.data import load_observations
from scalinglab.evaluation.transfer import LossRef, fit_transfer, translate_law
from scalinglab.evaluation.transfer_backtest import backtest_transfer, summarize_backtest
from scalinglab.fitting import Fit

SWEEP = ROOT.parent / "shared" / "data" / "loss_to_loss" / "sweep.csv"
CE_PREFIX = "eval/downstream_ce_loss/"
PUBLISHED = {
    ("fineweb-edu-100b", "fineweb-100b"): {"kappa": 1.00, "K": 1.01, "E_x": 1.97},
    ("fineweb-edu-100b", "starcoder"): {"kappa": 1.10, "K": 0.63, "E_x": 1.97},
}


def load() -> tuple[pd.DataFrame, list[str]]:
    """The sweep as Observations: own-corpus loss as 'train', each downstream CE column."""
    header = pd.read_csv(SWEEP, nrows=0).columns
    tasks = {c: c.removeprefix(CE_PREFIX) for c in header if c.startswith(CE_PREFIX)}
    columns = {
        "id": "run_id",
        "data": "family",
        "iso_flop": "flops",  # 6·N·D; the file's 'flops' column is not the budget
        "flops": "model_flops",
        "val_loss": "train",
        "olmo_suite_ce_loss": "olmo_suite",
        "mmlu_suite_ce_loss": "mmlu_suite",
        **tasks,
    }
    wide = ["train", "olmo_suite", "mmlu_suite", *tasks.values()]
    return load_observations(SWEEP, columns=columns, wide=wide), sorted(tasks.values())


def group_summary(results: pd.DataFrame, label: str) -> dict[str, Any]:
    row = summarize_backtest(results.assign(setting=label)).iloc[0]
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def main() -> int:
    if not SWEEP.is_file():
        print(f"reference data not found at {SWEEP}; nothing measured")
        return 0
    obs, tasks = load()
    start = time.perf_counter()

    cache: dict[LossRef, Fit] = {}
    published: list[dict[str, Any]] = []
    for (x, y), paper in PUBLISHED.items():
        ours = fit_transfer(obs, x, y, compute_fits=cache).params
        published.append({"x": x, "y": y, "published": paper, "ours": ours})

    t0 = time.perf_counter()
    t2t = backtest_transfer(obs, "train_to_train")
    t2test = backtest_transfer(obs, "train_to_test", test_datasets=tasks)
    suites = backtest_transfer(obs, "train_to_test", test_datasets=["olmo_suite", "mmlu_suite"])
    backtest_s = time.perf_counter() - t0
    cloze = t2test[~t2test["y"].str.contains("mc_5shot")]
    groups = [
        group_summary(t2t, "train_to_train (30 pairs)"),
        group_summary(t2test, "train_to_test, 19 downstream CE columns"),
        group_summary(cloze, "train_to_test, 15 cloze-format columns"),
        group_summary(suites, "train_to_test, olmo/mmlu suite aggregates"),
        group_summary(pd.concat([t2t, t2test]), "train_to_train + train_to_test (19)"),
    ]

    t0 = time.perf_counter()
    families = sorted(obs["family"].unique())
    translations = []
    for x in families:
        for y in families:
            if x != y:
                scores = translate_law(obs, x, y).evaluate(obs)
                translations.append({"x": x, "y": y, **scores})
    translate_s = time.perf_counter() - t0
    trans = pd.DataFrame(translations)
    total_s = time.perf_counter() - start

    tr: dict[str, Any] = {
        "mean_are_translated": float(trans["are_translated"].mean()),
        "mean_are_direct": float(trans["are_direct"].mean()),
        "ratio": float(trans["are_translated"].mean() / trans["are_direct"].mean()),
        "wins": int((trans["are_translated"] < trans["are_direct"]).sum()),
        "pairs": translations,
        "seconds": translate_s,
    }
    result = {
        "data": "loss_to_loss/sweep.csv (Brandfonbrener et al. 2024)",
        "published_vs_ours": published,
        "backtest": {
            "max_train_flops": 1e19,
            "summary": groups,
            "pairs": pd.concat([t2t, t2test, suites]).to_dict(orient="records"),
            "seconds": backtest_s,
        },
        "translation": tr,
        "seconds_total": total_s,
    }
    edu_star = published[1]["ours"]
    summary = (
        f"edu→starcoder κ={edu_star['kappa']:.3f} K={edu_star['K']:.3f} "
        f"E_x={edu_star['E_x']:.3f} (paper 1.10/0.63/1.97); backtest ARE transfer/compute: "
        + "; ".join(
            f"{g['setting']} {100 * g['are_transfer']:.2f}%/{100 * g['are_compute']:.2f}% "
            f"= {g['ratio']:.2f}x"
            for g in groups[:4]
        )
        + f"; translation (8 runs) vs direct fit {100 * tr['mean_are_translated']:.2f}%"
        f"/{100 * tr['mean_are_direct']:.2f}% = {tr['ratio']:.2f}x; {total_s:.0f} s"
    )
    record("transfer", result, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
