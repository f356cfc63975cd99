"""Round trip: a run trained by ``scalinglab train --log-to ...`` imports from TensorBoard,
MLflow and W&B to the observations its own run store holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import import_runs, load_observations

pytest.importorskip("torch")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")

COLUMNS = ["run_id", "family", "params", "params_nonembedding", "tokens", "step", "flops", "lr",
           "dataset", "seed"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roundtrip")
    other = root / "other.txt"  # a second evaluation set, small enough to read at once
    other.write_text("".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(3000)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALINGLAB_CACHE", str(root / "cache"))
        patch.setenv("WANDB_MODE", "offline")
        args = [
            "train", "--d-model=16", "--layers=1", "--heads=2", "--context=16",
            "--batch-size=4", "--steps=30", "--train-data=python-docs",
            "--eval-data=python-docs", f"--eval-data={other}", "--set=eval_tokens=256",
            "--set=threads=1", "--set=family='tiny'", "--device=cpu", "--run-id=tiny-s0",
            f"--store={root / 'runs.sqlite'}", f"--out-dir={root / 'ckpt'}",
            "--log-to=tensorboard", "--log-to=mlflow", "--log-to=wandb", "--json",
        ]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        # the same command again resumes from the last checkpoint: logs are continued, not
        # duplicated (one MLflow run, W&B segments joined)
        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["resumed_from"] == 30
    return root


@pytest.mark.parametrize("source", ["tensorboard", "mlflow.db", "wandb"])
def test_logs_import_to_the_stores_observations(trained: Path, source: str) -> None:
    ours = load_observations(trained / "runs.sqlite")
    theirs = import_runs(trained / source)
    (run,) = theirs.attrs["import_report"].runs
    assert run.dropped == {} and run.kept == len(ours) == 2 * 12
    key = ["dataset", "step"]
    a = ours.sort_values(key, ignore_index=True)
    b = theirs.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a[COLUMNS], b[COLUMNS], check_dtype=False)
    # losses to float32 precision at least (TensorBoard's and W&B's are doubles here)
    assert np.allclose(a["loss"], b["loss"], rtol=2**-24, atol=0)


def test_the_command_imports_the_trained_logs_into_a_store(trained: Path, tmp_path: Path) -> None:
    store = tmp_path / "imported.sqlite"
    result = CliRunner().invoke(
        app, ["import", str(trained / "tensorboard"), "--store", str(store), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"]["new"] == 24
    fit = CliRunner().invoke(app, ["runs", "list", str(store)])
    assert "tiny-s0" in fit.stdout


def test_importing_the_logs_into_the_training_store_adds_nothing(trained: Path) -> None:
    store = trained / "runs.sqlite"
    before = load_observations(store)
    result = CliRunner().invoke(
        app, ["import", str(trained / "mlflow.db"), "--store", str(store), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == {"new": 0, "unchanged": 24, "changed": 0}
    after = load_observations(store)
    pd.testing.assert_frame_equal(before, after)
    runs = CliRunner().invoke(app, ["runs", "list", str(store), "--json"])
    assert json.loads(runs.stdout)[0]["status"] == "finished"
