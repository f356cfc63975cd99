"""Every data-reading command takes --column, --dataset and --loss-unit; scalinglab.fit takes
a path and columns=."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import scalinglab
from scalinglab.cli.main import app
from scalinglab.examples import isoflop_sweep

runner = CliRunner()


@pytest.fixture(scope="module")
def perplexity_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep in its authors' own words: other column names, perplexities, two datasets."""
    table = isoflop_sweep()
    table = table.rename(columns={"params": "Model Size", "tokens": "Tokens"})
    table["ppl"] = table.pop("loss").map(math.exp)
    other = table.copy()
    other["dataset"], other["ppl"] = "web", other["ppl"] * 1.1
    table["dataset"] = "code"
    path = tmp_path_factory.mktemp("options") / "sweep.csv"
    import pandas as pd

    pd.concat([table, other]).to_csv(path, index=False)
    return path


OPTIONS = ["--column", "Model Size=params", "--column", "Tokens=tokens", "--column",
           "ppl=loss", "--loss-unit", "perplexity"]  # fmt: skip


def test_fit_and_isoflop_read_mapped_perplexities(perplexity_table: Path) -> None:
    fit = runner.invoke(
        app, ["fit", str(perplexity_table), *OPTIONS, "--dataset", "code", "--json"]
    )
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit.stdout)["n_points"] == len(isoflop_sweep())
    iso = runner.invoke(app, ["isoflop", str(perplexity_table), *OPTIONS, "--dataset", "web"])
    assert iso.exit_code == 0, iso.output


def test_report_reads_mapped_perplexities(perplexity_table: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["report", str(perplexity_table), *OPTIONS, "--dataset", "code", "--bootstrap", "0",
         "--out-dir", str(tmp_path / "report"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_bad_loss_unit_is_one_line(perplexity_table: Path) -> None:
    result = runner.invoke(app, ["fit", str(perplexity_table), "--loss-unit", "ppl"])
    assert result.exit_code == 2 and "--loss-unit must be one of" in result.output


def test_library_fit_takes_a_path_and_columns(perplexity_table: Path) -> None:
    result = scalinglab.fit(
        perplexity_table,
        "chinchilla",
        dataset="code",
        columns={"Model Size": "params", "Tokens": "tokens", "ppl": "loss"},
        loss_unit="perplexity",
    )
    direct = scalinglab.fit(isoflop_sweep(), "chinchilla")
    assert result.params == pytest.approx(direct.params, rel=1e-6)


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (["fit"], ["--column", "--dataset", "--loss-unit"]),
        (["isoflop"], ["--column", "--dataset", "--loss-unit"]),
        (["report"], ["--column", "--dataset", "--loss-unit"]),
        (["backtest", "data"], ["--column", "--dataset", "--loss-unit"]),
        # transfer names its datasets with --x and --y
        (["transfer", "fit"], ["--column", "--loss-unit"]),
        (["transfer", "matrix"], ["--column", "--loss-unit"]),
        (["transfer", "translate"], ["--column", "--loss-unit"]),
        (["transfer", "backtest"], ["--column", "--loss-unit"]),
    ],
)
def test_data_reading_commands_share_the_options(command: list[str], options: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in options:
        assert option in result.output, (command, option)
