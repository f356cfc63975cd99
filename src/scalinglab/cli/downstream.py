"""``scalinglab downstream fit|predict|backtest``: forecast downstream task error.

Also the over-training half of ``scalinglab plan`` (:func:`overtraining_plan`), called by
``cli/planning.py`` when the fit is of an over-training law.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import pandas as pd
import typer

from scalinglab.cli._common import (
    check_outputs,
    console,
    fmt,
    note,
    print_json,
    print_table,
    renamed_option,
    user_errors,
)
from scalinglab.cli.compute import parse_assignments, parse_float
from scalinglab.cli.data_options import JsonOpt
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.evaluation.downstream import FORMS, DownstreamFit, fit_downstream
from scalinglab.evaluation.downstream_backtest import (
    DownstreamBacktest,
    VerdictRules,
    backtest_downstream,
    compute_order,
)
from scalinglab.evaluation.downstream_data import DownstreamTable, Metric, load_downstream
from scalinglab.fitting import Fit
from scalinglab.fitting.result import IntervalKind
from scalinglab.planning.overtraining import inference_optimal, loss_at

downstream_app = typer.Typer(
    help="Downstream task error from compute and validation loss: fit, predict, backtest.",
    no_args_is_help=True,
)
app.add_typer(downstream_app, name="downstream")

DataArg = Annotated[
    Path,
    typer.Argument(
        help="Evaluations: a table with one column per task, or long rows (run_id, task, value)."
    ),
]
RunsOpt = Annotated[
    Path | None,
    typer.Option(help="Table of runs (run_id, params, tokens, the loss column) for long data."),
]
LossOpt = Annotated[
    str, typer.Option("--loss", help="Column of the validation loss errors are forecast from.")
]
TaskOpt = Annotated[
    list[str] | None, typer.Option("--task", help="A task to use (repeatable); default all.")
]
MetricOpt = Annotated[str, typer.Option(help="The values are 'accuracy' or 'error'.")]
ChanceOpt = Annotated[
    list[str] | None,
    typer.Option(help="Chance accuracy of a task: TASK=0.25 (overrides the data's)."),
]
AverageOpt = Annotated[
    list[str] | None,
    typer.Option(help="A task average to forecast too: NAME=task1,task2,..."),
]
FamilyOpt = Annotated[
    str | None, typer.Option(help="Fit the runs of this family (the 'family' column) only.")
]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(help="Map a column: THEIRS=ours (e.g. 'train_dataset=family')."),
]
FormOpt = Annotated[
    list[str] | None,
    typer.Option("--form", help=f"Downstream form(s): {', '.join(FORMS)} (default all)."),
]
LossLawOpt = Annotated[
    str,
    typer.Option(help="Loss law: overtraining, chinchilla_m or auto (cross-validated)."),
]
MinMultOpt = Annotated[
    str,
    typer.Option(
        help="Fit the loss law on runs with at least this many tokens per parameter: a "
        "number, 'none' (every run) or 'auto' (cross-validated)."
    ),
]
BootstrapOpt = Annotated[int, typer.Option(help="Run-resampled refits for intervals.")]


def _table(
    data: Path,
    runs: Path | None,
    loss: str,
    task: list[str] | None,
    metric: str,
    chance: list[str] | None,
    average: list[str] | None,
    family: str | None,
    column: list[str] | None,
) -> DownstreamTable:
    if metric not in ("accuracy", "error"):
        raise SpecError(f"--metric must be 'accuracy' or 'error', got '{metric}'")
    chances = {
        k: parse_float(v, f"--chance {k}") for k, v in parse_assignments(chance, "--chance").items()
    }
    averages = {}
    for name, members in parse_assignments(average, "--average").items():
        tasks = [t.strip() for t in members.split(",") if t.strip()]
        if not tasks:
            raise SpecError(f"--average {name}: name at least one task")
        averages[name] = tasks
    return load_downstream(
        data,
        runs=runs,
        loss=loss,
        tasks=task or None,
        metric=cast(Metric, metric),
        chance=chances or None,
        averages=averages or None,
        family=family,
        columns=parse_assignments(column, "--column") or None,
    )


def _min_multiplier(text: str) -> float | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    value = parse_float(text, "--min-multiplier")
    if not (math.isfinite(value) and value > 0):
        raise SpecError(f"--min-multiplier must be positive, 'none' or 'auto', got '{text}'")
    return value


def _rules(holdout_fraction: float, tolerance: float) -> VerdictRules:
    if not 0 < holdout_fraction < 1:
        raise SpecError(f"--holdout-fraction must be between 0 and 1, got {holdout_fraction}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise SpecError(f"--tolerance must be positive, got {tolerance}")
    return VerdictRules(holdout_fraction=holdout_fraction, abs_tolerance=tolerance)


def _check_bootstrap(bootstrap: int) -> None:
    if bootstrap < 0:
        raise SpecError(f"--bootstrap must be 0 or more, got {bootstrap}")


def fit_rows(result: DownstreamFit) -> list[dict[str, Any]]:
    """One row per target: chance, verdict, the chosen form and its backtest errors
    (parameters are in ``--json`` and the saved fit)."""
    rows = []
    for target in result.targets:
        verdict = result.verdicts.get(target)
        row: dict[str, Any] = {
            "target": target,
            "chance_error": "" if result.chance.get(target) is None else result.chance[target],
            "status": verdict.status if verdict else "unassessed",
            "form": result.selected_form(target),
        }
        if verdict is not None:
            for form, mae in verdict.backtest_mae.items():
                row[f"mae_{form}"] = mae
            row["no_fit_mae"] = "" if verdict.persistence_mae is None else verdict.persistence_mae
        rows.append(row)
    return rows


@downstream_app.command("fit")
@user_errors
def fit_command(
    data: DataArg,
    loss: LossOpt,
    runs: RunsOpt = None,
    task: TaskOpt = None,
    metric: MetricOpt = "accuracy",
    chance: ChanceOpt = None,
    average: AverageOpt = None,
    family: FamilyOpt = None,
    column: ColumnOpt = None,
    form: FormOpt = None,
    loss_law: LossLawOpt = "auto",
    min_multiplier: MinMultOpt = "auto",
    bootstrap: BootstrapOpt = 100,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    assess: Annotated[
        bool, typer.Option("--assess/--no-assess", help="Backtest every task for a verdict.")
    ] = True,
    holdout_fraction: Annotated[
        float,
        typer.Option(help="Share of runs (largest compute) the verdict's backtest forecasts."),
    ] = 0.25,
    tolerance: Annotated[
        float, typer.Option(help="Backtest error (error units) still called predictable.")
    ] = 0.02,
    out: Annotated[Path | None, typer.Option(help="Write the fit as JSON here.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Write a report (HTML, Markdown, PNGs) to this folder.")
    ] = None,
    report: Annotated[Path | None, renamed_option("--report", "--report-dir")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit loss and error laws per task and average, and say which tasks are forecastable."""
    report = report_dir if report is None else report
    check_outputs(files={"--out": out}, folders={"--report-dir": report})
    _check_bootstrap(bootstrap)
    rules = _rules(holdout_fraction, tolerance)
    table = _table(data, runs, loss, task, metric, chance, average, family, column)
    result = fit_downstream(
        table,
        forms=form or tuple(FORMS),
        loss_law=loss_law,
        min_multiplier=_min_multiplier(min_multiplier),  # type: ignore[arg-type]
        bootstrap=bootstrap,
        seed=seed,
        assess=assess,
        rules=rules,
    )
    if out is not None:
        result.save(out)
    written = None
    if report is not None:
        from scalinglab.report.downstream_plots import write_downstream_report

        written = write_downstream_report(result, table, report)
    if as_json:
        print_json(
            result.to_dict()
            | {
                "table": table.summary(),
                "saved_to": str(out) if out else None,
                "report": str(written["html"]) if written else None,
            }
        )
        return
    if result.loss_fit is not None:
        params = ", ".join(f"{k}={fmt(v)}" for k, v in result.loss_fit.params.items())
        console.print(
            f"loss law {result.loss_fit.law.name} on '{table.loss_column}' "
            f"({result.loss_fit.n_points} runs, min multiplier "
            f"{result.options['min_multiplier']}): {params}",
            highlight=False,
        )
    rows = fit_rows(result)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print_table(
        rows, title=f"downstream fits ({table.source}, {len(table.runs)} runs)", columns=columns
    )
    _print_status_counts(result)
    shown = relevant_warnings(result)
    for w in shown:
        note("warning", w)
    if len(result.warnings) > len(shown):
        console.print(
            f"{len(result.warnings) - len(shown)} more warning(s) on forms not chosen or targets "
            "not forecastable (--json lists every one)",
            highlight=False,
        )
    if out is not None:
        console.print(f"saved to {out}", highlight=False)
    if written is not None:
        console.print(f"report written to {written['html']}", highlight=False)


