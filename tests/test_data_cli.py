"""``scalinglab runs list|show|export`` on a small store, and its errors (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore

runner = CliRunner()


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    store.add_run("gpt-20m", {"d_model": 256, "n_layer": 4}, family="gpt")
    rows = [
        {"run_id": "gpt-20m", "step": s, "tokens": s * 1e6, "params": 2e7, "loss": 5 - s / 100}
        for s in (10, 20, 30)
    ]
    store.add_observations([*rows, dict(rows[0], dataset="val", loss=4.95)])
    store.set_status("gpt-20m", "finished")
    return path


def test_runs_list(store_path: Path) -> None:
    result = runner.invoke(app, ["runs", "list", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    assert run["run_id"] == "gpt-20m"
    assert (run["status"], run["n_observations"], run["last_step"]) == ("finished", 4, 30)
    assert run["config"] == {"d_model": 256, "n_layer": 4}
    table = runner.invoke(app, ["runs", "list", str(store_path)])
    assert table.exit_code == 0
    assert "gpt-20m" in table.stdout and "finished" in table.stdout


def test_runs_show(store_path: Path) -> None:
    result = runner.invoke(app, ["runs", "show", str(store_path), "gpt-20m", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert [d["dataset"] for d in run["datasets"]] == ["train", "val"]
    assert run["datasets"][0]["last_loss"] == pytest.approx(4.7)
    assert run["datasets"][1]["last_step"] == 10
    text = runner.invoke(app, ["runs", "show", str(store_path), "gpt-20m"])
    assert text.exit_code == 0
    assert "d_model = 256" in text.stdout and "val" in text.stdout


@pytest.mark.parametrize("name", ["obs.csv", "obs.parquet"])
def test_runs_export(store_path: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = runner.invoke(app, ["runs", "export", str(store_path), str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"path": str(out), "rows": 4}
    back = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
    assert back["loss"].tolist() == pytest.approx([4.9, 4.8, 4.7, 4.95])
    assert set(back["dataset"]) == {"train", "val"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "list", "{tmp}/absent.sqlite"], "no run store at"),
        (["runs", "show", "{store}", "gpt-1b"], "no run 'gpt-1b' in the store; it has gpt-20m"),
        (["runs", "export", "{store}", "{tmp}/obs.xlsx"], "cannot tell the format"),
        (["runs", "export", "{store}", "{tmp}/obs.jsonl"], "cannot export"),
    ],
)
def test_runs_errors_exit_2(
    store_path: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    argv = [a.format(tmp=tmp_path, store=store_path) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
