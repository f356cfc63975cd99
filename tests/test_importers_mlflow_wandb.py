"""MLflow (SQLite backend and file store) and W&B (offline runs, history exports): files
written by the libraries themselves during the test, shared per module (they import slowly)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.data import import_runs
from scalinglab.data.importers import detect_kind
from scalinglab.data.importers.base import SUPERSEDED
from scalinglab.errors import InputError

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")


def loss(step: int) -> float:
    return 4.0 / (1 + step) ** 0.25


def write_mlflow(uri: str) -> None:
    """Runs logged through MLflow's client, as training scripts log them."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ladder")

    def run(name: str, steps: range, offset: float, params: dict[str, float]) -> str:
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        metrics = []
        for i, step in enumerate(steps):
            metrics += [Metric("train/loss", loss(step) + offset, i, step),
                        Metric("lr", 1e-3, i, step)]  # fmt: skip
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id)
        return run_id

    run("small", range(0, 30), 0.0, {"num_params": 1.5e7, "tokens_per_step": 65536, "seed": 1})
    # crashed after step 24, resumed into the same MLflow run from its step-20 checkpoint
    resumed = run("resumed", range(0, 25), 1.0, {"num_params": 5e7, "tokens_per_step": 4096})
    later = [Metric("train/loss", loss(s), 10_000 + s, s) for s in range(20, 40)]
    client.log_batch(resumed, metrics=later)
    run("dup", range(1, 3), 0.0, {"num_params": 1e6, "tokens_per_step": 1})
    run("dup", range(1, 3), 0.0, {"num_params": 2e6, "tokens_per_step": 1})


@pytest.fixture(scope="module")
def mlflow_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("mlflow")
    uris = {"sqlite": f"sqlite:///{root / 'mlflow.db'}", "file": (root / "mlruns").as_uri()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes it only when asked
        for uri in uris.values():
            write_mlflow(uri)
        yield uris


@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_mlflow_runs_params_and_restarts(mlflow_stores: dict[str, str], backend: str) -> None:
    # the paths users have: the database file, or the mlruns folder
    source = mlflow_stores[backend].removeprefix("sqlite:///").removeprefix("file://")
    assert detect_kind(source) == "mlflow"
    table = import_runs(source)
    runs = sorted(table["run_id"].unique())
    assert runs[:2] == ["dup-" + runs[0][4:], "dup-" + runs[1][4:]] and runs[2:] == [
        "resumed",
        "small",
    ]
    small = table[table["run_id"] == "small"]
    assert small["step"].tolist() == list(range(1, 30))
    assert small["loss"].tolist() == [loss(s) for s in range(1, 30)]  # float64: exact
    assert small["tokens"].tolist() == [s * 65536.0 for s in range(1, 30)]
    assert (
        set(small["params"]) == {1.5e7} and set(small["seed"]) == {1} and set(small["lr"]) == {1e-3}
    )
    resumed = table[table["run_id"] == "resumed"].set_index("step")["loss"]
    assert resumed.index.tolist() == list(range(1, 40))
    assert resumed[22] == loss(22) and resumed[19] == loss(19) + 1.0
    report = {r.run_id: r for r in table.attrs["import_report"].runs}
    assert report["resumed"].dropped[SUPERSEDED] == 5
    config = table.attrs["run_configs"]["small"]
    assert config["tokens_per_step"] == 65536 and config["mlflow"]["experiment"] == "ladder"


def test_mlflow_unknown_experiment_is_named(mlflow_stores: dict[str, str]) -> None:
    with pytest.raises(InputError, match=r"no MLflow experiment .nope.*ladder"):
        import_runs(mlflow_stores["sqlite"], experiments=["nope"])


WANDB_SCRIPT = """
import sys, wandb
root = sys.argv[1]
settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
with wandb.init(mode="offline", dir=root, project="p", name="hf-style", settings=settings,
                config={"model": {"num_params": 3e8}, "batch": 32, "seq_len": 2048}) as run:
    for i in range(1, 6):
        step = 100 * i
        run.log({"train/global_step": step, "train/loss": 4.0 / (1 + step) ** 0.25,
                 "train/learning_rate": 1e-4, "train/epoch": i / 10})
        if i % 2 == 0:
            run.log({"train/global_step": step, "eval/loss": 4.5 / (1 + step) ** 0.25})
    run.log({"samples": wandb.Histogram([1, 2, 3])})
for steps, offset in ((range(1, 6), 1.0), (range(3, 9), 0.0)):  # crashed at 5, resumed at 3
    with wandb.init(mode="offline", dir=root, project="p", name="resumed", id="resumed1",
                    resume="allow", settings=settings,
                    config={"params": 2e6, "tokens_per_step": 10}) as run:
        for step in steps:
            run.log({"loss": 3.0 - step / 10 + offset}, step=step)
with wandb.init(mode="offline", dir=root, project="p", name="plain", id="plain1", settings=settings,
                config={"params": 1e6, "tokens_per_step": 1000}) as run:
    for step in range(1, 4):
        run.log({"loss": 3.0 - step / 10, "tokens": step * 1000.0}, step=step)
"""


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WANDB_SCRIPT), str(root)],
        check=True,
        capture_output=True,
        env=env,
    )
    return root / "wandb"


