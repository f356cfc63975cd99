"""``scalinglab train`` and ``scalinglab sweep`` from the command line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app

TINY = [
    "--d-model=16", "--layers=1", "--heads=2", "--context=16", "--batch-size=4",
    "--train-data=python-docs", "--eval-data=python-docs", "--set=eval_tokens=256",
    "--set=threads=1", "--device=cpu",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_train_one_run_and_resume_it(tmp_path: Path) -> None:
    args = [
        "train", *TINY, "--steps=8", "--schedule=wsd:peak=1e-2,decay=0.25,final=1e-3",
        f"--store={tmp_path / 'runs.sqlite'}", f"--out-dir={tmp_path / 'run'}", "--run-id=cli",
        "--json",
    ]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert result["run_id"] == "cli" and result["steps"] == 8 and result["tokens"] == 512
    assert result["params"] > result["params_nonembedding"] > 0
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["resumed_from"] == 8 and again["final_loss"] == result["final_loss"]
    table = CliRunner().invoke(app, ["runs", "show", str(tmp_path / "runs.sqlite"), "cli"])
    assert "finished" in table.stdout


def test_train_reads_a_toml_config_and_prints_a_table(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('d_model = 16\nlayers = 1\nheads = 2\ncontext = 16\nbatch_size = 4\n'
                      'train_data = "python-docs"\neval_data = ["python-docs"]\n'
                      'eval_tokens = 256\ntokens = 512\n')  # fmt: skip
    done = CliRunner().invoke(
        app, ["train", f"--config={config}", f"--out-dir={tmp_path / 'r'}", "--device=cpu"]
    )
    assert done.exit_code == 0, done.output
    assert "final validation loss" in done.stdout and "python-docs" in done.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps=5", "--heads=3"], "heads (3) must divide d_model (16)"),
        (["--steps=5", "--optimizer=sgd"], "unknown optimizer 'sgd'"),
        (["--tokens=10"], "smaller than one batch"),
        (["--steps=5", "--set=colour=blue"], "unknown setting(s) colour"),
        (["--steps=5", "--set", "novalue"], "--set expects NAME=VALUE"),
        (["--steps=5", "--train-data=/no/such/corpus"], "neither a built-in"),
        (["--steps=5", "--schedule=cosine:peak=-1"], "negative"),
    ],
)
def test_train_bad_input_exits_2_with_one_message(extra: list[str], message: str) -> None:
    done = CliRunner().invoke(app, ["train", *TINY, *extra])
    assert done.exit_code == 2
    assert message in done.stderr


def test_sweep_dry_run_lists_the_preset(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["sweep", "--preset=cpu-tiny", "--dry-run", "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)
    assert len(rows) == 24 and len({r["params"] for r in rows}) == 4
    assert {r["tokens"] for r in rows} == {131072, 262144, 524288}
    spec = CliRunner().invoke(app, ["sweep", "--preset=cpu-tiny", "--show-spec"])
    assert tomllib.loads(spec.stdout)["name"] == "cpu-tiny"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a sweep spec file or --preset NAME"),
        (["--preset=nope"], "neither a file nor a preset"),
        (["--preset=cpu-tiny", "--workers=0"], "--workers must be at least 1"),
    ],
)
def test_sweep_bad_input_exits_2(args: list[str], message: str) -> None:
    done = CliRunner().invoke(app, ["sweep", *args])
    assert done.exit_code == 2
    assert message in done.stderr


def test_sweep_spec_with_bad_toml_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text("name = \n")
    done = CliRunner().invoke(app, ["sweep", str(spec)])
    assert done.exit_code == 2 and "invalid TOML" in done.stderr
