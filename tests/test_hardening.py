"""Issue #19: every example of its table, as a regression test.

Each bad input ends in one line on stderr and exit status 2 (or works); names never take a
write out of the output folder; the Markdown report escapes what it prints; a run is locked
while it trains; a killed sweep's workers start nothing new; stale checkpoint temp files go.

The examples whose fix is in ``fitting/`` were the lead's part of the issue; they are here too.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli._common import user_errors
from scalinglab.cli.main import app
from scalinglab.data import RunStore, load_observations
from scalinglab.errors import ScalingLabError, SpecError
from scalinglab.examples import isoflop_sweep
from scalinglab.fitting import fit
from scalinglab.laws import get_law
from scalinglab.laws.curve import predict_curve
from scalinglab.report.document import Report, _md_text
from scalinglab.schedules import lr_areas, lr_areas_at, parse_schedule
from scalinglab.user_input import check_name
from tests.test_training_sweep import LONG_SPEC

runner = CliRunner()

TINY = [
    "--d-model=16", "--layers=1", "--heads=2", "--context=16", "--batch-size=4",
    "--train-data=python-docs", "--eval-data=python-docs", "--set=eval_tokens=128",
    "--set=threads=1", "--device=cpu",
]  # fmt: skip
CURVE = {
    "constant": "constant:peak=3e-4,warmup=100,total=2000",
    "cosine": "cosine:peak=3e-4,warmup=100,total=2000,final=3e-5",
}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def one_error(args: list[str], *words: str) -> str:
    """Run a command that must fail with exit 2 and exactly one line naming ``words``."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, (args, res.output, res.exception)
    message = res.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error:"), message
    assert "Traceback" not in res.output
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return message


