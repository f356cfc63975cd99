"""The command line as a whole: lazy command loading, --version, -h, help text, output
formats, text escaping, progress bars and the example data."""

from __future__ import annotations

import csv
import importlib
import io
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import scalinglab
import scalinglab.cli
from scalinglab.cli import _common
from scalinglab.cli.main import COMMANDS, app, load_command

runner = CliRunner()


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from scalinglab.cli.main import main; sys.argv = ['scalinglab', '--help'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'scalinglab.fitting') "
        "if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": ""},
    ).stdout
    assert "HEAVY []" in out
    for name in COMMANDS:
        assert name in out


def test_the_command_table_matches_what_the_modules_register() -> None:
    # every module of scalinglab.cli registers its commands when imported
    for module in pkgutil.iter_modules(scalinglab.cli.__path__, "scalinglab.cli."):
        importlib.import_module(module.name)
    group = typer.main.get_command(app)
    registered = {
        info.name or (info.callback.__name__ if info.callback else "")
        for info in app.registered_commands
    } | {g.name for g in app.registered_groups if g.name}
    assert registered == set(COMMANDS), "add new commands to COMMANDS in cli/main.py"
    for name, (_, help_line) in COMMANDS.items():
        command = load_command(name)
        first = (command.help or "").strip().splitlines()[0]
        assert first == help_line, f"{name}: COMMANDS says {help_line!r}, the command {first!r}"
    assert set(group.list_commands(None)) == set(COMMANDS)  # type: ignore[arg-type]


def test_version_and_short_help() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"scalinglab {scalinglab.__version__}"
    assert runner.invoke(app, ["-V"]).stdout == res.stdout
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "--install-completion" in res.stdout
    res = runner.invoke(app, ["fit", "-h"])
    assert res.exit_code == 0 and "--bootstrap" in res.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_no_type_after_flags(name: str) -> None:
    command = load_command(name)
    paths = [[name]]
    if hasattr(command, "commands"):
        paths += [[name, sub] for sub in command.commands]
    for path in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.stdout, path
        assert "<list[" not in res.stdout, path
        if "--json" in res.stdout:
            assert "--format" in res.stdout, path


def test_format_csv_tsv_json_and_full_width_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    res = runner.invoke(app, ["laws", "--format", "csv"])
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["law"] for r in rows} >= {"chinchilla", "multipower", "shifted_power"}
    assert "# laws" in res.stderr and "# laws" not in res.stdout
    res = runner.invoke(app, ["laws", "--format", "tsv"])
    assert res.stdout.splitlines()[0].split("\t") == ["law", "inputs", "parameters", "form"]
    as_json = json.loads(runner.invoke(app, ["laws", "--format", "json"]).stdout)
    assert as_json == json.loads(runner.invoke(app, ["laws", "--json"]).stdout)
    res = runner.invoke(app, ["laws", "--json", "--format", "csv"])
    assert res.exit_code == 2 and "two outputs" in res.output
    # not a terminal: a table is as wide as its longest value, nothing cut
    res = runner.invoke(app, ["laws"])
    assert "…" not in res.stdout
    form = next(r["form"] for r in rows if r["law"] == "kaplan_lse")
    assert form in res.stdout


def test_print_table_keeps_long_values_whole() -> None:
    long_id = "cpu-tiny-l-D512K-wsd-adamw-s0-" * 6
    out = io.StringIO()
    console = Console(file=out, markup=False, emoji=False, highlight=False, width=80)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "console", console)
        _common.print_table([{"run": long_id, "loss": 1.23456789}], title="runs")
    assert long_id in out.getvalue()


def test_user_text_is_printed_as_written(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, markup=False, emoji=False, highlight=False, width=200)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "console", console)
        _common.console.print("starcoder:train: 8 runs [bold]x[/] lr[warmup]")
        _common.note("warning", "family [red]a[/red] :train:")
        console.print(_common.markup("recommended: [bold]{}[/] ({:.2f})", "run[0]:train:", 0.5))
        _common.print_table([{"dataset": "starcoder:train:", "x": "[b]y[/b]"}])
    text = out.getvalue()
    assert "starcoder:train: 8 runs [bold]x[/] lr[warmup]" in text
    assert "warning: family [red]a[/red] :train:" in text
    assert "recommended: run[0]:train: (0.50)" in text
    assert "starcoder:train:" in text and "[b]y[/b]" in text
    assert "🚋" not in text


