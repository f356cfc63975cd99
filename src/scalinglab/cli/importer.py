"""``scalinglab import``: runs from TensorBoard, MLflow, W&B, Trainer states and text logs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scalinglab.cli._common import (
    check_outputs,
    console,
    print_json,
    print_table,
    renamed_option,
    user_errors,
)
from scalinglab.cli.compute import parse_assignments
from scalinglab.cli.data_options import JsonOpt
from scalinglab.cli.main import app
from scalinglab.errors import SpecError


def _number(text: str, option: str) -> float:
    """A positive number, or a product such as ``512x1024`` (batch × context)."""
    value = 1.0
    for factor in text.lower().replace("*", "x").split("x"):
        try:
            value *= float(factor)
        except ValueError:
            raise SpecError(
                f"{option}: '{text}' is not a number (or a product like 512x1024)"
            ) from None
    if not (math.isfinite(value) and value > 0):
        raise SpecError(f"{option}: '{text}' must be positive")
    return value


def per_run(items: list[str] | None, option: str) -> dict[str, float]:
    """``["7e9"]`` (every run) or ``["RUN=7e9", "small-*=1e8"]`` → run pattern → value."""
    out: dict[str, float] = {}
    for item in items or []:
        if "=" in item:
            out.update(
                {k: _number(v, option) for k, v in parse_assignments([item], option).items()}
            )
        else:
            out["*"] = _number(item, option)
    return out


@app.command("import")
@user_errors
def import_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="TensorBoard log folders or event files, MLflow URIs (sqlite:///mlflow.db, "
            "mlruns/), W&B offline runs, CSV/Parquet exports or wandb://ENTITY/PROJECT\\[/RUN], "
            "trainer_state.json files or Trainer output folders, text logs.",
            show_default=False,
        ),
    ],
    store: Annotated[
        Path | None, typer.Option(help="Run store (.sqlite) that receives the runs.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also (or instead) write the rows to .csv or .parquet.")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--from", help="Source kind: tensorboard, mlflow, wandb, hf or text."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=DATASET: a logged loss and its dataset (repeatable)."),
    ] = None,
    run_params: Annotated[
        list[str] | None, typer.Option(help="Parameters N of every run, or RUN=N (glob).")
    ] = None,
    params: Annotated[list[str] | None, renamed_option("--params", "--run-params")] = None,
    tokens_per_step: Annotated[
        list[str] | None,
        typer.Option(help="Tokens per step (e.g. 512x1024 = batch × context), or RUN=T."),
    ] = None,
    step_metric: Annotated[
        str | None, typer.Option(help="Metric holding the optimizer step.")
    ] = None,
    lr_metric: Annotated[str | None, typer.Option(help="Metric holding the learning rate.")] = None,
    tokens_metric: Annotated[
        str | None, typer.Option(help="Metric holding the tokens seen so far.")
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(help="Text-log line pattern, e.g. 'iter {step}: loss {loss}' (repeatable)."),
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option(help="MLflow experiment to read (repeatable; all).")
    ] = None,
    family: Annotated[str | None, typer.Option(help="Family of every imported run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import training runs from the tools that logged them into a run store."""
    from scalinglab.data import import_runs, store_runs

    if store is None and out is None:
        raise SpecError("say where the runs go: --store runs.sqlite (or --out runs.csv)")
    check_outputs(files={"--out": out}, stores={"--store": store})
    table = import_runs(
        sources,
        kind=kind,
        metrics=parse_assignments(metric, "--metric") or None,
        params=per_run(run_params if params is None else params, "--run-params"),
        tokens_per_step=per_run(tokens_per_step, "--tokens-per-step"),
        step_metric=step_metric,
        lr_metric=lr_metric,
        tokens_metric=tokens_metric,
        patterns=pattern or (),
        experiments=experiment,
        family=family,
    )
    report = table.attrs["import_report"]
    if store is not None:
        report = store_runs(table, store)
    if out is not None:
        from scalinglab.data.loaders import file_format

        if file_format(out) not in ("csv", "parquet"):
            raise SpecError(f"--out {out.name}: write a .csv or .parquet file")
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = table.drop(columns=["source_row"])
        rows.to_parquet(out, index=False) if file_format(out) == "parquet" else rows.to_csv(
            out, index=False
        )
    if as_json:
        print_json(report.to_dict() | {"store": str(store) if store else None})
        return
    print_table(
        [
            {
                "run": r.run_id,
                "read": r.read,
                "kept": r.kept,
                "used": r.used,
                "dropped": sum(r.dropped.values()),
                "datasets": ", ".join(f"{m}→{d}" for m, d in r.datasets.items()),
                "tokens": r.tokens_from,
                "params": r.params_from,
            }
            for r in report.runs
        ],
        title=f"imported {len(report.runs)} runs",
    )
    for reason, count in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
        console.print(f"dropped {count:,}: {reason}", highlight=False, markup=False)
    for run in report.runs:
        for note in run.notes:
            console.print(f"{run.run_id}: {note}", highlight=False, markup=False)
    if report.stored_new is not None:
        console.print(
            f"{store}: {report.stored_new:,} new rows, {report.stored_unchanged:,} already "
            f"stored, {report.stored_changed:,} updated",
            highlight=False,
            markup=False,
        )
    if out is not None:
        console.print(f"wrote {len(table):,} rows to {out}", highlight=False, markup=False)
