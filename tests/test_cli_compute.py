"""`scalinglab fit | predict | laws | example` from the command line, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.examples import CHINCHILLA_TRUTH

runner = CliRunner()

GOOD = "run_id,params,tokens,loss\n" + "".join(
    f"r{i},{n:.0f},{d:.0f},{1.8 + 400 / n**0.34 + 2000 / d**0.36:.5f}\n"
    for i, (n, d) in enumerate([(1e7 * 2**i, 2e9 * 3**j) for i in range(4) for j in range(3)])
)


def write(tmp_path: Path, text: str, name: str = "runs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_fit_predict_round_trip(tmp_path: Path) -> None:
    csv = tmp_path / "ex.csv"
    fit_json = tmp_path / "fit.json"
    assert runner.invoke(app, ["example", "--out", str(csv)]).exit_code == 0
    res = runner.invoke(
        app, ["fit", str(csv), "--bootstrap", "50", "--out", str(fit_json), "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["params"]["alpha"] == pytest.approx(CHINCHILLA_TRUTH["alpha"], rel=0.15)
    assert set(payload["ci95"]) == {"E", "A", "alpha", "B", "beta"}
    assert payload["options"]["search"] == "projection"
    full = runner.invoke(app, ["fit", str(csv), "--search", "full", "--json"])
    assert full.exit_code == 0, full.output
    full_payload = json.loads(full.stdout)
    assert full_payload["options"]["search"] == "full"
    assert payload["objective"] <= full_payload["objective"] * (1 + 1e-9)
    res = runner.invoke(
        app, ["predict", str(fit_json), "--params", "7e9", "--tokens", "1.4e12", "--json"]
    )
    assert res.exit_code == 0, res.output
    forecast = json.loads(res.stdout)
    pred = forecast["predictions"][0]
    assert pred["confidence_low"] < pred["loss_nats"] < pred["confidence_high"]
    # a new run's loss scatters about the law: its interval contains the law's
    assert pred["prediction_low"] < pred["confidence_low"]
    assert pred["prediction_high"] > pred["confidence_high"]
    assert set(forecast["intervals"]) == {"prediction", "confidence"}
    assert pred["extrapolation_ratio"] > 1
    res = runner.invoke(app, ["laws", "--json"])
    assert {r["law"] for r in json.loads(res.stdout)} >= {"chinchilla", "kaplan", "compute"}


BAD_CASES = {
    "nan_loss": (
        GOOD.replace(",r1,", ",r1,").splitlines()[0]
        + "\n"
        + "\n".join(GOOD.splitlines()[1:3])
        + "\nr9,1e8,1e10,nan\n",
        ["row 3", "loss"],
    ),
    "zero_params": (
        "run_id,params,tokens,loss\nr0,1e8,1e10,3.1\nr1,0,1e10,3.0\n",
        ["row 2", "params", "0"],
    ),
    "negative_params": (
        "run_id,params,tokens,loss\nr0,1e8,1e10,3.1\nr1,-5,1e10,3.0\n",
        ["row 2", "params", "-5"],
    ),
    "missing_column": ("run_id,params,loss\nr0,1e8,3.1\n", ["tokens"]),
    "text_in_number": (
        "run_id,params,tokens,loss\nr0,1e8,1e10,3.1\nr1,big,1e10,3.0\n",
        ["row 2", "params", "big"],
    ),
    "conflicting_duplicates": (
        "run_id,params,tokens,loss\nr0,1e8,1e10,3.1\nr0,1e8,1e10,3.3\n",
        ["row 2", "rows 1 and 2", "disagree"],
    ),
    "too_few_points": (
        "run_id,params,tokens,loss\nr0,1e8,1e10,3.1\nr1,2e8,1e10,3.0\n",
        ["5 free parameters", "2 distinct"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_message_and_status_2(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    res = runner.invoke(app, ["fit", str(write(tmp_path, text))])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error:"), message
    for word in expected:
        assert word.lower() in message.lower(), (word, message)
    assert "Traceback" not in res.output


def test_bad_options_and_files(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    for args, word in (
        (["fit", str(tmp_path / "missing.csv")], "no such file"),
        (["fit", str(good), "--law", "chinchila"], "unknown law"),
        (["fit", str(good), "--fix", "E"], "NAME=VALUE"),
        (["fit", str(good), "--fix", "E=abc"], "not a number"),
        (["fit", str(good), "--search", "exhaustive"], "unknown search 'exhaustive'"),
        (["predict", str(good)], "not"),
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert word.lower() in res.stderr.lower(), (args, res.stderr)


def test_final_loss_tables_without_run_ids_resample_rows() -> None:
    from scalinglab.data import load_observations
    from scalinglab.fitting.engine import run_groups

    rows = [{"params": n, "tokens": d, "loss": 3.0} for n in (1e8, 2e8) for d in (1e9, 2e9)]
    table = load_observations(pd.DataFrame(rows))
    assert run_groups(table) is None  # four runs, not two model sizes
    with_steps = load_observations(pd.DataFrame([{**r, "step": i} for i, r in enumerate(rows)]))
    assert len(set(run_groups(with_steps))) == 2  # checkpoints of two runs