def relevant_warnings(result: DownstreamFit) -> list[str]:
    """Warnings on the loss law, the data, and the chosen form of forecastable targets."""
    keep = []
    for warning in result.warnings:
        target, _, rest = warning.partition(" (")
        if target in result.fits and rest:
            form = rest.partition(")")[0]
            verdict = result.verdicts.get(target)
            if form != result.selected_form(target) or (verdict and not verdict.predictable):
                continue
        keep.append(warning)
    return keep


def _print_status_counts(result: DownstreamFit) -> None:
    if not result.verdicts:
        return
    counts: dict[str, list[str]] = {}
    for target, verdict in result.verdicts.items():
        counts.setdefault(verdict.status, []).append(target)
    for status, targets in counts.items():
        console.print(f"{status} ({len(targets)}): {', '.join(targets)}", highlight=False)


@downstream_app.command("predict")
@user_errors
def predict_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `downstream fit --out`.")],
    flops: Annotated[list[float] | None, typer.Option(help="Training FLOPs (repeatable).")] = None,
    multiplier: Annotated[
        list[float] | None, typer.Option(help="Tokens per parameter M (repeatable).")
    ] = None,
    params: Annotated[
        list[float] | None, typer.Option(help="Parameters N (with --tokens).")
    ] = None,
    tokens: Annotated[list[float] | None, typer.Option(help="Training tokens D.")] = None,
    loss: Annotated[
        list[float] | None, typer.Option("--loss", help="Known validation loss (one step).")
    ] = None,
    task: TaskOpt = None,
    level: Annotated[float, typer.Option(help="Level of the intervals.")] = 0.95,
    kind: Annotated[
        str, typer.Option(help="prediction (a new run) or confidence (the law only).")
    ] = "prediction",
    all_forms: Annotated[
        bool, typer.Option(help="Show every form, not only the chosen one.")
    ] = False,
    show_unpredictable: Annotated[
        bool, typer.Option(help="Also give numbers for tasks judged not forecastable.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Forecast task errors at a compute budget and M (two steps) or at a known loss."""
    result = DownstreamFit.load(fit_file)
    if kind not in ("prediction", "confidence"):
        raise SpecError(f"--kind must be 'prediction' or 'confidence', got '{kind}'")
    if params or tokens:
        if flops or multiplier:
            raise SpecError("give --params and --tokens, or --flops and --multiplier, not both")
        if not params or not tokens or len(params) != len(tokens):
            raise SpecError("give as many --params as --tokens values")
        n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        if not np.all((n > 0) & (d > 0) & np.isfinite(n * d)):
            raise SpecError("--params and --tokens must be positive")
        flops, multiplier = list(6.0 * n * d), list(d / n)
    frame = result.forecast(
        flops=flops or None,
        multiplier=multiplier or None,
        loss=loss or None,
        level=level,
        kind=cast(IntervalKind, kind),
        targets=task or None,
    )
    if not all_forms:
        frame = frame[frame["selected"]]
    withheld = frame["status"].isin(["predictable", "unassessed"]) == False  # noqa: E712
    if not show_unpredictable:
        frame = frame.assign(
            **{c: frame[c].where(~withheld) for c in ("error", "error_low", "error_high")}
        )
    reasons = {t: v.message for t, v in result.verdicts.items() if not v.predictable}
    if as_json:
        print_json(
            {
                "level": level,
                "kind": kind,
                "loss_column": result.loss_column,
                "forecasts": _records(frame),
                "not_forecastable": {
                    t: reasons[t] for t in frame["target"].unique() if t in reasons
                },
            }
        )
        return
    points = frame.drop_duplicates("point")
    for _, point in points.iterrows():
        where = (
            f"C = {fmt(point['flops'])} FLOPs, M = {fmt(point['multiplier'])}: "
            if "flops" in frame.columns
            else ""
        )
        band = (
            f" [{fmt(point['loss_low'])}, {fmt(point['loss_high'])}]"
            if "loss_low" in frame.columns
            else ""
        )
        console.print(
            f"point {int(point['point'])}: {where}{result.loss_column} {fmt(point['loss'])}{band}",
            highlight=False,
        )
    columns = ["point"] if len(points) > 1 else []
    columns += ["target", "form", "error", "error_low", "error_high", "status"]
    if all_forms:
        columns.insert(columns.index("form") + 1, "selected")
    rows = [
        {c: ("—" if c.startswith("error") and pd.isna(r[c]) else r[c]) for c in columns}
        for r in _records(frame)
    ]
    print_table(
        rows, title=f"{kind} intervals, level {fmt(level)} ({fit_file.name})", columns=columns
    )
    if not show_unpredictable and withheld.any():
        console.print(
            "no number for tasks judged not forecastable (— above); --show-unpredictable "
            "gives them anyway",
            highlight=False,
        )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


@downstream_app.command("backtest")
@user_errors
def backtest_command(
    data: DataArg,
    loss: LossOpt,
    runs: RunsOpt = None,
    task: TaskOpt = None,
    metric: MetricOpt = "accuracy",
    chance: ChanceOpt = None,
    average: AverageOpt = None,
    family: FamilyOpt = None,
    column: ColumnOpt = None,
    form: FormOpt = None,
    loss_law: LossLawOpt = "auto",
    min_multiplier: MinMultOpt = "auto",
    max_train_flops: Annotated[
        float | None, typer.Option(help="Fit on runs with at most this compute.")
    ] = None,
    max_train_params: Annotated[
        float | None, typer.Option(help="Fit on runs with at most this many parameters.")
    ] = None,
    max_train_multiplier: Annotated[
        float | None, typer.Option(help="Fit on runs with at most this many tokens per parameter.")
    ] = None,
    holdout_fraction: Annotated[
        float,
        typer.Option(help="Without --max-train-*: forecast this share of runs (largest compute)."),
    ] = 0.25,
    bootstrap: BootstrapOpt = 100,
    level: Annotated[float, typer.Option(help="Level of the prediction intervals.")] = 0.95,
    as_json: JsonOpt = False,
) -> None:
    """Fit on the smaller runs, forecast the others: error ARE per task, interval coverage."""
    _check_bootstrap(bootstrap)
    rules = _rules(holdout_fraction, 0.02)
    table = _table(data, runs, loss, task, metric, chance, average, family, column)
    train, test = _split(
        table, max_train_flops, max_train_params, max_train_multiplier, holdout_fraction
    )
    result = backtest_downstream(
        table,
        train,
        test,
        level=level,
        forms=form or tuple(FORMS),
        loss_law=loss_law,
        min_multiplier=_min_multiplier(min_multiplier),
        bootstrap=bootstrap,
        rules=rules,
    )
    rows = _backtest_rows(result)
    loss_rows = result.forecasts.drop_duplicates("run_id")
    loss_are = None
    if loss_rows["loss_predicted"].notna().all():
        loss_are = float(
            np.mean(
                np.abs(loss_rows["loss_predicted"] - loss_rows["loss_observed"])
                / loss_rows["loss_observed"]
            )
        )
    if as_json:
        print_json(
            {
                "train": result.train,
                "test": result.test,
                "notes": table.notes,
                "loss_are": loss_are,
                "targets": rows,
                "forecasts": _records(result.forecasts),
            }
        )
        return
    console.print(
        f"fitted on {len(result.train)} runs, forecast {len(result.test)}"
        + (f"; validation-loss ARE {fmt(100 * loss_are, 3)}%" if loss_are is not None else ""),
        highlight=False,
    )
    print_table(rows, title=f"downstream backtest ({table.source})")
    for message in table.notes:
        note("note", message)


def _split(
    table: DownstreamTable,
    max_flops: float | None,
    max_params: float | None,
    max_multiplier: float | None,
    holdout_fraction: float,
) -> tuple[list[str], list[str]]:
    runs = table.runs
    limits = {"flops": max_flops, "params": max_params, "multiplier": max_multiplier}
    given = {k: v for k, v in limits.items() if v is not None}
    if not given:
        order = compute_order(table)
        n_test = max(2, math.ceil(holdout_fraction * len(order)))
        return order[:-n_test], order[-n_test:]
    keep = np.ones(len(runs), dtype=bool)
    for column, limit in given.items():
        if column not in runs.columns or runs[column].isna().any():
            raise SpecError(f"--max-train-{column}: the runs have no '{column}' for every run")
        keep &= runs[column].to_numpy(float) <= limit
    train = [str(r) for r in runs.index[keep]]
    test = [str(r) for r in runs.index[~keep]]
    if not train or not test:
        raise SpecError(
            f"the limits put {len(train)} runs to fit and {len(test)} to forecast; both need some"
        )
    return train, test


def _backtest_rows(result: DownstreamBacktest) -> list[dict[str, Any]]:
    rows = []
    forecasts = result.forecasts
    for target in dict.fromkeys(forecasts["target"]):
        selected = forecasts[(forecasts["target"] == target) & forecasts["selected"]]
        observed = selected[selected["observed"].notna()]
        if observed.empty:
            continue
        row: dict[str, Any] = {
            "target": target,
            "status": str(selected["status"].iloc[0]),
            "form": str(selected["form"].iloc[0]),
            "are": result.are(target),
            "mae": float(np.mean(np.abs(observed["predicted"] - observed["observed"]))),
        }
        if observed["low"].notna().all():
            row["coverage"] = result.coverage(target)
        rows.append(row)
    return rows


def overtraining_plan(
    fit: Fit,
    *,
    flops: list[float] | None,
    multiplier: list[float] | None,
    inference_tokens: float | None,
    target_loss: float | None,
    inference_flops_per_token_param: float,
    flops_per_token_param: float,
    level: float,
    as_json: bool,
) -> None:
    """``scalinglab plan`` for an over-training fit: loss at (C, M), or the M that minimises
    training plus inference cost."""
    if inference_tokens is None:
        if not flops or not multiplier:
            raise SpecError(
                "an over-training fit plans with --flops and --multiplier (loss of that run), or "
                "--inference-tokens with --loss or --flops (the M cheapest to train and serve)"
            )
        if len(multiplier) not in (1, len(flops)) and len(flops) != 1:
            raise SpecError("give one --multiplier, or as many as --flops values")
        frame = loss_at(
            fit,
            np.asarray(flops, dtype=float),
            np.asarray(multiplier, dtype=float),
            level=level,
            flops_per_token_param=flops_per_token_param,
        )
        records = _records(frame)
        if as_json:
            print_json({"law": fit.law.name, "level": level, "plans": records})
        else:
            print_table(
                records, title=f"loss at a budget and tokens per parameter ({fit.law.name})"
            )
        return
    if multiplier:
        raise SpecError("--multiplier is chosen by the plan when --inference-tokens is given")
    if flops is not None and len(flops) > 1:
        raise SpecError("give one --flops budget with --inference-tokens")
    plan = inference_optimal(
        fit,
        inference_tokens,
        target_loss=target_loss,
        flops=flops[0] if flops else None,
        inference_flops_per_token_param=inference_flops_per_token_param,
        flops_per_token_param=flops_per_token_param,
        level=level,
    )
    if as_json:
        print_json(plan.to_dict())
        return
    rows = []
    for name in (
        "multiplier",
        "params",
        "tokens",
        "training_flops",
        "inference_flops",
        "total_flops",
    ):
        row: dict[str, Any] = {
            "quantity": name,
            "optimum": getattr(plan, name),
            "compute_optimal": plan.compute_optimal[name],
        }
        if name in plan.ci:
            row["low"], row["high"] = plan.ci[name]
        rows.append(row)
    print_table(
        rows,
        title=f"cheapest model reaching loss {fmt(plan.target_loss)} and serving "
        f"{fmt(plan.inference_tokens)} tokens ({plan.law})",
    )
    console.print(
        f"training + inference FLOPs {fmt(100 * plan.savings, 3)}% below the compute-optimal "
        f"model's (M = {fmt(plan.compute_optimal['multiplier'])})",
        highlight=False,
    )
    for warning in plan.warnings:
        note("warning", warning)
