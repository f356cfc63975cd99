"""A property-based fuzzer of every command (issue #19): mutated files, JSON/TOML, values, paths.

Each case starts from a valid invocation of one command, built on small files made here, and
applies up to three mutations drawn by hypothesis: an option value replaced (weird numbers,
text, names with ``../``, bad schedule specs), an input file replaced (missing, a folder,
binary, empty, truncated, a CSV cell or column changed, a JSON or TOML leaf or key changed,
deep nesting, a damaged run store), an output path replaced (a folder, a file where a folder
is needed, an unknown image suffix), an argument dropped or an unknown option added. Every
call runs in-process through Typer's ``CliRunner``, in its own folder, and must end

- with exit status 0 (its stderr holds only ``warning:`` lines), or
- with exit status 2 and exactly one line on stderr, ``error: …``;

never with a traceback, never past :data:`CALL_LIMIT_S`, and never writing outside its folder.

Value pools leave out inputs that are valid but expensive (a bootstrap of a million, a run of
a million steps): those are not mistakes, and their limits have their own tests. ``study``
trains 25 models before it analyses: its analysis is fuzzed through ``report`` and its sweep
through ``sweep --dry-run``; its own options are covered by tests/test_hardening.py.

``make test`` runs :data:`DEFAULT_EXAMPLES` cases in all; ``make fuzz`` runs 10,000
(``SCALINGLAB_FUZZ_EXAMPLES``), random rather than derandomised, and writes one JSON line per
command to ``SCALINGLAB_FUZZ_LOG`` (cases, exit 0, exit 2).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scalinglab.cli.main import app
from scalinglab.data import RunStore
from scalinglab.examples import isoflop_sweep
from scalinglab.fitting import fit
from scalinglab.laws import get_law
from scalinglab.laws.curve import predict_curve
from scalinglab.schedules import parse_schedule
from tests import synthetic_downstream
from tests.test_training_sweep import SPEC

#: cases per `make test` run, over all commands
DEFAULT_EXAMPLES = 240
#: wall-clock limit of one call, seconds (a hang or runaway work fails the case)
CALL_LIMIT_S = float(os.environ.get("SCALINGLAB_FUZZ_CALL_LIMIT_S", "60"))
TOTAL_EXAMPLES = int(os.environ.get("SCALINGLAB_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
#: `make fuzz` explores at random; `make test` replays the same cases every time
DERANDOMIZE = "SCALINGLAB_FUZZ_EXAMPLES" not in os.environ
FUZZ_LOG = os.environ.get("SCALINGLAB_FUZZ_LOG")
#: also log every case (its mutations and the line it ended with) to FUZZ_LOG
LOG_CASES = os.environ.get("SCALINGLAB_FUZZ_LOG_CASES", "") not in ("", "0")

runner = CliRunner()


# -- the valid inputs ------------------------------------------------------------------------

CURVE_SPECS = {
    "constant": "constant:peak=3e-4,warmup=100,total=2000",
    "cosine": "cosine:peak=3e-4,warmup=100,total=2000,final=3e-5",
    "wsd": "wsd:peak=3e-4,warmup=100,total=2000,decay=0.2,final=3e-5",
}

#: the sweep tests' tiny spec (2 sizes x 2 budgets), for `sweep --dry-run`
SWEEP_TOML = SPEC

TRAIN_LOG = "".join(
    f"iter {s}: loss {9 / (1 + s) ** 0.2:.4f}, time 12.0ms\n" for s in range(10, 400, 10)
)

TRAIN_TOML = """\
d_model = 16
layers = 1
heads = 2
context = 16
batch_size = 4
steps = 3
train_data = "python-docs"
eval_data = ["python-docs"]
eval_tokens = 128
eval_log_points = 1
threads = 1
device = "cpu"
"""


def _curve_tables() -> dict[str, pd.DataFrame]:
    law = get_law("annealing")

    class Known:
        def __init__(self) -> None:
            self.law, self.params = law, {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.5}

    out = {}
    for name, spec in CURVE_SPECS.items():
        sched = parse_schedule(spec)
        steps = np.arange(200, 2001, 100)
        loss = predict_curve(Known(), sched, steps)
        out[name] = pd.DataFrame({"step": steps, "lr": sched.lr(steps), "loss": loss})
    return out


def _transfer_table() -> pd.DataFrame:
    """Two corpora ('a', 'b') on one (N, D) grid, each also measured on 'code'."""
    rows = []
    for family, e, a in (("a", 1.8, 0.6), ("b", 0.9, 0.4)):
        for n in (1e8, 2e8, 4e8, 8e8):
            for d in (2e9, 4e9, 8e9, 1.6e10):
                loss = e + a * (1e8 / n) ** 0.3 + a * (1e10 / d) ** 0.3
                rows.append((f"{family}-{n:.0e}-{d:.0e}", family, n, d, loss, loss * 1.1 + 0.5))
    return pd.DataFrame(rows, columns=["run_id", "family", "params", "tokens", "train", "code"])


def _backtest_table() -> pd.DataFrame:
    """Two families of 4 sizes, 10 checkpoints each (a Chinchilla law, small noise)."""
    rng = np.random.default_rng(0)
    frames = []
    for family, scale in (("good", 1.0), ("other", 1.05)):
        for n in (1e8, 3e8, 1e9, 3e9):
            tokens = np.linspace(0.1, 1.0, 10) * 20 * n
            loss = scale * (1.8 + 480 / n**0.34 + 2000 / tokens**0.36)
            frames.append(
                pd.DataFrame(
                    {
                        "run_id": f"{family}-{n:.0e}",
                        "family": family,
                        "params": n,
                        "tokens": tokens,
                        "loss": loss * np.exp(0.002 * rng.standard_normal(10)),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine inputs every case copies from."""
    folder = tmp_path_factory.mktemp("fuzz_base")
    runs = isoflop_sweep(noise=0.01, seed=0)
    runs.to_csv(folder / "runs.csv", index=False)
    fit(runs, "chinchilla", bootstrap=8).save(folder / "fit.json")
    curves = _curve_tables()
    for name, table in curves.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    both = pd.concat(
        [t.assign(run_id=n) for n, t in curves.items() if n != "wsd"], ignore_index=True
    )
    fit(both, get_law("annealing")).save(folder / "curve.json")
    _transfer_table().to_csv(folder / "transfer.csv", index=False)
    result = runner.invoke(
        app,
        ["transfer", "fit", str(folder / "transfer.csv"), "--wide", "train", "--wide", "code",
         "--x", "a", "--y", "b", "--irreducible", "joint", "--out", str(folder / "tfit.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    _backtest_table().to_csv(folder / "backtest.csv", index=False)
    store = RunStore(folder / "store.sqlite")
    store.add_run("r1", {"d_model": 16}, family="example", status="finished")
    store.add_observations(runs.assign(run_id=runs["run_id"].str.replace("+", "")))
    store.close()  # its rows are in the file itself, not only in its write-ahead log
    (folder / "sweep.toml").write_text(SWEEP_TOML)
    (folder / "train.toml").write_text(TRAIN_TOML)
    (folder / "train.log").write_text(TRAIN_LOG)
    synthetic_downstream.long().to_csv(folder / "dlong.csv", index=False)
    synthetic_downstream.runs().to_csv(folder / "druns.csv", index=False)
    result = runner.invoke(
        app,
        ["downstream", "fit", str(folder / "dlong.csv"), "--runs", str(folder / "druns.csv"),
         "--loss", "loss", "--bootstrap", "0", "--no-assess", "--out", str(folder / "ds.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


# -- commands as typed arguments ------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One command-line word: ``kind`` says how it may be mutated (``lit``: never)."""

    text: str
    kind: str = "lit"
    #: for an input file: the base file it was made from
    origin: str = ""


def opt(option: str, value: str, kind: str) -> list[Arg]:
    return [Arg(option), Arg(value, kind)]


def lit(*words: str) -> list[Arg]:
    return [Arg(w) for w in words]


@dataclass(frozen=True)
class Command:
    """A valid invocation and the share of the fuzz budget it gets (expensive ones less)."""

    name: str
    args: tuple[Arg, ...]
    weight: float = 1.0


def _cmd(name: str, *parts: list[Arg], weight: float = 1.0) -> Command:
    return Command(name, tuple(a for part in parts for a in part), weight)


TINY_TRAIN = [
    *opt("--d-model", "16", "int:size"), *opt("--layers", "1", "int:size"),
    *opt("--heads", "2", "int:size"), *opt("--context", "16", "int:size"),
    *opt("--batch-size", "4", "int:size"), *opt("--steps", "3", "int:steps"),
    *opt("--train-data", "python-docs", "str:corpus"),
    *opt("--eval-data", "python-docs", "str:corpus"), *opt("--set", "eval_tokens=128", "set"),
    *opt("--set", "threads=1", "set"), *opt("--device", "cpu", "str:device"),
]  # fmt: skip

COMMANDS = [
    _cmd("fit", lit("fit"), [Arg("runs.csv", "file:csv")],
         opt("--law", "chinchilla", "str:law"), opt("--bootstrap", "3", "int:count"),
         opt("--seed", "0", "int:seed"), opt("--loss", "huber", "str:loss"),
         opt("--fix", "alpha=0.34", "assign:fix"), opt("--delta", "1e-3", "float"),
         opt("--column", "loss=loss", "assign:column"), opt("--out", "fit_out.json", "out:file"),
         lit("--json"), weight=2),
    _cmd("predict", lit("predict"), [Arg("fit.json", "file:json")],
         opt("--params", "7e9", "float"), opt("--tokens", "1.4e12", "float"),
         opt("--level", "0.9", "float"), lit("--json"), weight=1.5),
    _cmd("plan", lit("plan"), [Arg("fit.json", "file:json")], opt("--flops", "1e23", "float"),
         opt("--flops-per-token-param", "6", "float"), opt("--level", "0.9", "float")),
    _cmd("isoflop", lit("isoflop"), [Arg("runs.csv", "file:csv")],
         opt("--rel-tol", "0.1", "float"), opt("--level", "0.95", "float"),
         opt("--dataset", "train", "str:any")),
    _cmd("params", lit("params"), opt("--d-model", "512", "int:size"),
         opt("--layers", "8", "int:size"), opt("--vocab", "32000", "int:size"),
         opt("--context", "1024", "int:size"), opt("--heads", "8", "int:size"),
         opt("--kv-heads", "4", "int:size"), opt("--ffn-mult", "4", "float"),
         opt("--mlp", "gelu", "str:any"), opt("--positions", "rotary", "str:any")),
    _cmd("laws", lit("laws"), lit("--json"), weight=0.3),
    _cmd("example", lit("example"), opt("--kind", "compute", "str:kind"),
         opt("--out", "ex.csv", "out:file"), opt("--noise", "0.01", "float"),
         opt("--seed", "1", "int:seed"), weight=0.7),
    _cmd("downstream fit", lit("downstream", "fit"), [Arg("dlong.csv", "file:csv")],
         opt("--runs", "druns.csv", "file:csv"), opt("--loss", "loss", "str:any"),
         opt("--bootstrap", "0", "int:count"), lit("--no-assess"),
         opt("--holdout-fraction", "0.25", "float"), opt("--out", "d.json", "out:file"),
         weight=0.6),
    _cmd("downstream predict", lit("downstream", "predict"), [Arg("ds.json", "file:json")],
         opt("--params", "3e9", "float"), opt("--tokens", "1.2e11", "float"),
         opt("--level", "0.9", "float"), lit("--json"), weight=0.6),
    _cmd("import", lit("import"), [Arg("train.log", "file:text")],
         opt("--pattern", "iter {step}: loss {loss}", "str:pattern"),
         opt("--run-params", "1.06e7", "str:perrun"),
         opt("--tokens-per-step", "12x1024", "str:perrun"),
         opt("--out", "imported.csv", "out:file"), opt("--store", "imp.sqlite", "out:file")),
    _cmd("runs copy", lit("runs", "copy"), [Arg("store.sqlite", "file:sqlite")],
         [Arg("copy.sqlite", "out:file")], weight=0.5),
    _cmd("curve fit", lit("curve", "fit"), [Arg("constant.csv", "file:csv")],
         [Arg("cosine.csv", "file:csv")], opt("--law", "annealing", "str:curvelaw"),
         opt("--warmup", "s1", "str:any"), opt("--decay", "0.999", "float"),
         opt("--schedule", f"constant={CURVE_SPECS['constant']}", "assign:schedule"),
         opt("--fix", "alpha=0.5", "assign:fix"), opt("--out", "c.json", "out:file"),
         opt("--plot", "c.png", "out:figure"), weight=1.5),
    _cmd("curve predict", lit("curve", "predict"), [Arg("curve.json", "file:json")],
         [Arg(CURVE_SPECS["wsd"], "spec")], opt("--data", "wsd.csv", "file:csv"),
         opt("--every", "100", "int:every"),
         opt("--plot", "p.png", "out:figure"), lit("--json")),
    _cmd("curve compare", lit("curve", "compare"), opt("--train", "constant.csv", "file:csv"),
         opt("--train", "cosine.csv", "file:csv"), opt("--test", "wsd.csv", "file:csv"),
         opt("--law", "annealing", "str:curvelaw"), lit("--json"), weight=0.8),
    _cmd("curve optimize", lit("curve", "optimize"), [Arg("curve.json", "file:json")],
         opt("--total", "2000", "int:total"), opt("--peak", "3e-4", "float"),
         opt("--warmup", "100", "int:count"), opt("--final", "3e-5", "float"),
         opt("--knots", "8", "int:knots"), opt("--save-schedule", "s.csv", "out:file"),
         opt("--plot", "o.png", "out:figure"), weight=0.8),
    _cmd("transfer fit", lit("transfer", "fit"), [Arg("transfer.csv", "file:csv")],
         opt("--wide", "train", "str:any"), opt("--wide", "code", "str:any"),
         opt("--x", "a", "str:lossref"), opt("--y", "b", "str:lossref"),
         opt("--irreducible", "joint", "str:any"), opt("--out", "t.json", "out:file")),
    _cmd("transfer predict", lit("transfer", "predict"), [Arg("tfit.json", "file:json")],
         opt("--loss-x", "3.0", "float"), lit("--json")),
    _cmd("transfer matrix", lit("transfer", "matrix"), [Arg("transfer.csv", "file:csv")],
         opt("--wide", "train", "str:any"), opt("--wide", "code", "str:any"),
         opt("--irreducible", "joint", "str:any"), opt("--setting", "train_to_test", "str:any"),
         weight=0.8),
    _cmd("transfer backtest", lit("transfer", "backtest"), [Arg("transfer.csv", "file:csv")],
         opt("--wide", "train", "str:any"), opt("--wide", "code", "str:any"),
         opt("--max-train-flops", "1e19", "float"), opt("--law", "chinchilla", "str:any"),
         weight=0.6),
    _cmd("backtest data", lit("backtest", "data"), [Arg("backtest.csv", "file:csv")],
         opt("--family", "good", "str:any"), opt("--k", "3", "int:count"),
         opt("--fraction", "1.0", "float"), opt("--target-fraction", "0", "float"),
         opt("--choice", "default", "str:any"), opt("--heatmap", "h.png", "out:figure"),
         opt("--out", "b.csv", "out:file"), weight=0.6),
    _cmd("backtest recommend", lit("backtest", "recommend"), [Arg("backtest.csv", "file:csv")],
         opt("--family", "good", "str:any"), lit("--json"), weight=0.5),
    _cmd("runs list", lit("runs", "list"), [Arg("store.sqlite", "file:sqlite")], lit("--json")),
    _cmd("runs show", lit("runs", "show"), [Arg("store.sqlite", "file:sqlite")],
         [Arg("r1", "str:any")]),
    _cmd("runs export", lit("runs", "export"), [Arg("store.sqlite", "file:sqlite")],
         [Arg("export.csv", "out:file")]),
    _cmd("report", lit("report"), [Arg("runs.csv", "file:csv")],
         opt("--out-dir", "rep", "out:dir"), opt("--bootstrap", "0", "int:count"), weight=0.25),
    _cmd("sweep", lit("sweep"), [Arg("sweep.toml", "file:toml")],
         opt("--out-dir", "sw", "out:dir"), opt("--store", "sw.sqlite", "out:file"),
         opt("--workers", "1", "int:count"), lit("--dry-run", "--json"), weight=0.8),
    _cmd("train", lit("train"), opt("--config", "train.toml", "file:toml"), TINY_TRAIN,
         opt("--run-id", "fz", "name"), opt("--store", "t.sqlite", "out:file"),
         opt("--out-dir", "trun", "out:dir"), lit("--json"), weight=0.6),
]  # fmt: skip


# -- mutations -------------------------------------------------------------------------------

#: absolute paths a name might try to write to
ABSOLUTE_ESCAPES = [Path("/tmp/scalinglab-fuzz-escape")]
WEIRD_TEXT = ["", " ", "x", "ü∂", "[/]", "[bold]x", "<script>alert(1)</script>", "a|b", "-",
              "--json", "1e400", "NaN", "../x", "/tmp", "a b", "x" * 300]  # fmt: skip
WEIRD_NUMBERS = ["0", "-1", "-0", "1", "2", "1.5", "-2.5", "1e-300", "1e300", "1e999", "nan",
                 "inf", "-inf", "abc", "", "0x10", "1_000", " 3", "+3",
                 "123456789012345678901234567890"]  # fmt: skip
# whole numbers that are invalid or cheap wherever they go (no million-step runs)
POOLS: dict[str, list[str]] = {
    "int:count": ["0", "-1", "-2", "1", "2", "3", "1.5", "abc", "", "nan", "1e3", "-99999999999"],
    "int:knots": ["0", "1", "2", "3", "1999", "5000", "99999999999999999999", "-3", "x"],
    "int:seed": ["0", "-1", "4294967295", "4294967296", "1180591620717411303424", "1.5", "x"],
    "int:size": ["0", "-1", "1", "2", "3", "5", "7", "1.5", "abc", "", "10000000000000000"],
    "int:steps": ["0", "-1", "1", "2", "1.5", "abc", "", "100000000000", "999999999999999999999"],
    "int:every": ["0", "-1", "1", "7", "5000", "1.5", "abc", "99999999999999999999"],
    "int:total": ["0", "-1", "1", "2", "50", "1.5", "abc", "", "1000000000", "10000000000000"],
    "float": WEIRD_NUMBERS,
    "str:any": WEIRD_TEXT,
    "str:kind": ["compute", "curves", "transfer", "backtest", "downstream", "x", ""],
    "str:pattern": ["iter {step}: loss {loss}", "{step}", "iter {x}: loss {loss}", "", "{",
                    "iter {step}: loss {loss} {loss}", "((", "[a-", "iter {step}", ".*",
                    "iter {step}: loss {val_loss}"],
    "str:perrun": ["1e7", "0", "-1", "nan", "x", "train=1e7", "*=3", "12x", "x1024", "12x1024",
                   "1e400", "=", "99999999999999999999999x99999999999999999999"],
    "str:law": ["chinchilla", "kaplan_lse", "compute", "params_only", "tokens_only",
                "annealing", "multipower", "shifted_power", "nope", ""],
    "str:curvelaw": ["annealing", "multipower", "annealing_size", "chinchilla", "x", ""],
    "str:loss": ["huber", "squares", "l1", ""],
    "str:corpus": ["python-docs", "nope", "", "/", ".", "runs.csv", "fit.json", "x#y"],
    "str:device": ["cpu", "auto", "cuda", "cuda:7", "cudaXYZ", "cpu:0", "mps", "", "meta"],
    "str:lossref": ["a", "b", "a:code", "b:code", "c", ":", "a:", "a:nope", ""],
    "name": ["ok-name", "../escape", "../../escape", str(ABSOLUTE_ESCAPES[0]), "a/b", ".", "..", "",
             "-x", "x" * 300, "ü", "a b", "[/]", "<img src=x onerror=alert(1)>", ".hidden"],
    "spec": ["cosine:peak=3e-4,total=2000", "cosine", "cosine:peak=-1,total=10",
             "constant:peak=nan,total=10", "wsd:peak=1e-3,total=0,decay=0.2", "bogus:x=1", "",
             "cosine:peak=3e-4,total=1e12", "cosine:peak=3e-4,total=100000000000",
             "multistep:peak=1e-3,total=100,milestones=200", "wsd:peak=1e-3,total=100",
             "cosine:peak=3e-4,total=2000,warmup=3000", "linear:peak=1e300,total=50",
             "cyclic:peak=1e-3,total=100,period=0", "invsqrt:peak=1e-3,total=100,timescale=-1",
             "constant:peak=1e-3,total=50,unknown=1", "cosine:peak=3e-4:total=5"],
    "set": ["eval_tokens=-1", "schedule=5", "tokens=1e3", "seed=-1", "run_id='../x'",
            "optimizer='nope'", "eval_data=[]", "eval_data='python-docs'", "weight_decay=nan",
            "grad_clip=-1", "dtype='fp8'", "bogus=1", "=1", "steps", "store='s.csv'",
            "out_dir=5", "optimizer_kwargs=3", "val_fraction=1", "threads=0", "d_ff=0",
            "mlp='relu'", "compile=1", "threads=100000", "eval_every=0",
            "checkpoint_every=-1", "tokenizer='bpe:100'", "tokenizer='bpe:x'"],
    "assign:fix": ["alpha=0.3", "beta=0.3", "E=1.5", "alpha=nan", "alpha=inf", "alpha=x",
                   "nope=1", "alpha", "=1", "alpha=", "alpha=1e300", "L0=-1"],
    "assign:column": ["loss=loss", "nope=params", "loss=nope", "params=loss", "x", "=",
                      "tokens=step"],
    "assign:schedule": [f"constant={CURVE_SPECS['constant']}", "constant=bogus", "nope=cosine",
                        "*=constant:peak=1,total=3", "constant=", "constant=cosine:peak=-1"],
}  # fmt: skip

CSV_CELLS = ["", "nan", "inf", "-inf", "-1", "0", "1e400", "1e-400", "abc", "１", "0x1F", "  ",
             '"', "1,5", "NULL", "True", "x" * 1000, "[/]", "<b>", "9" * 400]  # fmt: skip
JSON_VALUES: list[Any] = [None, float("nan"), float("inf"), -1, 0, 1e308, "x", [], {}, True,
                          10**400, [[[[[1]]]]], {"a": {"b": 1}}]  # fmt: skip
TOML_VALUES = ["-1", "0", '"x"', "[]", "{}", "1e308", "nan", "inf", "true", '"../../evil"',
               "[1, 2]", '"' + "y" * 500 + '"', "1.5", "99999999999999999999"]  # fmt: skip


class CallTimedOut(Exception):
    """A call ran past CALL_LIMIT_S."""


@dataclass
class Case:
    """One mutated invocation, being built in its own folder."""

    folder: Path
    base: Path
    args: list[Arg]
    log: list[str]

    def materialise(self, name: str) -> Path:
        """A fresh copy of the base file ``name`` in the case's folder."""
        path = self.folder / name
        if not path.exists():
            shutil.copy(self.base / name, path)
        return path


def _mutate_csv(draw: Any, path: Path, log: list[str]) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    how = draw(st.sampled_from(["cell", "cell", "cell", "drop_column", "rename_column",
                                "duplicate_row", "header_only", "add_column"]))  # fmt: skip
    if how == "cell" and len(table):
        row = draw(st.integers(0, len(table) - 1))
        column = draw(st.sampled_from(list(table.columns)))
        value = draw(st.sampled_from(CSV_CELLS) | st.text(max_size=20))
        table.loc[row, column] = value
        log.append(f"{path.name}: row {row + 1} column {column} = {value!r}")
    elif how == "drop_column":
        column = draw(st.sampled_from(list(table.columns)))
        table = table.drop(columns=[column])
        log.append(f"{path.name}: column {column} dropped")
    elif how == "rename_column":
        column = draw(st.sampled_from(list(table.columns)))
        new = draw(st.sampled_from(["loss", "params", "", "x", " step", "Loss"]))
        table = table.rename(columns={column: new})
        log.append(f"{path.name}: column {column} renamed {new!r}")
    elif how == "duplicate_row" and len(table):
        row = draw(st.integers(0, len(table) - 1))
        table = pd.concat([table, table.iloc[[row]]], ignore_index=True)
        if len(table.columns) and draw(st.booleans()):
            table.iloc[-1, -1] = draw(st.sampled_from(CSV_CELLS))
        log.append(f"{path.name}: row {row + 1} duplicated")
    elif how == "header_only":
        table = table.iloc[0:0]
        log.append(f"{path.name}: header only")
    else:
        table[draw(st.sampled_from(["extra", "run_id", "lr", "step", "dataset"]))] = draw(
            st.sampled_from(CSV_CELLS)
        )
        log.append(f"{path.name}: a column added")
    table.to_csv(path, index=False)


def _leaves(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every value in nested dicts and lists."""
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            yield from _leaves(v, (*at, i))


def _set_at(value: Any, at: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not at:
        return new
    parent = value
    for key in at[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[at[-1]]
    else:
        parent[at[-1]] = new
    return value


def _mutate_json(draw: Any, path: Path, log: list[str]) -> None:
    data = json.loads(path.read_text())
    at = draw(st.sampled_from(list(_leaves(data))))
    delete = draw(st.booleans()) and len(at) > 0
    new = draw(st.sampled_from(JSON_VALUES))
    data = _set_at(data, at, new, delete)
    path.write_text(json.dumps(data))
    log.append(f"{path.name}: {'/'.join(map(str, at))} {'deleted' if delete else f'= {new!r}'}")


def _mutate_toml(draw: Any, path: Path, log: list[str]) -> None:
    lines = path.read_text().splitlines()
    settings_at = [i for i, line in enumerate(lines) if " = " in line]
    how = draw(st.sampled_from(["value", "value", "delete", "unknown_key", "duplicate"]))
    i = draw(st.sampled_from(settings_at))
    key = lines[i].split(" = ")[0]
    if how == "value":
        value = draw(st.sampled_from(TOML_VALUES))
        lines[i] = f"{key} = {value}"
        log.append(f"{path.name}: {key} = {value}")
    elif how == "delete":
        del lines[i]
        log.append(f"{path.name}: {key} deleted")
    elif how == "unknown_key":
        lines.insert(i, "bogus_key = 1")
        log.append(f"{path.name}: unknown key")
    else:
        lines.insert(i, lines[i])
        log.append(f"{path.name}: {key} twice")
    path.write_text("\n".join(lines) + "\n")


def _mutate_text(draw: Any, path: Path, log: list[str]) -> None:
    lines = path.read_text().splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    lines[i] = draw(st.sampled_from([
        "iter 20: loss nan", "iter -5: loss 3.0", "iter 1e40: loss 3", "iter 30: loss -1",
        "iter 30: loss 1e400", "iter 10: loss 2.0", "", "iter x: loss y",
        "iter 99999999999999999999999: loss 3"]) | st.text(max_size=30))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    log.append(f"{path.name}: line {i + 1} = {lines[i]!r}")


def _mutate_store(draw: Any, path: Path, log: list[str]) -> None:
    how = draw(st.sampled_from(["config", "loss_text", "version", "drop_table", "status"]))
    statements = {
        "config": "UPDATE runs SET config = '{not json'",
        "loss_text": "UPDATE observations SET loss = 'abc' WHERE rowid = 1",
        "version": "INSERT INTO scalinglab_schema (version) VALUES (99)",
        "drop_table": "DROP TABLE observations",
        "status": "UPDATE runs SET status = 'weird'",
    }
    con = sqlite3.connect(path)
    try:
        con.execute(statements[how])
        con.commit()
    finally:
        con.close()
    log.append(f"{path.name}: {how}")


def _mutate_file(draw: Any, case: Case, index: int, kind: str) -> None:
    name = case.args[index].origin or case.args[index].text
    how = draw(st.sampled_from(["content"] * 12 + ["missing", "folder", "binary", "empty",
                                                    "truncated", "deep"]))  # fmt: skip
    target = case.folder / f"m{index}_{len(case.log)}_{Path(name).name}"
    if how == "missing":
        case.log.append(f"{name} missing")
    elif how == "folder":
        target.mkdir()
        case.log.append(f"{name} is a folder")
    elif how == "binary":
        target.write_bytes(bytes(draw(st.binary(min_size=1, max_size=200))) + b"\xff\xfe\x00")
        case.log.append(f"{name} binary")
    elif how == "empty":
        target.write_bytes(b"")
        case.log.append(f"{name} empty")
    elif how == "truncated":
        data = (case.base / name).read_bytes()
        target.write_bytes(data[: draw(st.integers(1, max(1, len(data) - 1)))])
        case.log.append(f"{name} truncated")
    elif how == "deep":
        target.write_text("[" * 100_000 if kind != "file:toml" else "a = " + "[" * 5000)
        case.log.append(f"{name} nested 100,000 deep")
    else:
        shutil.copy(case.base / name, target)
        mutate = {"file:csv": _mutate_csv, "file:json": _mutate_json, "file:toml": _mutate_toml,
                  "file:sqlite": _mutate_store, "file:text": _mutate_text}[kind]  # fmt: skip
        mutate(draw, target, case.log)
    case.args[index] = Arg(target.name, kind, name)


OUTPUTS = {
    "out:file": ["new.json", "adir", "afile/x.json", "nodir/x.json", "afile", "ok.csv", "x.xyz"],
    "out:figure": ["f.png", "f.svg", "f.pdf", "f.xyz", "f", "adir", "afile/f.png", "F.PNG"],
    "out:dir": ["newdir", "afile", "adir", "afile/sub", "a/b/c"],
}


def _mutate(draw: Any, case: Case) -> None:
    """One mutation: mostly a value or a file's content; sometimes a word dropped or added."""
    values = [i for i, a in enumerate(case.args) if a.kind != "lit"]
    how = draw(st.sampled_from(["value"] * 17 + ["drop", "unknown"]))
    if how == "unknown" or not values:
        extra = draw(st.sampled_from(["--no-such-option", "--json", "extra-arg", "--help"]))
        case.args.append(Arg(extra))
        case.log.append(f"+ {extra}")
        return
    i = draw(st.sampled_from(values))
    kind = case.args[i].kind
    if how == "drop":
        option = case.args[i - 1].text.startswith("--")
        del case.args[i]
        if option:
            del case.args[i - 1]
        case.log.append(f"- argument {i}")
    elif kind.startswith("file:"):
        _mutate_file(draw, case, i, kind)
    elif kind.startswith("out:"):
        new = draw(st.sampled_from(OUTPUTS[kind]))
        case.args[i] = Arg(new, kind)
        case.log.append(f"output {new}")
    else:
        text = st.text(max_size=12).filter(lambda t: "\x00" not in t)
        new = draw(st.sampled_from(POOLS[kind]) if draw(st.integers(0, 6)) else text)
        case.args[i] = replace(case.args[i], text=new)
        case.log.append(f"value {new!r}")


# -- running and checking ------------------------------------------------------------------


def _timeout(signum: int, frame: FrameType | None) -> None:
    raise CallTimedOut(f"call ran past {CALL_LIMIT_S:.0f} s")


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _invoke(case: Case) -> Any:
    """Run the case in its folder with a time limit."""
    argv = [a.text for a in case.args]
    for a in case.args:  # every input file is the case's own copy
        if a.kind.startswith("file:") and not (case.folder / a.text).exists():
            if (case.base / a.text).exists():
                case.materialise(a.text)
    previous = signal.signal(signal.SIGALRM, _timeout)
    cwd = Path.cwd()
    os.chdir(case.folder)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT_S)
    try:
        return runner.invoke(app, argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)


def check(result: Any, case: Case) -> int:
    """The property: exit 0, or exit 2 with one line; no traceback; nothing else."""
    where = f"scalinglab {' '.join(repr(a.text) for a in case.args)}\nmutations: {case.log}"
    if isinstance(result.exception, CallTimedOut):
        pytest.fail(f"hang (> {CALL_LIMIT_S:.0f} s): {where}")
    stderr = result.stderr.strip()
    if result.exit_code == 0:
        assert result.exception is None, where
        bad = [line for line in stderr.splitlines() if not line.startswith("warning:")]
        assert not bad, f"stderr of a successful call: {bad}\n{where}"
        return 0
    if result.exit_code == 2 and isinstance(result.exception, SystemExit):
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), f"{stderr!r}\n{where}"
        return 2
    trace = "".join(traceback.format_exception(result.exception)) if result.exception else ""
    pytest.fail(f"exit {result.exit_code}: {stderr or result.output}\n{trace}\n{where}")


def _examples(command: Command) -> int:
    total_weight = sum(c.weight for c in COMMANDS)
    # rounded up, so that the commands' cases add up to at least the number asked for
    return max(2, math.ceil(TOTAL_EXAMPLES * command.weight / total_weight))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_fuzz(command: Command, base: Path, tmp_path: Path) -> None:
    counts = {0: 0, 2: 0}
    sandbox = tmp_path / "cases"
    sandbox.mkdir()
    serial = iter(range(10**9))
    before = _entries(tmp_path)

    @settings(
        max_examples=_examples(command),
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one_case(data: st.DataObject) -> None:
        folder = sandbox / f"case{next(serial)}"
        folder.mkdir()
        (folder / "adir").mkdir()
        (folder / "afile").write_text("not a folder\n")
        case = Case(folder, base, list(command.args), [])
        for _ in range(data.draw(st.integers(0, 3), label="mutations")):
            _mutate(data.draw, case)
        result = _invoke(case)
        code = check(result, case)
        counts[code] += 1
        if FUZZ_LOG and LOG_CASES:
            with open(FUZZ_LOG, "a") as fh:
                line = (result.stderr.strip().splitlines() or [""])[-1][:200]
                fh.write(json.dumps({"case": command.name, "mutations": case.log,
                                     "exit": code, "line": line}) + "\n")  # fmt: skip
        escaped = {n for n in _entries(sandbox) if not n.startswith("case")}
        escaped |= _entries(tmp_path) - before
        escaped |= {str(p) for p in ABSOLUTE_ESCAPES if p.exists()}
        assert not escaped, f"a write left the case's folder: {escaped}\n{case.log}"
        shutil.rmtree(folder, ignore_errors=True)

    tick = time.perf_counter()
    one_case()
    if FUZZ_LOG:
        with open(FUZZ_LOG, "a") as fh:
            record = {"command": command.name, "cases": counts[0] + counts[2],
                      "exit_0": counts[0], "exit_2": counts[2],
                      "seconds": round(time.perf_counter() - tick, 1)}  # fmt: skip
            fh.write(json.dumps(record) + "\n")


def test_the_fuzzer_catches_a_traceback_and_a_second_line() -> None:
    """The property itself: a crash, a hang and a two-line error are failures."""
    case = Case(Path("."), Path("."), [Arg("x")], [])

    class Result:
        def __init__(self, code: int, exception: BaseException | None, stderr: str) -> None:
            self.exit_code, self.exception, self.stderr, self.output = (
                code, exception, stderr, stderr)  # fmt: skip

    assert check(Result(2, SystemExit(2), "error: one line\n"), case) == 2
    assert check(Result(0, None, "warning: a caveat\n"), case) == 0
    for bad in (
        Result(1, ValueError("boom"), "Traceback ..."),
        Result(2, SystemExit(2), "error: one\nerror: two\n"),
        Result(2, SystemExit(2), "Usage: ...\n"),
        Result(1, CallTimedOut("slow"), ""),
        Result(0, None, "RuntimeWarning: overflow\n"),
    ):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check(bad, case)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_baseline_is_valid(command: Command, base: Path, tmp_path: Path) -> None:
    """Unmutated, each invocation works: the fuzzer starts from inputs that are right."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder\n")
    case = Case(tmp_path, base, list(command.args), [])
    result = _invoke(case)
    assert result.exit_code == 0, (command.name, result.output)
