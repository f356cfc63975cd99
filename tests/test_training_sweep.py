"""Sweeps: spec parsing, expansion (token and isoFLOP budgets), the cpu-tiny preset, and a
tiny sweep run by two worker processes that resumes a partial run and skips finished ones."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore
from scalinglab.errors import SpecError
from scalinglab.training.presets import PRESETS
from scalinglab.training.sweep import STOP_GRACE_S, SweepSpec, load_sweep, run_sweep
from scalinglab.training.trainer import param_count, train

SPEC = """
name = "t"
workers = 2
threads = 1
tokens = [1024, 2048]

[base]
context = 16
batch_size = 4
train_data = "python-docs"
eval_data = ["python-docs"]
eval_tokens = 256
eval_log_points = 1
device = "cpu"

[models]
a = { d_model = 8, layers = 1, heads = 2 }
b = { d_model = 16, layers = 1, heads = 2 }

[schedules]
wsd = "wsd:peak=1e-2,warmup=0.1,decay=0.2,final=1e-3"
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_sweep_runs_in_workers_resumes_partial_runs_and_skips_finished(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict(tomllib.loads(SPEC), source="t.toml")
    store, out = tmp_path / "runs.sqlite", tmp_path / "out"
    configs = spec.configs(out_dir=out, store=store)
    assert len(configs) == 4
    partial = next(c for c in configs if c.name == "t-b-D2K-wsd-adamw-s0")

    def interrupt(step: int, metrics: Any) -> None:
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(partial, on_step=interrupt)
    assert RunStore(store).get_run(partial.name)["status"] == "interrupted"

    result = run_sweep(spec, store=store, out_dir=out)
    assert [r.status for r in result.runs] == ["finished"] * 4
    resumed = {r.run_id: r.resumed_from for r in result.runs if r.resumed_from is not None}
    assert resumed == {partial.name: 18}  # its last checkpoint (every 3 of 32 steps)
    runs = RunStore(store).runs().set_index("run_id")
    assert set(runs["status"]) == {"finished"}
    assert runs.loc["t-a-D1K-wsd-adamw-s0", "family"] == "t-wsd-adamw"
    assert runs.loc["t-a-D1K-wsd-adamw-s0", "last_tokens"] == 1024
    losses = {r.run_id: r.final_loss["python-docs"] for r in result.runs}
    assert losses["t-b-D2K-wsd-adamw-s0"] < losses["t-a-D1K-wsd-adamw-s0"]

    # run again from the command line: everything is already finished
    cli = CliRunner().invoke(
        app,
        ["sweep", str(_write(tmp_path, SPEC)), f"--store={store}", f"--out-dir={out}", "--json"],
    )
    assert cli.exit_code == 0, cli.output
    again = json.loads(cli.stdout)
    assert [r["status"] for r in again["runs"]] == ["skipped"] * 4
    assert again["runs"][0]["loss[python-docs]"] == losses[again["runs"][0]["run_id"]]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_isoflop_budgets_give_each_size_its_tokens(tmp_path: Path) -> None:
    data = tomllib.loads(SPEC)
    del data["tokens"]
    data["flops"] = [1e9]
    spec = SweepSpec.from_dict(data)
    configs = spec.configs(out_dir=tmp_path, store=tmp_path / "s.sqlite")
    assert {c.name for c in configs} >= {"t-a-C1e09-wsd-adamw-s0"}
    for config in configs:
        params = param_count(config, 256).total
        assert config.tokens == int(1e9 / (6 * params))
    data["flops"] = [1e5]
    with pytest.raises(SpecError, match=r"FLOP budget 1e\+05 gives .* less than one batch"):
        SweepSpec.from_dict(data).configs(out_dir=tmp_path, store=tmp_path / "s.sqlite")


def test_cpu_tiny_preset_covers_sizes_budgets_schedules_and_both_corpora(tmp_path: Path) -> None:
    spec = load_sweep("cpu-tiny")
    configs = spec.configs(out_dir=tmp_path, store=tmp_path / "s.sqlite")
    assert len(spec.models) >= 4 and len(spec.budgets) >= 3 and len(spec.schedules) >= 2
    assert len(configs) == len(spec.models) * len(spec.budgets) * len(spec.schedules)
    assert all(set(c.eval_data) == {"python-stdlib", "python-docs"} for c in configs)
    assert spec.workers == 2 and spec.threads == 1
    assert tomllib.loads(PRESETS["cpu-tiny"])["name"] == "cpu-tiny"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "unknown key\\(s\\) epochs"),
        ({"flops": [1e12]}, "exactly one of 'tokens' or 'flops'"),
        ({"tokens": [-5]}, "positive numbers"),
        ({"models": {}}, "at least one model size"),
        ({"schedules": {"c": 3}}, "schedules.c must be a spec string"),
        ({"seeds": ["zero"]}, "seeds must be a whole number"),
        ({"workers": 0}, "workers must be a positive integer"),
    ],
)
def test_bad_sweep_specs_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SweepSpec.from_dict({**tomllib.loads(SPEC), **change}, source="t.toml")


def test_bad_run_settings_name_the_run(tmp_path: Path) -> None:
    data = tomllib.loads(SPEC)
    data["models"]["a"]["heads"] = 3
    spec = SweepSpec.from_dict(data)
    with pytest.raises(SpecError, match="heads \\(3\\) must divide d_model \\(8\\)"):
        spec.configs(out_dir=tmp_path, store=tmp_path / "s.sqlite")
    with pytest.raises(SpecError, match="neither a file nor a preset"):
        load_sweep("cpu-tinyy")


LONG_SPEC = SPEC.replace("workers = 2", "workers = 1").replace(
    "tokens = [1024, 2048]", "tokens = [4_000_000]"
)


def test_sigterm_stops_a_sweep_and_marks_its_run_interrupted(tmp_path: Path) -> None:
    store, out = tmp_path / "runs.sqlite", tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "from scalinglab.cli.main import main; main()",
        "sweep",
        str(_write(tmp_path, LONG_SPEC)),
        f"--store={store}",
        f"--out-dir={out}",
        "--json",
    ]
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # wait until the first run has written observations
        while time.monotonic() < deadline and sweep.poll() is None:
            if store.exists() and len(RunStore(store).observations()) > 0:
                break
            time.sleep(0.5)
        assert sweep.poll() is None, sweep.communicate()
        sweep.send_signal(signal.SIGTERM)
        tick = time.monotonic()
        _, stderr = sweep.communicate(timeout=STOP_GRACE_S)
    finally:
        sweep.kill()
    # it stops within seconds, not when the run would have ended
    assert sweep.returncode != 0
    assert time.monotonic() - tick < STOP_GRACE_S, stderr
    statuses = RunStore(store).runs().set_index("run_id")["status"]
    assert "interrupted" in set(statuses) and "running" not in set(statuses), statuses
