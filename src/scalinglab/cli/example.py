"""``scalinglab example``: write the built-in example sweep, for trying every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from scalinglab.cli._common import check_outputs, console, print_json, user_errors
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.examples import CHINCHILLA_TRUTH, isoflop_sweep


@app.command("example")
@user_errors
def example_command(
    out: Annotated[Path, typer.Option(help="Where to write the table (.csv or .parquet).")] = Path(
        "example_runs.csv"
    ),
    noise: Annotated[float, typer.Option(help="Lognormal noise on the loss.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a synthetic isoFLOP sweep drawn from a known Chinchilla law."""
    if noise < 0:
        raise SpecError(f"--noise must be non-negative, got {noise}")
    if out.suffix not in (".csv", ".parquet"):
        raise SpecError(f"--out must end in .csv or .parquet, got '{out.name}'")
    check_outputs(files={"--out": out})
    table = isoflop_sweep(noise=noise, seed=seed)
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    elif out.suffix == ".csv":
        table.to_csv(out, index=False)
    else:
        raise SpecError(f"--out must end in .csv or .parquet, got '{out.name}'")
    if as_json:
        print_json({"path": str(out), "rows": len(table), "truth": CHINCHILLA_TRUTH})
    else:
        console.print(f"wrote {len(table)} runs to {escape(str(out))} (truth: {CHINCHILLA_TRUTH})")