def works(args: list[str]) -> Any:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs, and the wrong kinds of thing the issue gave in their place."""
    folder = tmp_path_factory.mktemp("hardening")
    out = {"folder": folder}
    runs = isoflop_sweep(noise=0.01)
    out["runs"] = folder / "runs.csv"
    runs.to_csv(out["runs"], index=False)
    out["fit"] = folder / "fit.json"
    fit(runs, "chinchilla").save(out["fit"])
    law = get_law("annealing")

    class Known:
        def __init__(self) -> None:
            self.law, self.params = law, {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.5}

    frames = []
    for name, spec in CURVE.items():
        sched = parse_schedule(spec)
        steps = np.arange(200, 2001, 100)
        table = pd.DataFrame(
            {"step": steps, "lr": sched.lr(steps), "loss": predict_curve(Known(), sched, steps)}
        )
        out[name] = folder / f"{name}.csv"
        table.to_csv(out[name], index=False)
        frames.append(table.assign(run_id=name))
    out["curve"] = folder / "curve.json"
    fit(pd.concat(frames, ignore_index=True), law).save(out["curve"])
    out["adir"] = folder / "adir"
    out["adir"].mkdir()
    out["adir.csv"] = folder / "adir.csv"
    out["adir.csv"].mkdir()
    out["afile"] = folder / "afile"
    out["afile"].write_text("a file\n")
    out["bin"] = folder / "bin.json"
    out["bin"].write_bytes(bytes(range(256)) * 8)
    out["bin.dat"] = folder / "bin.dat"
    out["bin.dat"].write_bytes(bytes(range(255, -1, -1)) * 8)
    return out


# -- paths: a folder, a binary file, an output of the wrong kind ----------------------------


def test_paths_of_the_wrong_kind_are_one_line(files: dict[str, Path]) -> None:
    f = files
    one_error(["fit", f["runs"], "--out", f["adir"]], "--out", "is a directory")
    one_error(["predict", f["bin"], "--params", "1e9", "--tokens", "1e10"], "not UTF-8")
    one_error(["sweep", f["adir"]], "is a directory")
    one_error(["train", "--config", f["bin.dat"]], "not UTF-8")
    one_error(["runs", "export", f["folder"] / "s.sqlite", f["adir.csv"]], "is a directory")
    one_error(["report", f["runs"], "--out-dir", f["afile"]], "--out-dir", "is a file")
    one_error(["study", "--out-dir", f["afile"]], "--out-dir", "is a file")
    # a folder given as data says so (not "no such file"), whatever its name
    one_error(["fit", f["adir"]], "is a directory")
    one_error(["fit", f["adir.csv"]], "is a directory")
    one_error(["fit", f["runs"], "--out", f["afile"] / "fit.json"], "is a file")


def test_outputs_are_checked_before_the_work(files: dict[str, Path]) -> None:
    tick = time.perf_counter()
    one_error(["curve", "fit", files["constant"], "--plot", "p.xyz"], "--plot", ".xyz", ".png")
    one_error(["curve", "predict", files["curve"], CURVE["cosine"], "--plot", "p"], "no suffix")
    assert time.perf_counter() - tick < 30  # no fit was made


# -- malformed structured content ---------------------------------------------------------


def test_deeply_nested_fit_json_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    one_error(["predict", deep, "--params", "1e9", "--tokens", "1e10"], "nested too deeply")
    one_error(["plan", deep, "--flops", "1e22"], "nested too deeply")
    also = tmp_path / "deep2.json"
    also.write_text("[" * 100 + "]" * 100)
    one_error(["predict", also, "--params", "1e9", "--tokens", "1e10"], "more than 64 levels")


def test_a_store_with_a_config_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    RunStore(path).add_run("r1", {"d_model": 16})
    with sqlite3.connect(path) as con:
        con.execute("UPDATE runs SET config = '{not json'")
    one_error(["runs", "list", path], "run 'r1'", "not a JSON object")
    one_error(["runs", "show", path, "r1"], "not a JSON object")


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    RunStore(path)
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO scalinglab_schema (version) VALUES (99)")
    one_error(["runs", "list", path], "version 99", "upgrade scalinglab")


def test_a_truncated_token_cache_is_rebuilt(tmp_path: Path) -> None:
    from scalinglab.training.corpora import load_corpus
    from scalinglab.training.files import cache_dir
    from scalinglab.training.tokenizer import ByteTokenizer, tokenize

    corpus = load_corpus("python-docs")
    first = tokenize(corpus, ByteTokenizer())
    cached = next((cache_dir() / "tokens").glob(f"{corpus.fingerprint}-*.npz"))
    cached.write_bytes(cached.read_bytes()[:100])  # cut short: a BadZipFile before
    again = tokenize(corpus, ByteTokenizer())
    np.testing.assert_array_equal(again.train, first.train)
    assert cached.stat().st_size > 1000  # written again


def test_a_damaged_checkpoint_gives_no_torch_advice(tmp_path: Path) -> None:
    from scalinglab.training.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"step": 3, "evil": Path("x")}))
    with pytest.raises(SpecError) as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value) and "refused for safety" in str(err.value)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(SpecError, match="delete it"):
        load_checkpoint(path)


# -- sizes that allocated without limit ---------------------------------------------------


def test_schedules_beyond_the_limit_are_refused_at_once(files: dict[str, Path]) -> None:
    big = files["folder"] / "big.csv"
    pd.DataFrame({"step": [10, 10**12], "lr": [3e-4, 3e-4], "loss": [3.0, 2.5]}).to_csv(
        big, index=False
    )
    tick = time.perf_counter()
    one_error(["curve", "fit", big, "--law", "annealing"], "row 2", "step", "100,000,000")
    one_error(["curve", "predict", files["curve"], "constant:peak=3e-4,total=10000000000"],
              "total=10,000,000,000", "limit")  # fmt: skip
    one_error(["curve", "optimize", files["curve"], "--total", "1000000000", "--peak", "3e-4"],
              "10,000,000")  # fmt: skip
    one_error(["train", *TINY, "--steps", "1000000000000"], "steps", "limit")
    assert time.perf_counter() - tick < 30


def test_a_ten_million_step_schedule_works_in_bounded_memory(files: dict[str, Path]) -> None:
    sched = parse_schedule("wsd:peak=3e-4,warmup=1000,total=10000000,decay=0.2,final=3e-5")
    curve = fit_of(files["curve"])
    multipower = get_law("multipower")

    class Fitted:
        def __init__(self) -> None:
            self.law = multipower
            self.params = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 300.0, "C": 2.0,
                           "beta": 0.6, "gamma": 0.5}  # fmt: skip

    steps = np.arange(100_000, 10_000_001, 100_000)
    tracemalloc.start()
    try:
        annealing = predict_curve(curve, sched, steps)
        power = predict_curve(Fitted(), sched, steps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(np.isfinite(annealing)) and np.all(np.isfinite(power))
    assert np.all(np.diff(annealing[:80]) < 0)  # loss falls along the stable phase
    # one dense per-step array would take 80 MB; chunks of 2**18 steps take 2 MiB each
    assert peak < 64 * 2**20, peak


def fit_of(path: Path) -> Any:
    from scalinglab.fitting import Fit

    return Fit.load(path)


def test_chunked_areas_equal_the_dense_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    import scalinglab.schedules.areas as areas

    monkeypatch.setattr(areas, "CHUNK_STEPS", 777)
    sched = parse_schedule("wsd:peak=3e-4,warmup=200,total=5000,decay=0.3,shape=exp,final=3e-5")
    lr = sched.array()
    warm = sched.warmup_steps
    s1_dense = np.cumsum(lr)
    momentum = np.zeros_like(lr)
    drops = np.r_[0.0, lr[:-1] - lr[1:]]
    drops[: warm + 1] = 0.0
    for i in range(1, lr.size):
        momentum[i] = 0.999 * momentum[i - 1] + drops[i]
    at = np.array([4999, 0, 777, 776, 1554, 3000, 3000])
    for source in (lr, sched):
        s1, s2 = lr_areas_at(source, at, 0.999, anneal_start=warm)
        np.testing.assert_allclose(s1, s1_dense[at], rtol=1e-12)
        np.testing.assert_allclose(s2, np.cumsum(momentum)[at], rtol=1e-9, atol=1e-15)
    full_s1, _ = lr_areas(sched)
    np.testing.assert_allclose(full_s1, s1_dense, rtol=1e-12)
    for law in (get_law("multipower"), get_law("annealing", warmup="neither")):
        steps = np.array([300, 1000, 4000, 5000])
        dense = law.curve_features(lr, steps)  # type: ignore[attr-defined]
        lazy = law.curve_features(sched, steps)  # type: ignore[attr-defined]
        for name in dense:
            np.testing.assert_allclose(lazy[name], dense[name], rtol=1e-12)


def _fit_peak_bytes(law: str, search: str, rows: int) -> int:
    base = isoflop_sweep(noise=0.0)
    table = pd.concat([base] * (rows // len(base) + 1), ignore_index=True).iloc[:rows].copy()
    table["loss"] *= np.exp(np.random.default_rng(0).normal(0, 0.01, rows))
    table["run_id"] = [f"r{i}" for i in range(rows)]
    tracemalloc.start()
    try:
        fit(table, law, search=search, max_iter=3)
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("law", "search"), [("kaplan", "fast"), ("chinchilla", "full")])
def test_fit_memory_per_row_meets_four_gb_for_a_million_rows(
    law: str, search: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's target, < 4 GB for 1M rows, is at most 4 KiB more per extra row.

    The objective is evaluated over starts in chunks of a fixed number of entries; a small
    chunk makes it bite at test sizes, as the default one does at a million rows
    (``benchmarks/fit_memory.py`` measures that).
    """
    monkeypatch.setattr("scalinglab.fitting.objective.CHUNK_ENTRIES", 1 << 12)
    small, large = _fit_peak_bytes(law, search, 300), _fit_peak_bytes(law, search, 900)
    per_row = (large - small) / 600
    assert per_row < 4 * 2**10, f"{per_row / 2**10:.1f} KiB per row"


