"""One meaning per option name, in every command and subcommand (README "Option names").

The rule, checked on the built Typer app: ``--out`` is a file of the command's main output,
folders are ``--*-dir``, an option naming a run store is ``--store``, ``--params`` is the model
size a command forecasts at (numbers) and ``--run-params`` the size of runs it reads
(``[RUN=]N``), ``--bootstrap`` is a count whose default follows one stated rule, and every
hidden option is a renamed one that still works and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from scalinglab.cli._common import RENAMED_OPTIONS
from scalinglab.cli.main import COMMANDS, app, load_command

README = Path(__file__).resolve().parents[1] / "README.md"
FOLDER_WORDS = re.compile(r"\b(folder|folders|directory)\b", re.IGNORECASE)
#: commands whose output is a report or a verdict read from intervals bootstrap by default
#: (downstream: fewer, since each replicate refits the loss law and every task's error law);
#: every other command fits and prints a point estimate unless asked (0)
BOOTSTRAP_DEFAULTS = {
    "study": 200,
    "report": 200,
    "downstream fit": 100,
    "downstream backtest": 100,
}


def _commands() -> Iterator[tuple[str, Any]]:
    """Every leaf command: (its path, e.g. ``curve fit``, and the click command)."""
    stack = [(name, load_command(name)) for name in COMMANDS]
    while stack:
        path, command = stack.pop()
        subcommands = getattr(command, "commands", None)
        if subcommands:
            stack.extend((f"{path} {name}", sub) for name, sub in subcommands.items())
        else:
            yield path, command


COMMAND_LIST = sorted(_commands(), key=lambda item: item[0])


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def _annotation(param: Any) -> Any:
    """The Python type a parameter is declared with, without ``None`` and ``list``."""
    annotation = param.type_descriptor.annotation
    inner = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    if len(inner) == 1 and get_args(inner[0]):
        return get_args(inner[0])[0]
    return inner[0]


def _visible(param: Any, name: str) -> bool:
    return name in param.opts and not param.hidden


@pytest.mark.parametrize(("path", "command"), COMMAND_LIST, ids=[p for p, _ in COMMAND_LIST])
def test_option_names_mean_one_thing(path: str, command: Any) -> None:
    names = {opt for p in _options(command) if not p.hidden for opt in p.opts}
    for param in _options(command):
        help_text = param.help or ""
        where = f"scalinglab {path} {'/'.join(param.opts)}"
        if _visible(param, "--out"):
            assert _annotation(param) is Path and not FOLDER_WORDS.search(help_text), (
                f"{where}: --out is a file of the main output; a folder is --out-dir"
            )
        if _annotation(param) is Path and FOLDER_WORDS.search(help_text) and not param.hidden:
            assert all(o.endswith("-dir") for o in param.opts), f"{where}: a folder is --*-dir"
        if re.match(r"(the )?run store\b", help_text, re.IGNORECASE) and not param.hidden:
            assert param.opts == ["--store"], f"{where}: an option naming a run store is --store"
        if any("store" in o for o in param.opts) and not param.hidden:
            assert param.opts == ["--store"], f"{where}: a store is --store"
        if _visible(param, "--params"):
            assert _annotation(param) is float, f"{where}: --params is the size to forecast at"
        if _visible(param, "--run-params"):
            assert _annotation(param) is str and "RUN=N" in help_text, f"{where}: [RUN=]N"
        if _visible(param, "--bootstrap"):
            assert _annotation(param) is int
            assert param.default == BOOTSTRAP_DEFAULTS.get(path, 0), (
                f"{where}: default {param.default}; the rule is in BOOTSTRAP_DEFAULTS"
            )
        if param.hidden:
            (old,) = param.opts
            assert old in RENAMED_OPTIONS and RENAMED_OPTIONS[old] in names, (
                f"{where}: a hidden option is a renamed one, beside its new name"
            )


def test_the_readme_table_names_every_option_of_the_rule() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("### Option names") :]
    table = table[: table.index("\n#")]
    for name in ["--out", "--out-dir", "--store", "--params", "--run-params", "--bootstrap"]:
        assert f"`{name}" in table, f"README 'Option names' lacks {name}"
    for old, new in RENAMED_OPTIONS.items():
        assert old in table and new in table


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "--out", "{file}"],
        ["report", "{file}", "--out", "{file}"],
        ["downstream", "fit", "missing.csv", "--report", "{file}"],
        ["curve", "fit", "missing.csv", "--params", "run=1e8"],
        ["import", "missing.log", "--params", "1e7", "--out", "x.csv"],
    ],
    ids=lambda argv: " ".join(a for a in argv if not a.startswith("{") and "." not in a),
)
def test_renamed_options_still_work_and_say_so(tmp_path: Path, argv: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    args = [a.format(file=afile) if a == "{file}" else str(tmp_path / a) if "." in a else a
            for a in argv]  # fmt: skip
    result = CliRunner().invoke(app, args)
    old = next(a for a in argv if a in RENAMED_OPTIONS)
    assert f"deprecated: {old} is now {RENAMED_OPTIONS[old]}" in result.stderr
    # the old name reaches the command: its own check of the value (a folder given as a
    # file, a missing input) answers, not a usage error about an unknown option
    assert result.exit_code == 2 and "No such option" not in result.stderr, result.stderr
