"""``scalinglab runs list|show|export``: look into a run store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from scalinglab.cli._common import check_outputs, console, print_json, print_table, user_errors
from scalinglab.cli.main import app
from scalinglab.data import RunStore

runs_app = typer.Typer(help="Look into a run store (.sqlite).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

StoreArg = Annotated[Path, typer.Argument(help="The run store (.sqlite file).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_LIST_COLUMNS = ["run_id", "family", "status", "n_observations", "last_step", "last_tokens"]


@runs_app.command("list")
@user_errors
def list_command(store: StoreArg, as_json: JsonOpt = False) -> None:
    """List the runs in a store with their status and progress."""
    table = RunStore(store, create=False).runs()
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    if as_json:
        print_json(records)
        return
    print_table(
        [{str(k): ("" if v is None else v) for k, v in r.items()} for r in records],
        title=f"runs in {store.name}",
        columns=[*_LIST_COLUMNS, "updated_at"],
    )


@runs_app.command("show")
@user_errors
def show_command(
    store: StoreArg,
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run: status, config, and its last loss on each dataset."""
    run = RunStore(store, create=False).get_run(run_id)
    if as_json:
        print_json(run)
        return
    console.print(
        f"[bold]{escape(run['run_id'])}[/] family {escape(run['family'] or '-')} · "
        f"{run['status']} · "
        f"{run['n_observations']} observations · created {run['created_at']} · "
        f"updated {run['updated_at']}",
        highlight=False,
    )
    for key, value in sorted(run["config"].items()):
        console.print(f"  {key} = {value}", highlight=False, markup=False)
    print_table(
        [{k: ("" if v is None else v) for k, v in d.items()} for d in run["datasets"]],
        title="last measurement per dataset",
    )


@runs_app.command("export")
@user_errors
def export_command(
    store: StoreArg,
    out: Annotated[Path, typer.Argument(help="Output file: .csv, .csv.gz, .tsv or .parquet.")],
    as_json: JsonOpt = False,
) -> None:
    """Export every observation in a store as one Observations table."""
    check_outputs(files={"OUT": out})
    rows = RunStore(store, create=False).export(out)
    if as_json:
        print_json({"path": str(out), "rows": rows})
    else:
        console.print(f"wrote {rows} observations to {escape(str(out))}", highlight=False)
