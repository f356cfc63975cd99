"""``scalinglab backtest data|all|recommend``: tables, --json, heatmap, clear errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from tests.test_backtest import family_collection, make_family

runner = CliRunner()


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good families, a family of one size, a family reporting perplexity."""
    table = pd.concat(
        [
            make_family("good", noise=0.002),
            make_family("other", noise=0.002, seed=1),
            make_family("tiny", sizes=(1e9,)),
            make_family("ppl").assign(loss=lambda d: np.exp(d["loss"])),
        ]
    ).rename(columns={"run_id": "model_name"})
    path = tmp_path_factory.mktemp("bt") / "runs.csv"
    table.to_csv(path, index=False)
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["backtest", *args])
    return result.exit_code, result.output


def test_backtest_data_json_and_heatmap(runs_csv: Path, tmp_path: Path) -> None:
    heat = tmp_path / "heat.png"
    out = tmp_path / "results.csv"
    code, text = run(
        "data",
        str(runs_csv),
        "--family",
        "good",
        "--column",
        "model_name=run_id",
        "--fraction",
        "0.5",
        "--fraction",
        "1.0",
        "--choice",
        "default",
        "--choice",
        "no_cutoff",
        "--heatmap",
        str(heat),
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, text
    payload = json.loads(text)
    assert {r["choice"] for r in payload["results"]} == {"default", "no_cutoff"}
    assert payload["results"][0]["target"] == "good-2e+10"
    assert "cutoff" in payload["comparisons"]
    assert heat.stat().st_size > 1000
    assert len(pd.read_csv(out)) == len(payload["results"])


def test_backtest_data_table(runs_csv: Path) -> None:
    code, text = run(
        "data",
        str(runs_csv),
        "--family",
        "good",
        "--column",
        "model_name=run_id",
        "--k",
        "3",
        "--fraction",
        "1.0",
        "--target-fraction",
        "0",
        "--choice",
        "default",
    )
    assert code == 0, text
    assert "fitting choices, best first" in text and "backtest of good" in text


def test_backtest_all_skips_what_it_cannot_use(runs_csv: Path) -> None:
    code, text = run(
        "all",
        str(runs_csv),
        "--column",
        "model_name=run_id",
        "--fraction",
        "1.0",
        "--k",
        "3",
        "--target-fraction",
        "0",
        "--choice",
        "default",
        "--workers",
        "1",
        "--json",
    )
    assert code == 0, text
    payload = json.loads(text)
    assert {r["family"] for r in payload["results"]} == {"good", "other"}
    assert "1 model size" in payload["skipped"]["tiny"]
    assert "perplexities" in payload["skipped"]["ppl"]
    code, text = run(
        "all",
        str(runs_csv),
        "--column",
        "model_name=run_id",
        "--fraction",
        "1.0",
        "--k",
        "3",
        "--target-fraction",
        "0",
        "--choice",
        "default",
        "--workers",
        "1",
        "--perplexity",
        "auto",
        "--json",
    )
    assert code == 0, text
    assert "ppl" in {r["family"] for r in json.loads(text)["results"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "tiny"], "family 'tiny' has 1 model size"),
        (["--family", "ppl"], "--perplexity auto"),
        (["--family", "nope"], "no family 'nope'"),
        (["--family", "good", "--choice", "magic"], "unknown choice magic"),
        (["--family", "good", "--target", "ghost"], "no run 'ghost'"),
        (["--family", "good", "--fraction", "1.5"], "fractions of training"),
        (["--family", "good", "--loss-unit", "furlongs"], "--loss-unit must be one of"),
        (
            ["--family", "good", "--perplexity", "auto", "--perplexity", "good"],
            "cannot be combined",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message(runs_csv: Path, args: list[str], message: str) -> None:
    code, text = run("data", str(runs_csv), "--column", "model_name=run_id", *args)
    assert code == 2
    assert message in " ".join(text.split())


def test_target_without_checkpoints_after_cutoff(tmp_path: Path) -> None:
    table = make_family("short", sizes=(1e8, 2e8, 4e8))  # the target ends at 8e9 tokens
    path = tmp_path / "short.csv"
    table.to_csv(path, index=False)
    code, text = run("data", str(path), "--family", "short")
    assert code == 2
    assert "no checkpoint at or after 1e+10 tokens" in " ".join(text.split())
    code, text = run("data", str(path), "--family", "short", "--choice", "no_cutoff", "--json")
    assert code == 0, text


def test_recommend_with_reference(runs_csv: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    family_collection().rename(columns={"run_id": "model_name"}).to_csv(ref, index=False)
    code, text = run(
        "recommend",
        str(runs_csv),
        "--family",
        "good",
        "--column",
        "model_name=run_id",
        "--reference",
        str(ref),
        "--choice",
        "default",
        "--choice",
        "fixed_exponents",
        "--params",
        "7e10",
        "--tokens",
        "1.4e12",
        "--json",
    )
    assert code == 0, text
    payload = json.loads(text)
    assert payload["best_choice"] in {r["choice"] for r in payload["ranking"]}
    assert payload["forecast"][0]["params"] == 7e10
    code, text = run("recommend", str(runs_csv), "--column", "model_name=run_id", "--params", "1e9")
    assert code == 2 and "give both --params and --tokens" in text