def test_wandb_offline_runs_use_the_global_step(wandb_dir: Path) -> None:
    assert detect_kind(wandb_dir) == "wandb"
    table = import_runs(wandb_dir, tokens_per_step={"hf-style": 32 * 2048})
    hf = table[table["run_id"] == "hf-style"]
    train = hf[hf["dataset"] == "train"]
    assert train["step"].tolist() == [100, 200, 300, 400, 500]
    assert train["loss"].tolist() == [4.0 / (1 + s) ** 0.25 for s in (100, 200, 300, 400, 500)]
    assert hf[hf["dataset"] == "eval"]["step"].tolist() == [200, 400]
    assert set(hf["params"]) == {3e8} and set(train["lr"]) == {1e-4}
    report = {r.run_id: r for r in table.attrs["import_report"].runs}
    assert report["hf-style"].dropped["not a number (W&B media, text or a table)"] == 1
    plain = table[table["run_id"] == "plain"]
    assert plain["tokens"].tolist() == [1000.0, 2000.0, 3000.0]
    resumed = table[table["run_id"] == "resumed"]
    assert resumed["step"].tolist() == list(range(1, 9))
    assert resumed["loss"].tolist() == pytest.approx(
        [3.9, 3.8] + [3.0 - s / 10 for s in range(3, 9)]
    )
    assert report["resumed"].dropped == {SUPERSEDED: 3}


def test_wandb_history_exports_csv_and_parquet(wandb_dir: Path, tmp_path: Path) -> None:
    # the table run.history() / scan_history() gives, as users save it
    history = pd.DataFrame(
        {
            "_step": [0, 1, 2, 3],
            "_runtime": [1.0, 2.0, 3.0, 4.0],
            "_timestamp": [1.7e9] * 4,
            "trainer/global_step": [10, 20, 20, 30],
            "train/loss": [3.0, 2.9, np.nan, 2.7],
            "val/loss": [np.nan, np.nan, 3.1, np.nan],
        }
    )
    history.to_csv(tmp_path / "run-a.csv", index=False)
    history.to_parquet(tmp_path / "run-b.parquet", index=False)
    for name in ("run-a.csv", "run-b.parquet"):
        table = import_runs(tmp_path / name, params=1e6, tokens_per_step=100)
        assert table["step"].tolist() == [10, 20, 30, 20]
        assert table["dataset"].tolist() == ["train", "train", "train", "val"]
    chart = pd.DataFrame(
        {"Step": [10, 20], "a - loss": [3.0, 2.5], "a - loss__MIN": [2.9, 2.4],
         "a - loss__MAX": [3.1, 2.6], "b - loss": [3.5, np.nan]}
    )  # fmt: skip
    chart.to_csv(tmp_path / "chart.csv", index=False)
    table = import_runs(tmp_path / "chart.csv", params=1e6, tokens_per_step=100)
    assert table.groupby("run_id").size().to_dict() == {"a": 2, "b": 1}
    report = {r.run_id: r for r in table.attrs["import_report"].runs}
    assert report["a"].dropped == {
        "W&B chart export's bucket minimum/maximum, not a measurement": 4
    }


def readme_import_commands() -> list[str]:
    """The ``scalinglab import`` lines of the README's "Bring your own runs" section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Bring your own runs", 1)[1].split("\n## ", 1)[0]
    return [
        line.split("  #")[0].strip()
        for line in section.splitlines()
        if line.startswith("scalinglab import ")
    ]


def test_every_readme_import_command_runs(
    mlflow_stores: dict[str, str], wandb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shlex
    import shutil

    from typer.testing import CliRunner

    from scalinglab.cli.main import app
    from tests.test_importers import (
        GPT2_CONFIG,
        NANOGPT_LOG,
        hf_history,
        trainer_state,
        write_tensorboard,
    )

    commands = readme_import_commands()
    assert len(commands) == 6
    sources = tmp_path / "sources"
    write_tensorboard(sources / "tb" / "gpt-125m", range(0, 20))
    shutil.copy(mlflow_stores["sqlite"].removeprefix("sqlite:///"), sources / "mlflow.db")
    shutil.copytree(wandb_dir, sources / "wandb")
    history = pd.DataFrame({"_step": [0, 1, 2], "train/loss": [3.0, 2.8, 2.7]})
    history.to_csv(sources / "history.csv", index=False)
    (sources / "output").mkdir()
    (sources / "output" / "trainer_state.json").write_text(
        json.dumps(trainer_state(hf_history(), 40))
    )
    (sources / "output" / "config.json").write_text(json.dumps(GPT2_CONFIG))
    (sources / "train.log").write_text(NANOGPT_LOG)
    for number, command in enumerate(commands):
        folder = tmp_path / f"command-{number}"
        shutil.copytree(sources, folder)
        monkeypatch.chdir(folder)
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
        assert "new rows" in result.output, command


def test_wandb_online_without_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # the online path needs network and an API key; without a key it fails before any request
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", "/nonexistent-wandb-config")
    monkeypatch.setenv("NETRC", "/nonexistent-netrc")
    with pytest.raises(InputError, match="cannot read W&B runs at team/ladder/abc123"):
        import_runs("wandb://team/ladder/abc123", params=1, tokens_per_step=1)
    with pytest.raises(InputError, match=r"wandb://ENTITY/PROJECT\[/RUN_ID\]"):
        import_runs("wandb://just-a-name", params=1, tokens_per_step=1)


def test_a_mistyped_mlflow_path_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        import_runs(tmp_path / "mlfow.db", kind="mlflow")
    assert not (tmp_path / "mlfow.db").exists()
