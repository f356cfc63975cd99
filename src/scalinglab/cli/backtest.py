"""``scalinglab backtest data|all|recommend``: fit small models, forecast the largest, score ARE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from scalinglab.cli._common import (
    check_outputs,
    console,
    markup,
    note,
    print_json,
    print_table,
    progress_bar,
    user_errors,
)
from scalinglab.cli.compute import parse_assignments
from scalinglab.cli.data_options import JsonOpt
from scalinglab.cli.main import app
from scalinglab.data.schema import LOSS_UNITS, LossUnit
from scalinglab.errors import InputError, SpecError
from scalinglab.evaluation.backtest import (
    BASELINES,
    CHOICES,
    DEFAULT_FRACTIONS,
    DEFAULT_MAX_PER_RUN,
    DEFAULT_TARGET_FRACTIONS,
    BacktestReport,
    FitChoice,
    backtest_all,
    backtest_family,
    collection_for,
)
from scalinglab.evaluation.expected_error import expected_for_report
from scalinglab.evaluation.families import Perplexity, load_families
from scalinglab.evaluation.recommend import recommend

backtest_app = typer.Typer(
    help="Backtests: fit a family's smaller models, forecast its largest, score by ARE.",
    no_args_is_help=True,
)
app.add_typer(backtest_app, name="backtest")

DataArg = Annotated[
    Path, typer.Argument(help="CSV, Parquet, JSONL or run-store file of runs with checkpoints.")
]
ColumnOpt = Annotated[
    list[str] | None, typer.Option(help="Map a column: THEIRS=ours (e.g. 'model_name=run_id').")
]
PerplexityOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Families whose loss column holds perplexity (converted to log): 'auto' "
        "(any family with values above 20) or a family name; repeatable."
    ),
]
LossUnitOpt = Annotated[str, typer.Option(help="Unit of the losses: nats, bits or perplexity.")]
DatasetOpt = Annotated[str | None, typer.Option(help="Dataset whose loss to use.")]
KOpt = Annotated[
    list[int] | None, typer.Option("--k", help="Training sizes (the k smallest); repeatable.")
]
FractionOpt = Annotated[
    list[float] | None, typer.Option(help="Fraction p of each training run seen; repeatable.")
]
TargetFractionOpt = Annotated[
    list[float] | None, typer.Option(help="Fraction q of the target's own run seen; repeatable.")
]
ChoiceOpt = Annotated[
    list[str] | None,
    typer.Option(help=f"Fitting choice to try ({', '.join(CHOICES)}); repeatable."),
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(help="Runs of other families whose fits the parameter-borrowing choices use."),
]
MaxPerRunOpt = Annotated[int, typer.Option(help="Checkpoints kept per run in the fits (0: all).")]
HeatmapOpt = Annotated[
    Path | None, typer.Option(help="Write a heatmap of ARE over (k, p) here (.png, .pdf).")
]
OutOpt = Annotated[Path | None, typer.Option(help="Write every result as CSV here.")]


def _perplexity(values: list[str] | None) -> Perplexity:
    if not values:
        return None
    if "auto" in values:
        if len(values) > 1:
            raise SpecError("--perplexity auto cannot be combined with family names")
        return "auto"
    return list(values)


def _loss_unit(value: str) -> LossUnit:
    if value not in LOSS_UNITS:
        raise SpecError(f"--loss-unit must be one of {', '.join(LOSS_UNITS)}, got '{value}'")
    unit: LossUnit = value  # type: ignore[assignment]
    return unit


def _choices(names: list[str] | None) -> dict[str, FitChoice]:
    if not names:
        return dict(CHOICES)
    unknown = [n for n in names if n not in CHOICES]
    if unknown:
        raise SpecError(f"unknown choice {', '.join(unknown)}; choose from {', '.join(CHOICES)}")
    return {n: CHOICES[n] for n in names}


def _load(
    data: Path,
    column: list[str] | None,
    perplexity: list[str] | None,
    loss_unit: str,
    dataset: str | None,
    *,
    family: str | None = None,
    min_sizes: int = 3,
) -> pd.DataFrame:
    return load_families(
        data,
        family=family,
        columns=parse_assignments(column, "--column") or None,
        perplexity=_perplexity(perplexity),
        loss_unit=_loss_unit(loss_unit),
        dataset=dataset,
        min_sizes=min_sizes,
    )


def _records(frame: pd.DataFrame, index: str | None = None) -> list[dict[str, Any]]:
    """Rows of a frame as plain records, its index first as column ``index`` when named."""
    flat = frame.reset_index(names=index) if index is not None else frame
    return [{str(k): v for k, v in r.items()} for r in flat.to_dict("records")]


def _expected(report: BacktestReport) -> list[dict[str, Any]]:
    table = expected_for_report(report)
    return [] if table.empty else _records(table, "choice")


def _print_report(report: BacktestReport, title: str) -> None:
    table = report.table()
    rows = []
    for rec in table.to_dict(orient="records"):
        rows.append(
            {
                "family": rec["family"],
                "k": rec["k"],
                "p": rec["fraction"],
                "q": rec["target_fraction"],
                "choice": rec["choice"],
                "ARE": rec["are"],
                **{b: rec[f"are_{b}"] for b in BASELINES},
                "beats": "yes" if rec["beats_baselines"] else "",
                "note": rec["error"] if isinstance(rec["error"], str) else "",
            }
        )
    if len(rows) <= 80:
        print_table(rows, title=title)
    for factor, comp in report.comparisons().items():
        print_table(
            _records(comp, "family"), title=f"median ARE: {factor} (against the no-fit baselines)"
        )
    print_table(_records(report.best(), "choice"), title="fitting choices, best first")
    expected = expected_for_report(report)
    if not expected.empty:
        print_table(
            _records(expected, "choice"),
            title="what to expect of each choice at this extrapolation (ColPret backtests: "
            "median, 90% of cases below)",
        )
    for family, reason in sorted(report.skipped.items()):
        note("skipped", f"{family}: {reason}")


def _finish(report: BacktestReport, heatmap: Path | None, out: Path | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if out is not None:
        report.table().to_csv(out, index=False)
        extra["results_csv"] = str(out)
    if heatmap is not None:
        from scalinglab.report.backtest_plot import plot_are_heatmap

        names = set(report.table()["choice"])
        choice = "default" if "default" in names else sorted(names)[0]
        plot_are_heatmap(report, heatmap, choice=choice)
        extra["heatmap"] = str(heatmap)
    return extra


@backtest_app.command("data")
@user_errors
def data_command(
    data: DataArg,
    family: Annotated[str | None, typer.Option(help="Family to backtest.")] = None,
    target: Annotated[str | None, typer.Option(help="Run to forecast (default: largest).")] = None,
    k: KOpt = None,
    fraction: FractionOpt = None,
    target_fraction: TargetFractionOpt = None,
    choice: ChoiceOpt = None,
    reference: ReferenceOpt = None,
    perplexity: PerplexityOpt = None,
    loss_unit: LossUnitOpt = "nats",
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    max_per_run: MaxPerRunOpt = DEFAULT_MAX_PER_RUN,
    heatmap: HeatmapOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest one family: forecast its target from its smaller models, ARE per choice."""
    check_outputs(files={"--out": out}, figures={"--heatmap": heatmap})
    obs = _load(data, column, perplexity, loss_unit, dataset, family=family)
    name = str(obs["family"].iloc[0])
    choices = _choices(choice)
    collection = None
    notes: list[str] = []
    if any(c.needs_collection for c in choices.values()):
        try:
            if reference is not None:
                others = _load(reference, column, perplexity, loss_unit, dataset, min_sizes=2)
            else:
                others = _load(data, column, perplexity, loss_unit, dataset, min_sizes=2)
                others = others[others["family"].astype(str) != name]
            if not others.empty:
                with progress_bar("fitting the other families") as progress:
                    collection = collection_for(others, progress=progress)
        except InputError as err:
            notes.append(f"no collection to borrow parameters from: {err}")
    with progress_bar(f"backtesting {name}") as progress:
        results = backtest_family(
            obs,
            name,
            target=target,
            ks=k,
            fractions=fraction or DEFAULT_FRACTIONS,
            target_fractions=target_fraction or DEFAULT_TARGET_FRACTIONS,
            choices=choices,
            collection=collection,
            max_per_run=max_per_run or None,
            progress=progress,
        )
    report = BacktestReport(results, collection=collection)
    extra = _finish(report, heatmap, out)
    if as_json:
        print_json(
            report.to_dict() | extra | {"notes": notes, "expected_errors": _expected(report)}
        )
        return
    _print_report(report, f"backtest of {name} (target {results[0].target})")
    for message in notes:
        note("note", message)
    for key, path in extra.items():
        console.print(f"{key}: {path}")


