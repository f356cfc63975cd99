"""``scalinglab study`` (train a small scaling study and report it) and ``scalinglab report``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scalinglab.cli._common import check_outputs, console, print_json, user_errors
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.study import STUDY_PRESETS, Study, analyse, load, run_study

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _analyse_and_write(
    study_source: Any, out: Path, title: str, bootstrap: int, dataset: str | None
) -> tuple[Study, dict[str, Path]]:
    from scalinglab.report.study_report import build_report

    with console.status("fitting every law (compute, curves, loss-to-loss, backtest)…"):
        study = analyse(load(study_source), dataset=dataset, bootstrap=bootstrap)
        written = build_report(study, title=title).write(out)
    return study, written


def _print_summary(study: Study, written: dict[str, Path], seconds: float) -> None:
    console.rule("summary")
    for line in study.summary:
        console.print(f"• {line}", highlight=False, markup=False)
    for part, reason in study.notes.items():
        console.print(f"[yellow]not made:[/] {part}: {escape(reason)}", highlight=False)
    console.print(
        f"report: {escape(str(written['html']))} (also {escape(written['markdown'].name)} and "
        f"{len(written) - 2} PNG files) — {seconds:.0f} s in all",
        highlight=False,
    )


@app.command("study")
@user_errors
def study_command(
    out: Annotated[Path, typer.Option(help="Folder of the run store, checkpoints and report.")] = (
        Path("runs/study")
    ),
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the CIs.")] = 200,
    workers: Annotated[int | None, typer.Option(help="Training worker processes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the cpu-tiny sweep (or reuse it), fit every law, and write the report."""
    if bootstrap < 0:  # before an hour of training, not after it
        raise SpecError(f"--bootstrap must be non-negative, got {bootstrap}")
    if workers is not None and workers < 1:
        raise SpecError(f"--workers must be at least 1, got {workers}")
    check_outputs(folders={"--out": out})
    tick = time.perf_counter()
    store = out / "runs.sqlite"
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

        run_study(store, out, workers=workers, on_run=advance)
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
    source: Annotated[Path, typer.Argument(help="Run store (.sqlite) or table of runs.")],
    out: Annotated[Path, typer.Option(help="Folder for report.html, report.md and PNGs.")] = Path(
        "report"
    ),
    dataset: Annotated[str | None, typer.Option(help="Dataset of the compute law.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for the CIs.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Analyse any run store or table as far as its data allow, and write the report."""
    check_outputs(folders={"--out": out})
    tick = time.perf_counter()
    study, written = _analyse_and_write(
        source, out, f"Scaling report: {source.name}", bootstrap, dataset
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
