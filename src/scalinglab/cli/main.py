"""The ``scalinglab`` command: thin wrappers that parse, call the library and print.

Every command lives in a module of ``scalinglab.cli`` that registers it on :data:`app` when
imported. Those modules import the library (pandas, scipy, matplotlib: seconds), so the root
group imports only the module of the command that runs: ``scalinglab --help`` lists the
commands from :data:`COMMANDS` without importing any of them.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:  # Typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

#: every top-level command: name → (module that registers it, the help line listed by --help);
#: tests/test_cli_main.py checks that this matches what the modules register
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": (
        "compute",
        "Fit a compute scaling law to a table of runs (by default each run's last measurement).",
    ),
    "predict": (
        "compute",
        "Forecast the loss of a new run from a saved fit, with its intervals and flags.",
    ),
    "laws": ("compute", "List the laws scalinglab can fit, with their inputs and parameters."),
    "example": ("example", "Write example data with a known truth, for trying every command."),
    "plan": (
        "planning",
        "Compute-optimal model size, tokens, tokens per parameter and loss at each budget.",
    ),
    "isoflop": (
        "planning",
        "IsoFLOP analysis (Chinchilla approach 2): a parabola per budget, power laws in C.",
    ),
    "params": (
        "planning",
        "Total, embedding and non-embedding parameters, and training FLOPs per token.",
    ),
    "study": (
        "study",
        "Train the cpu-tiny sweep (or reuse it), fit every law, and write the report.",
    ),
    "report": (
        "study",
        "Analyse any run store or table as far as its data allow, and write the report.",
    ),
    "train": (
        "train",
        "Train one small GPT (or resume it from its checkpoint), writing observations to a store.",
    ),
    "sweep": (
        "train",
        "Train a grid of runs (sizes x budgets x schedules x optimizers x seeds) in parallel.",
    ),
    "backtest": (
        "backtest",
        "Backtests: fit a family's smaller models, forecast its largest, score by ARE.",
    ),
    "curve": (
        "curve",
        "Loss curves from learning-rate schedules: fit, predict, compare laws, choose a schedule.",
    ),
    "downstream": (
        "downstream",
        "Downstream task error from compute and validation loss: fit, predict, backtest.",
    ),
    "runs": (
        "runs",
        "Look into a run store (a .sqlite file or a postgresql:// URL), or copy it.",
    ),
    "import": (
        "importer",
        "Import training runs from the tools that logged them into a run store.",
    ),
    "transfer": (
        "transfer",
        "Loss-to-loss prediction: L_y = K·(L_x − E_x)^κ + E_y between datasets.",
    ),
}


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and return its click command (or group)."""
    from scalinglab.cli._common import with_format_option

    importlib.import_module(f"scalinglab.cli.{COMMANDS[name][0]}")
    # one meaning of --format everywhere: every command with --json gets it
    apps = [app]
    while apps:
        current = apps.pop()
        for info in current.registered_commands:
            if info.callback is not None:
                info.callback = with_format_option(info.callback)
        apps.extend(g.typer_instance for g in current.registered_groups if g.typer_instance)
    # the modules imported so far, as one click group: only the command that runs is built
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS`, imports a command's module when it runs."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        # a stand-in that --help and shell completion list; resolve_command loads the real one
        return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self.commands[args[0]] = load_command(args[0])
        return super().resolve_command(ctx, args)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """A usage mistake Typer finds is one line with exit 2, like every other error.

        (Typer would print a five-line box; ``scalinglab fit --bootstrap abc`` says
        ``error: scalinglab fit: Invalid value for '--bootstrap': …``.) A group called
        without a command prints its help.
        """
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError" and err.ctx is not None:
                typer.echo(err.ctx.get_help())
                sys.exit(0)
            where = f"{err.ctx.command_path}: " if err.ctx is not None else ""
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            _one_line(f"{where}{err.format_message()}{hint}")
            sys.exit(2)
        except ClickException as err:
            _one_line(err.format_message())
            sys.exit(err.exit_code)
        except typer.Abort:
            _one_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> None:
    from scalinglab.cli._common import _print_error  # only when there is an error to print

    _print_error(message)


def _show_no_type_for_flags() -> None:
    """Typer prints ``<bool>`` after every flag (``--json <bool>``), though a flag takes no
    value, and ``<list[str]>`` after repeatable options: show nothing, and ``<str>...``."""
    for cls in (TyperOption, TyperArgument):
        shown = cls.display_type_rich

        def display_type_rich(self: Any, ctx: Any, shown: Any = shown) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            label = shown(self, ctx)
            if label is not None and label.startswith("<list[") and label.endswith("]>"):
                return f"<{label[6:-2]}>..."
            return label

        cls.display_type_rich = display_type_rich  # type: ignore[method-assign]


_show_no_type_for_flags()

app = typer.Typer(
    name="scalinglab",
    cls=LazyGroup,
    help="Forecast what a language-model training run will achieve, from small runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from scalinglab import __version__

        typer.echo(f"scalinglab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Forecast what a language-model training run will achieve, from small runs."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``scalinglab`` console script."""
    # `kill` stops a run as Ctrl-C does: the store marks it interrupted (not left "running")
    # and a sweep stops its workers' runs the same way
    signal.signal(signal.SIGTERM, _interrupt)
    app()