@backtest_app.command("all")
@user_errors
def all_command(
    data: DataArg,
    k: KOpt = None,
    fraction: FractionOpt = None,
    target_fraction: TargetFractionOpt = None,
    choice: ChoiceOpt = None,
    perplexity: PerplexityOpt = None,
    loss_unit: LossUnitOpt = "nats",
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    max_per_run: MaxPerRunOpt = DEFAULT_MAX_PER_RUN,
    workers: Annotated[int, typer.Option(help="Families backtested in parallel.")] = 2,
    heatmap: HeatmapOpt = None,
    out: OutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest every family with 3 or more model sizes; tables per fitting factor."""
    check_outputs(files={"--out": out}, figures={"--heatmap": heatmap})
    obs = _load(data, column, perplexity, loss_unit, dataset)
    with progress_bar("backtesting families") as progress:
        report = backtest_all(
            obs,
            ks=k,
            fractions=fraction or DEFAULT_FRACTIONS,
            target_fractions=target_fraction or DEFAULT_TARGET_FRACTIONS,
            choices=_choices(choice),
            max_per_run=max_per_run or None,
            workers=workers,
            progress=progress,
        )
    extra = _finish(report, heatmap, out)
    if as_json:
        print_json(report.to_dict() | extra | {"expected_errors": _expected(report)})
        return
    _print_report(report, f"backtests of {data.name}")
    for key, path in extra.items():
        console.print(f"{key}: {path}")


@backtest_app.command("recommend")
@user_errors
def recommend_command(
    data: DataArg,
    family: Annotated[str | None, typer.Option(help="Family of your runs.")] = None,
    reference: ReferenceOpt = None,
    params: Annotated[list[float] | None, typer.Option(help="Forecast at N params.")] = None,
    tokens: Annotated[list[float] | None, typer.Option(help="Forecast at D tokens.")] = None,
    choice: ChoiceOpt = None,
    perplexity: PerplexityOpt = None,
    loss_unit: LossUnitOpt = "nats",
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Which fitting choice backtests best on your runs, and its forecast."""
    obs = _load(data, column, perplexity, loss_unit, dataset, family=family)
    ref = (
        None
        if reference is None
        else _load(reference, column, perplexity, loss_unit, dataset, min_sizes=2)
    )
    if bool(params) != bool(tokens):
        raise SpecError("give both --params and --tokens to forecast, or neither")
    result = recommend(
        obs,
        reference=ref,
        choices=_choices(choice),
        forecast_at={"params": params, "tokens": tokens} if params and tokens else None,
    )
    if as_json:
        print_json(result.to_dict())
        return
    print_table(
        _records(result.ranking, "choice"),
        title=f"fitting choices on {result.family}, best first (ranked by {result.ranked_by}; "
        "expected_*: ColPret backtests at this extrapolation)",
    )
    best = result.best_choice
    described = CHOICES[best].describe() if best in CHOICES else best
    console.print(markup("recommended: [bold]{}[/] ({})", best, described))
    print_table([{"parameter": n, "value": v} for n, v in result.params.items()], title="fit")
    print_table(_records(result.forecast), title="forecast")
    if result.expected is not None:
        note(
            "expected error of this forecast",
            f"{result.expected.describe()}; it extrapolates {result.extrapolation_ratio:.3g}× "
            "past the largest run's compute",
        )
    for message in [*result.notes, *result.fit.warnings]:
        note("note", message)
