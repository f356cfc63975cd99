"""``scalinglab runs list|show|export|copy``: look into a run store, or move it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from scalinglab.cli._common import check_outputs, console, print_json, print_table, user_errors
from scalinglab.cli.data_options import JsonOpt
from scalinglab.cli.main import app
from scalinglab.data import RunStore
from scalinglab.data.store import STORE_ENV, default_store
from scalinglab.errors import InputError

runs_app = typer.Typer(
    help="Look into a run store (a .sqlite file or a postgresql:// URL), or copy it.",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")

StoreArg = Annotated[
    str | None,
    typer.Argument(
        help=f"The run store: a .sqlite file or a postgresql://user@host/db URL "
        f"(default: ${STORE_ENV})."
    ),
]
NamedStoreArg = Annotated[
    str, typer.Argument(help="The run store: a .sqlite file or a postgresql://user@host/db URL.")
]
_LIST_COLUMNS = ["run_id", "family", "status", "n_observations", "last_step", "last_tokens"]


def open_store(store: str | None) -> RunStore:
    """The existing store a command reads: the one named, else ``$SCALINGLAB_STORE``."""
    location = store or default_store()
    if location is None:
        raise InputError(f"name a run store, or set {STORE_ENV}")
    return RunStore(location, create=False)


@runs_app.command("list")
@user_errors
def list_command(store: StoreArg = None, as_json: JsonOpt = False) -> None:
    """List the runs in a store with their status, progress and where they ran."""
    opened = open_store(store)
    table = opened.runs()
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    if as_json:
        print_json(records)
        return
    print_table(
        [{str(k): ("" if v is None else v) for k, v in r.items()} for r in records],
        title=f"runs in {opened.label}",
        columns=[*_LIST_COLUMNS, "updated_at", "job"],
    )


@runs_app.command("show")
@user_errors
def show_command(
    store: NamedStoreArg,
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run: status, config, and its last loss on each dataset."""
    run = open_store(store).get_run(run_id)
    if as_json:
        print_json(run)
        return
    console.print(
        Text(str(run["run_id"]), style="bold")
        + f" family {run['family'] or '-'} · {run['status']} · "
        f"{run['n_observations']} observations · created {run['created_at']} · "
        f"updated {run['updated_at']}" + (f" · {run['job']}" if run["job"] else ""),
        highlight=False,
        markup=False,
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
    store: NamedStoreArg,
    out: Annotated[Path, typer.Argument(help="Output file: .csv, .csv.gz, .tsv or .parquet.")],
    as_json: JsonOpt = False,
) -> None:
    """Export every observation in a store as one Observations table."""
    check_outputs(files={"OUT": out})
    rows = open_store(store).export(out)
    if as_json:
        print_json({"path": str(out), "rows": rows})
    else:
        console.print(f"wrote {rows} observations to {out}", highlight=False)


@runs_app.command("copy")
@user_errors
def copy_command(
    source: Annotated[str, typer.Argument(help="The store to copy from (file or URL).")],
    destination: Annotated[
        str, typer.Argument(help="The store to copy into (created if absent; file or URL).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Copy every run and observation from one store into another, e.g. SQLite to PostgreSQL.

    Runs keep their config, status and timestamps; rows already in the destination under
    the same key are replaced, so copying again is harmless. The copy lands whole or not at
    all.
    """
    origin = RunStore(source, create=False)
    target = RunStore(destination)
    runs, rows = origin.copy_to(target)
    if as_json:
        print_json(
            {"source": origin.label, "destination": target.label, "runs": runs, "rows": rows}
        )
    else:
        console.print(
            f"copied {runs} runs and {rows} observations from {origin.label} to {target.label}",
            highlight=False,
            markup=False,
        )