def test_progress_bar_only_on_a_terminal_and_after_its_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    with _common.progress_bar("work") as progress:  # stderr is not a terminal under pytest
        progress(1, 2)
        calls.append((1, 2))
    assert calls == [(1, 2)]
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=100)
    monkeypatch.setattr(_common, "err_console", terminal)
    with _common.progress_bar("quick work", delay=5.0) as progress:
        progress(1, 1)
    assert "quick work" not in out.getvalue()
    with _common.progress_bar("slow work", delay=0.05) as progress:
        progress(1, 4)
        time.sleep(0.4)
        progress(4, 4)
    assert "slow work" in out.getvalue() and "1/4" in out.getvalue()


@pytest.mark.parametrize(
    ("kind", "files"),
    [
        ("compute", ["runs.csv"]),
        ("curves", ["constant.csv", "cosine.csv", "wsd.csv", "LICENSE-luo2025.txt"]),
        ("transfer", ["sweep.csv"]),
        ("backtest", ["checkpoints.csv", "my_runs.csv"]),
    ],
)
def test_example_kinds_write_their_files(kind: str, files: list[str], tmp_path: Path) -> None:
    res = runner.invoke(app, ["example", "--kind", kind, "--out-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    written = {Path(f["file"]).name for f in payload["files"]}
    assert set(files) <= written
    for name in files:
        assert (tmp_path / name).stat().st_size > 0
    if kind == "curves":
        assert "MIT License" in (tmp_path / "LICENSE-luo2025.txt").read_text()
        assert (tmp_path / "cosine.csv").read_text().startswith("step,lr,loss")


def test_example_out_is_for_the_compute_kind_only(tmp_path: Path) -> None:
    res = runner.invoke(app, ["example", "--out", str(tmp_path / "runs.parquet")])
    assert res.exit_code == 0 and (tmp_path / "runs.parquet").exists()
    res = runner.invoke(app, ["example", "--kind", "curves", "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "--out-dir" in res.output


def test_shell_completion_reaches_lazily_loaded_commands() -> None:
    exe = str(Path(sys.executable).parent / "scalinglab")

    def complete(words: str) -> list[str]:
        env = {
            "_SCALINGLAB_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
            "PATH": "",
        }
        out = subprocess.run([exe], env=env, capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert complete("scalinglab cu") == ["curve"]
    assert complete("scalinglab curve f") == ["fit"]
    assert "--bootstrap" in complete("scalinglab fit --boo")


def test_intervals_and_percentages_stay_numbers_for_programs() -> None:
    from scalinglab._format import Interval, Percent

    rows = [{"run": "a", "N*": Interval(2e9, 1e9, 3e9), "ARE": Percent(0.0123), "x": float("nan")}]
    out = io.StringIO()
    console = Console(file=out, markup=False, emoji=False, highlight=False, width=200)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "console", console)
        _common.print_table(rows)
        mp.setattr(sys, "stdout", io.StringIO())
        with _common.use_format(_common.OutputFormat.csv):
            _common.print_table(rows)
        text = sys.stdout.getvalue()  # type: ignore[attr-defined]
        mp.setattr(sys, "stdout", io.StringIO())
        with _common.use_format(_common.OutputFormat.json):
            _common.print_table(rows)
        as_json = json.loads(sys.stdout.getvalue())  # type: ignore[attr-defined]
    assert "2B [1B, 3B]" in out.getvalue() and "1.23%" in out.getvalue()
    assert text.splitlines() == [
        "run,N*,N*_lo,N*_hi,ARE (%),x",
        "a,2000000000.0,1000000000.0,3000000000.0,1.23,",
    ]
    assert as_json == [
        {"run": "a", "N*": 2e9, "N*_lo": 1e9, "N*_hi": 3e9, "ARE (%)": 1.23, "x": None}
    ]


def test_laws_starts_without_pandas_scipy_or_matplotlib() -> None:
    code = (
        "import sys; from scalinglab.cli.main import main; sys.argv = ['scalinglab', 'laws'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out and "chinchilla" in out