# -- values passed straight to a library ----------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_seeds_out_of_range(files: dict[str, Path], seed: str) -> None:
    one_error(["fit", files["runs"], "--bootstrap", "2", "--seed", seed], "seed", seed)
    one_error(["example", "--out", files["folder"] / "e.csv", "--seed", seed], "seed")
    one_error(["train", *TINY, "--steps", "2", "--seed", seed], "seed")


def test_values_are_checked_before_use(files: dict[str, Path]) -> None:
    one_error(["params", "--d-model", "64", "--layers", "2", "--vocab", "100", "--context", "64",
               "--ffn-mult", "nan"], "--ffn-mult", "nan")  # fmt: skip
    one_error(["train", *TINY, "--device", "cudaXYZ", "--steps", "2"], "device", "cudaXYZ")
    one_error(["train", *TINY, "--set", "schedule=5", "--steps", "2"], "schedule", "text")
    one_error(["example", "--out", files["folder"] / "e.csv", "--noise", "nan"], "--noise")
    one_error(["fit", files["runs"], "--delta", "inf"], "--delta", "inf")


def test_valid_input_that_crashed_transfer_on_one_family(files: dict[str, Path]) -> None:
    one_error(["transfer", "matrix", files["runs"]], "two families", "'example'")
    one_error(["transfer", "backtest", files["runs"]], "two families")


