"""Loss-to-loss in batch on the Brandfonbrener et al. sweep: matrix and the ARE backtest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalinglab.data import load_observations
from scalinglab.errors import InputError
from scalinglab.evaluation.transfer import LossRef
from scalinglab.evaluation.transfer_backtest import (
    backtest_transfer,
    loss_pairs,
    summarize_backtest,
    transfer_matrix,
)

FAMILIES = (
    "fineweb-100b",
    "fineweb-edu-100b",
    "proof-pile-2",
    "slimpajama-chunk1",
    "smollm-corpus",
    "starcoder",
)
# The sweep's own downstream aggregates: olmo_suite_ce_loss is the mean cross-entropy of the
# seven OLMo cloze tasks (ARC-e/c, HellaSwag, OpenBookQA, PIQA, SciQ, Winogrande) and
# mmlu_suite_ce_loss that of the four MMLU cloze columns. The benchmark also runs every
# individual downstream column.
SWEEP_COLUMNS = {
    "id": "run_id",
    "data": "family",
    "iso_flop": "flops",
    "flops": "model_flops",
    "val_loss": "train",
    "olmo_suite_ce_loss": "olmo_suite",
    "mmlu_suite_ce_loss": "mmlu_suite",
}


@pytest.fixture(scope="module")
def sweep(shared_data: Path) -> pd.DataFrame:
    return load_observations(
        shared_data / "loss_to_loss" / "sweep.csv",
        columns=SWEEP_COLUMNS,
        wide=["train", "olmo_suite", "mmlu_suite"],
    )


def test_loss_pairs_enumerate_each_setting(sweep: pd.DataFrame) -> None:
    t2t = loss_pairs(sweep, "train_to_train")
    assert len(t2t) == 30 and len(set(t2t)) == 30
    assert (LossRef("starcoder"), LossRef("fineweb-edu-100b")) in t2t
    tests = loss_pairs(sweep, "train_to_test", families=["starcoder"])
    assert tests == [
        (LossRef("starcoder"), LossRef("starcoder", "mmlu_suite")),
        (LossRef("starcoder"), LossRef("starcoder", "olmo_suite")),
    ]
    assert len(loss_pairs(sweep, "test_to_test", test_datasets=["olmo_suite"])) == 30
    with pytest.raises(InputError, match="unknown family nope; known families: fineweb-100b"):
        loss_pairs(sweep, "train_to_train", families=["nope"])
    with pytest.raises(InputError, match=r"unknown dataset\(s\) hellaswag; known datasets: mmlu"):
        loss_pairs(sweep, "train_to_test", test_datasets=["hellaswag"])
    with pytest.raises(InputError, match="setting must be one of train_to_train"):
        loss_pairs(sweep, "train_to_valid")


def test_matrix_of_kappa(sweep: pd.DataFrame) -> None:
    families = ["fineweb-100b", "fineweb-edu-100b", "starcoder"]
    table = transfer_matrix(sweep, families=families, irreducible="kaplan_lse")  # the paper
    assert len(table) == 6
    kappa = table.set_index(["x", "y"])["kappa"]
    assert kappa[("fineweb-edu-100b:train", "starcoder:train")] == pytest.approx(1.10, abs=0.01)
    # the law inverts: κ from y to x is about 1/κ from x to y
    for x, y in (("fineweb-100b", "starcoder"), ("fineweb-edu-100b", "fineweb-100b")):
        forward, backward = kappa[(f"{x}:train", f"{y}:train")], kappa[(f"{y}:train", f"{x}:train")]
        assert forward * backward == pytest.approx(1.0, abs=0.05)
    assert (table["are"] < 0.01).all()
    assert set(table.columns) >= {"K", "kappa", "E_x", "E_y", "n_pairs", "are"}


def test_backtest_transfer_beats_the_notebooks_and_compute_law_extrapolation(
    sweep: pd.DataFrame,
) -> None:
    # fit on budgets <= 1e19 FLOPs, predict the models at 2.2e19 and 4.84e19
    t2t = backtest_transfer(sweep, "train_to_train", max_train_flops=1e19)
    assert len(t2t) == 30 and (t2t["n_test"] >= 17).all()
    # the joint fit never returns an E_x above a loss it must translate (predicting raises)
    assert t2t["are_transfer"].notna().all() and t2t["are_notebook"].notna().all()
    summary = summarize_backtest(t2t).set_index("setting").loc["train_to_train"]
    assert summary["n_pairs"] == 30 and summary["wins"] == 30
    # the default (floors fitted below the compute fits') 0.39% mean, 0.87% worst pair;
    # the notebooks' method (floors held, log-log least squares) 0.56%, 1.71%;
    # each corpus' own compute law 2.2%
    assert summary["are_transfer"] < 0.0045 < 0.005 < summary["are_notebook"]
    assert summary["max_are_transfer"] < 0.01 < 0.015 < summary["max_are_notebook"]
    assert summary["are_compute"] > 0.02
    # train-to-test onto the sweep's two suite aggregates: about as good as the compute laws
    # (2.2% and 2.4%); the notebooks' method does a little better here (1.9%)
    to_test = backtest_transfer(sweep, "train_to_test", max_train_flops=1e19)
    assert len(to_test) == 2 * len(FAMILIES)
    assert to_test["are_transfer"].mean() < to_test["are_compute"].mean()


def test_backtest_needs_larger_runs(sweep: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="no runs above max_train_flops = 1e\\+20"):
        backtest_transfer(sweep, families=["starcoder", "fineweb-100b"], max_train_flops=1e20)
    with pytest.raises(InputError, match="law must be one of kaplan_lse, chinchilla"):
        backtest_transfer(sweep, law="kaplan")  # type: ignore[arg-type]
