"""``scalinglab study`` (train a small scaling study and report it) and ``scalinglab report``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scalinglab.cli._common import (
    check_outputs,
    console,
    note,
    print_json,
    renamed_option,
    user_errors,
)
from scalinglab.cli.data_options import (
    ColumnOpt,
    JsonOpt,
    LossUnitOpt,
    StoreOpt,
    column_map,
    loss_unit,
)
from scalinglab.cli.main import app
from scalinglab.data.loaders import masked_url, store_url
from scalinglab.data.store import default_store
from scalinglab.errors import SpecError
from scalinglab.study import STUDY_PRESETS, Study, analyse, load, run_study


def _analyse_and_write(
    study_source: Any,
    out: Path,
    title: str,
    bootstrap: int,
    dataset: str | None,
    column: list[str] | None = None,
    unit: str = "nats",
) -> tuple[Study, dict[str, Path]]:
    from scalinglab.report.study_report import build_report

    table = load(study_source, columns=column_map(column), loss_unit=loss_unit(unit))
    with console.status("fitting every law (compute, curves, loss-to-loss, backtest)…"):
        study = analyse(table, dataset=dataset, bootstrap=bootstrap)
        written = build_report(study, title=title).write(out)
    return study, written


def _print_summary(study: Study, written: dict[str, Path], seconds: float) -> None:
    console.rule("summary")
    for line in study.summary:
        console.print(f"• {line}", highlight=False, markup=False)
    for part, reason in study.notes.items():
        note("not made", f"{part}: {reason}")
    console.print(
        f"report: {written['html']} (also {written['markdown'].name} and "
        f"{len(written) - 2} PNG files) — {seconds:.0f} s in all",
        highlight=False,
    )


def _source_name(source: Path) -> str:
    url = store_url(source)
    return source.name if url is None else masked_url(url)


@app.command("study")
@user_errors
def study_command(
    out_dir: Annotated[
        Path, typer.Option(help="Folder of the run store, checkpoints and report.")
    ] = Path("runs/study"),
    out: Annotated[Path | None, renamed_option("--out", "--out-dir")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the CIs.")] = 200,
    workers: Annotated[int | None, typer.Option(help="Training worker processes.")] = None,
    store: StoreOpt = None,
    executor: Annotated[
        str | None, typer.Option(help="Where the runs train: local (default), slurm or ray.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="A running Ray cluster; implies --executor ray.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the cpu-tiny sweep (or reuse it), fit every law, and write the report."""
    if bootstrap < 0:  # before an hour of training, not after it
        raise SpecError(f"--bootstrap must be non-negative, got {bootstrap}")
    if workers is not None and workers < 1:
        raise SpecError(f"--workers must be at least 1, got {workers}")
    out = out_dir if out is None else out
    check_outputs(folders={"--out-dir": out})
    tick = time.perf_counter()
    store = store or default_store() or str(out / "runs.sqlite")
    out.mkdir(parents=True, exist_ok=True)
    columns = (
        TextColumn("training {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=as_json) as progress:
        task = progress.add_task(" + ".join(STUDY_PRESETS), total=None)

        def advance(outcome: Any, done: int, total: int) -> None:
            progress.update(task, total=total, completed=done)
            progress.console.print(
                f"  {outcome.run_id}: {outcome.status} ({outcome.seconds:.0f} s)",
                highlight=False,
                markup=False,
            )

        run_study(
            store, out, workers=workers, executor=executor, ray_address=ray_address, on_run=advance
        )
    study, written = _analyse_and_write(
        store, out / "report", "Scaling study: cpu-tiny", bootstrap, None
    )
    if as_json:
        print_json(
            {
                "summary": study.summary,
                "notes": study.notes,
                "report": {k: str(v) for k, v in written.items()},
            }
        )
    else:
        _print_summary(study, written, time.perf_counter() - tick)


@app.command("report")
@user_errors
def report_command(
    source: Annotated[
        Path, typer.Argument(help="Run store (.sqlite file or postgresql:// URL) or table of runs.")
    ],
    out_dir: Annotated[
        Path, typer.Option(help="Folder for report.html, report.md and PNGs.")
    ] = Path("report"),
    out: Annotated[Path | None, renamed_option("--out", "--out-dir")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset of the compute law.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the CIs.")] = 200,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    as_json: JsonOpt = False,
) -> None:
    """Analyse any run store or table as far as its data allow, and write the report."""
    out = out_dir if out is None else out
    check_outputs(folders={"--out-dir": out})
    tick = time.perf_counter()
    study, written = _analyse_and_write(
        source,
        out,
        f"Scaling report: {_source_name(source)}",
        bootstrap,
        dataset,
        column,
        loss_unit,
    )
    if as_json:
        print_json(
            {
                "summary": study.summary,
                "notes": study.notes,
                "report": {k: str(v) for k, v in written.items()},
            }
        )
    else:
        _print_summary(study, written, time.perf_counter() - tick)