@pytest.mark.parametrize(
    "args",
    [["--fix", "alpha=0.34", "--fix", "beta=0.28"], ["--law", "compute", "--fix", "alpha=0.3"],
     ["--law", "tokens_only", "--fix", "beta=0.3"]],
)  # fmt: skip
def test_fixing_every_exponent_fits(files: dict[str, Path], args: list[str]) -> None:
    works(["fit", files["runs"], *args])


# -- hangs and unbounded work ---------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_study_with_no_workers_starts_nothing(files: dict[str, Path], workers: str) -> None:
    out = files["folder"] / f"study{workers}"
    one_error(["study", "--workers", workers, "--out-dir", out], "--workers")
    assert not (out / "runs.sqlite").exists()


def test_a_million_bootstrap_refits_are_refused(files: dict[str, Path]) -> None:
    # a clear error at once, not a silent run out of memory (a wrong fix would hang here)
    res = runner.invoke(app, ["fit", str(files["runs"]), "--bootstrap", "1000000"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


# -- accepted silently ------------------------------------------------------------------------


def _fit_with(files: dict[str, Path], name: str, change: Any) -> Path:
    data = json.loads(files["fit"].read_text())
    change(data)
    path = files["folder"] / name
    path.write_text(json.dumps(data))
    return path


def test_a_fit_with_a_nan_parameter_is_refused(files: dict[str, Path]) -> None:
    path = _fit_with(files, "nan.json", lambda d: d["params"].update(E=float("nan")))
    one_error(["predict", path, "--params", "1e9", "--tokens", "1e10"], "E")
    one_error(["plan", path, "--flops", "1e22"], "E")


def test_a_fit_with_a_broken_seed_is_refused(files: dict[str, Path]) -> None:
    # make fuzz found it: the seed of the prediction draws went to numpy unchecked
    for seed in (None, -1, "x"):
        path = _fit_with(files, "seed.json", lambda d, s=seed: d["options"].update(seed=s))
        one_error(["predict", path, "--params", "1e9", "--tokens", "1e10"], "options.seed")


def test_a_fit_of_an_unknown_format_version_is_refused(files: dict[str, Path]) -> None:
    path = _fit_with(files, "v99.json", lambda d: d.update(scalinglab_fit=99))
    one_error(["predict", path, "--params", "1e9", "--tokens", "1e10"], "99")


def test_a_fixed_value_outside_the_bounds_is_refused(files: dict[str, Path]) -> None:
    one_error(["fit", files["runs"], "--fix", "alpha=-1"], "alpha")


def test_options_a_law_ignores_are_refused(files: dict[str, Path]) -> None:
    one_error(["predict", files["fit"], "--params", "1e9", "--tokens", "1e10", "--flops", "1e20"],
              "--flops")  # fmt: skip
    one_error(["curve", "predict", files["curve"], CURVE["cosine"], "--model-params", "-5"],
              "model size")  # fmt: skip
    one_error(["curve", "optimize", files["curve"], "--total", "2000", "--peak", "3e-4",
               "--model-params", "1e8"], "model size")  # fmt: skip


def test_a_missing_lr_cell_is_not_interpolated(files: dict[str, Path], tmp_path: Path) -> None:
    table = pd.read_csv(files["constant"])
    table.loc[5, "lr"] = np.nan
    table.to_csv(tmp_path / "gap.csv", index=False)
    one_error(["curve", "fit", tmp_path / "gap.csv", files["cosine"], "--law", "annealing"],
              "row 6", "lr", "missing learning rate")  # fmt: skip


def test_a_store_must_be_named_as_one(tmp_path: Path) -> None:
    one_error(["train", *TINY, "--steps", "2", "--store", tmp_path / "s.csv"], ".sqlite")
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(ScalingLabError, match=r"\.sqlite"):
        RunStore(tmp_path / "t.csv")


def test_sweep_seeds_are_checked_by_a_dry_run(tmp_path: Path) -> None:
    spec = tmp_path / "sn.toml"
    spec.write_text(_SWEEP.replace("seeds = [0]", "seeds = [-1]"))
    one_error(["sweep", spec, "--dry-run"], "seeds", "-1")


_SWEEP = """\
name = "sn"
seeds = [0]
tokens = [4096]
[base]
context = 16
batch_size = 2
d_model = 16
layers = 1
heads = 2
train_data = "python-docs"
eval_data = ["python-docs"]
[models]
xs = {}
[schedules]
cosine = "cosine:peak=1e-3"
"""


# -- messages that misled -------------------------------------------------------------------


def test_a_diverged_run_says_so(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    message = one_error(
        ["train", *TINY, "--steps", "12", "--schedule", "constant:peak=1e12", "--set",
         "grad_clip=0", "--set", "eval_every=4", "--store", store, "--out-dir",
         tmp_path / "run", "--run-id", "boom"],
        "diverged", "learning rate",
    )  # fmt: skip
    assert "missing value" not in message
    assert RunStore(store).runs().set_index("run_id").loc["boom", "status"] == "failed"


def test_curve_fit_names_the_users_column(files: dict[str, Path], tmp_path: Path) -> None:
    table = pd.read_csv(files["constant"]).assign(lr=1e307)
    table.to_csv(tmp_path / "huge.csv", index=False)
    message = one_error(["curve", "fit", tmp_path / "huge.csv", "--law", "annealing"], "'lr'")
    assert "s1" not in message


def test_a_usage_mistake_is_one_line(files: dict[str, Path]) -> None:
    one_error(["fit", files["runs"], "--bootstrap", "abc"], "--bootstrap", "integer")
    one_error(["fit", files["runs"], "--plot", "p.png"], "no such option: --plot")
    one_error(["fitt"], "no such command", "fit")
    res = runner.invoke(app, ["curve"])
    assert res.exit_code == 0 and "fit" in res.stdout  # a group alone shows its help


def test_library_warnings_never_reach_the_terminal_raw(capsys: pytest.CaptureFixture[str]) -> None:
    table = isoflop_sweep().assign(loss=lambda d: d["loss"].where(d.index != 3, -1.0))

    @user_errors
    def noisy() -> None:
        np.exp(np.array([1000.0]))  # numpy's overflow warning
        warnings.warn("a library's advice", UserWarning, stacklevel=1)  # not scalinglab's
        load_observations(table, on_invalid="drop")  # scalinglab's own warning

    noisy()
    err = capsys.readouterr().err
    assert "overflow" not in err and "advice" not in err and "RuntimeWarning" not in err
    assert err.count("warning: ") == 1 and "dropped 1 invalid row" in err

    @user_errors
    def failing() -> None:
        load_observations(table, on_invalid="drop")
        raise SpecError("the real problem")

    with pytest.raises(SystemExit):
        failing()
    assert capsys.readouterr().err.strip() == "error: the real problem"


def test_user_text_is_not_rich_markup(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    RunStore(store).add_observations(
        pd.DataFrame({"run_id": ["a[/]b"], "family": ["[bold]f"], "step": [1], "loss": [3.0]})
    )
    res = works(["runs", "show", store, "a[/]b"])
    assert "a[/]b" in res.stdout and "[bold]f" in res.stdout


# -- names are not paths --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "../../escape", "/tmp/escape-abs", "a/b", "..",
                                  ".", "", ".hidden", "x" * 300])  # fmt: skip
def test_run_ids_that_are_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError):
        check_name(name, "run_id")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        one_error(["train", *TINY, "--steps", "2", "--run-id", name], "run_id")
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == [] and not Path("/tmp/escape-abs").exists()


_NAMED_SWEEP = """\
name = "{name}"
tokens = [4096]
[base]
context = 16
batch_size = 2
train_data = "python-docs"
eval_data = ["python-docs"]
[models]
"{model}" = {{ d_model = 16, layers = 1, heads = 2 }}
[schedules]
"{schedule}" = "cosine:peak=1e-3"
"""


@pytest.mark.parametrize(
    ("name", "model", "schedule"),
    [("../evil", "m", "c"), ("/tmp/evil", "m", "c"), ("ok", "../m", "c"), ("ok", "m", "a/b"),
     ("ok", "m", "..")],
)  # fmt: skip
def test_sweep_and_model_names_that_are_paths_are_refused(
    tmp_path: Path, name: str, model: str, schedule: str
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(_NAMED_SWEEP.format(name=name, model=model, schedule=schedule))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        one_error(["sweep", spec, "--dry-run"], "not a safe name")
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]
    assert not Path("/tmp/evil").exists()


def test_markdown_report_escapes_what_it_prints(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    report = Report(title=f"runs of {evil}", summary=["run a|b on <img src=x onerror=alert(1)>"])
    sec = report.section("section")
    sec.paragraphs.append(f"family {evil} *bold* [link](http://x)")
    sec.table("runs", [{"run_id": "a|b", "family": evil, "dataset": "x\ny"}])
    text = report.write(tmp_path)["markdown"].read_text()
    assert not re.search(r"(?<!\\)[<\[]", text), text  # every < and [ escaped
    assert "\\<script\\>" in text and "\\<img src=x" in text
    row = next(line for line in text.splitlines() if line.startswith("| a"))
    assert row.count(" | ") == 2 and "a\\|b" in row  # three cells: the | is escaped
    assert _md_text("- item") == "\\- item" and _md_text("3. x") == "3\\. x"


def test_report_command_escapes_run_ids_families_and_datasets(
    files: dict[str, Path], tmp_path: Path
) -> None:
    table = pd.read_csv(files["runs"])
    table["family"] = "<img src=x onerror=alert(1)>"
    table["run_id"] = table["run_id"] + "|<b>"
    table["dataset"] = "d|<script>"
    table.to_csv(tmp_path / "evil.csv", index=False)
    works(["report", tmp_path / "evil.csv", "--out-dir", tmp_path / "rep", "--bootstrap", "0"])
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert not re.search(r"(?<!\\)<", md), md
    assert "\\|\\<b\\>" in md and "d\\|\\<script\\>" in md  # run ids and datasets
    for evil in ("<img src=x", "|<script>", "|<b>"):  # the page's own scripts aside
        assert evil not in html


# -- work safety ----------------------------------------------------------------------------


def test_a_run_is_locked_while_it_trains(tmp_path: Path) -> None:
    from scalinglab.training.lock import RunLockedError, run_lock

    args = ["train", *TINY, "--steps", "2", "--out-dir", tmp_path / "r", "--run-id", "locked",
            "--store", tmp_path / "s.sqlite"]  # fmt: skip
    with run_lock(tmp_path / "r", "locked"):
        one_error(args, "being trained by pid", str(os.getpid()))
        with pytest.raises(RunLockedError):
            with run_lock(tmp_path / "r", "locked"):
                pass
    works(args)  # released


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    from scalinglab.training.lock import run_lock

    code = (
        "import sys, time\nfrom scalinglab.training.lock import run_lock\n"
        f"with run_lock({str(tmp_path)!r}, 'r'):\n    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    with run_lock(tmp_path, "r"):
        pass


def test_stale_checkpoint_temp_files_are_removed_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    works(["train", *TINY, "--steps", "2", "--out-dir", out, "--run-id", "tmpfiles"])
    assert not stale.exists() and (out / "checkpoint.pt").exists()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_of_a_killed_sweep_start_nothing_new(tmp_path: Path) -> None:
    spec = tmp_path / "orphan.toml"
    spec.write_text(LONG_SPEC)  # two long runs, one worker: one trains, one is queued
    store = tmp_path / "runs.sqlite"
    command = [sys.executable, "-c", "from scalinglab.cli.main import main; main()", "sweep",
               str(spec), f"--store={store}", f"--out-dir={tmp_path / 'out'}"]  # fmt: skip
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sweep.poll() is None:
            if store.exists() and len(RunStore(store).observations()) > 0:
                break
            time.sleep(0.5)
        assert sweep.poll() is None, sweep.communicate()
        workers = [p for p in _children(sweep.pid) if _alive(p)]
        sweep.send_signal(signal.SIGKILL)  # no Ctrl-C, no SIGTERM: the parent is just gone
        sweep.wait(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.5)
    finally:
        sweep.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert workers and not any(_alive(p) for p in workers)
    runs = RunStore(store).runs().set_index("run_id")["status"]
    # the run in progress is marked interrupted; the queued one was never started
    assert list(runs) == ["interrupted"], runs


# -- what the fuzzer found --------------------------------------------------------------------


def test_fuzzer_findings_stay_fixed(files: dict[str, Path], tmp_path: Path) -> None:
    huge = pd.read_csv(files["constant"]).astype({"step": object})
    huge.loc[0, "step"] = "9" * 400  # pandas' to_numeric overflowed on it
    huge.to_csv(tmp_path / "huge.csv", index=False)
    one_error(["curve", "fit", tmp_path / "huge.csv", "--law", "annealing"],
              "row 1", "step", "not a finite number")  # fmt: skip
    works(["example", "--out", tmp_path / "e.csv", "--noise", "-0"])  # numpy refused -0.0
    one_error(["curve", "optimize", files["curve"], "--total", "2000", "--peak", "3e-4",
               "--knots", "99999999999999999999"], "knots")  # fmt: skip
    one_error(["curve", "optimize", files["curve"], "--total", "2000", "--peak", "1e-300",
               "--warmup", "0", "--final", "0", "--knots", "8"],
              "no finite final loss")  # fmt: skip
    one_error(["train", *TINY, "--steps", "2", "--set", "threads=100000"], "threads")
    dropped = tmp_path / "dropped.sqlite"
    RunStore(dropped).add_run("r1", {})
    with sqlite3.connect(dropped) as con:
        con.execute("DROP TABLE observations")
    one_error(["runs", "list", dropped], "damaged", "observations")
    log = tmp_path / "train.log"
    log.write_text("iter 99999999999999999999999: loss 3\niter 10: loss 2.0\n")
    one_error(["import", log, "--pattern", "iter {step}: loss {loss}", "--run-params", "1e7",
               "--tokens-per-step", "12x1024", "--out", tmp_path / "i.csv"],
              "too large")  # fmt: skip
    bad_transfer = tmp_path / "t.json"
    bad_transfer.write_bytes(b"\xff\xfe binary")
    one_error(["transfer", "predict", bad_transfer, "--loss-x", "3"], "not UTF-8")
