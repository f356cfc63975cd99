"""``scalinglab transfer fit|predict|matrix|translate|backtest``: loss-to-loss prediction."""

from __future__ import annotations

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
    user_errors,
)
from scalinglab.cli.data_options import JsonOpt, LossUnitOpt, read_data
from scalinglab.cli.main import app
from scalinglab.evaluation.transfer import (
    DEFAULT_IRREDUCIBLE,
    OWN_DATASET,
    ComputeLaw,
    Irreducible,
    LossRef,
    TransferFit,
    fit_transfer,
    translate_law,
)
from scalinglab.evaluation.transfer_backtest import (
    SETTINGS,
    backtest_transfer,
    summarize_backtest,
    transfer_matrix,
)
from scalinglab.fitting.result import IntervalKind

transfer_app = typer.Typer(
    help="Loss-to-loss prediction: L_y = K·(L_x − E_x)^κ + E_y between datasets.",
    no_args_is_help=True,
)
app.add_typer(transfer_app, name="transfer")

DataArg = Annotated[
    Path, typer.Argument(help="CSV, Parquet, JSONL or run-store (.sqlite) file of runs.")
]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option(help="Map a column: THEIRS=ours (e.g. 'data=family', 'val_loss=train')."),
]
WideOpt = Annotated[
    list[str] | None,
    typer.Option(help="A loss column to melt into rows, its name becoming the dataset."),
]
TrainDatasetOpt = Annotated[
    str, typer.Option(help="Dataset name of a run's loss on its own training corpus.")
]
LOSS_HELP = (
    "FAMILY (its own-corpus loss), FAMILY:DATASET, or :DATASET (every run); "
    "FAMILY is the training corpus (the 'family' column)"
)


def load_runs(
    data: Path, column: list[str] | None, wide: list[str] | None, unit: str = "nats"
) -> pd.DataFrame:
    """Observations from a file, with column renames and wide loss columns melted."""
    return read_data(data, column, unit, wide=wide)


def _irreducible(value: str) -> Irreducible:
    # the library checks the value and names the choices
    return cast(Irreducible, value)


def _compute_law(value: str) -> ComputeLaw:
    return cast(ComputeLaw, value)


IrreducibleOpt = Annotated[
    str,
    typer.Option(
        help="joint: E_x, E_y fitted with K and κ, each at most its own compute fit's "
        "irreducible loss (the default: it forecasts larger models best); kaplan_lse or "
        "chinchilla: held at that compute law's irreducible losses (the paper's method)."
    ),
]
ComputeLawOpt = Annotated[
    str, typer.Option(help="Compute law of the irreducible losses: kaplan_lse or chinchilla.")
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        help="Bootstrap replicates: model configurations resampled, the compute fits of x "
        "and y refitted in each (0: none)."
    ),
]


def _param_rows(result: TransferFit) -> list[dict[str, Any]]:
    cis = result.fit.ci() if result.fit.bootstrap_params is not None else {}
    return [
        {
            "parameter": name,
            "value": value,
            "ci95_low": cis[name][0] if name in cis else "",
            "ci95_high": cis[name][1] if name in cis else "",
        }
        for name, value in result.params.items()
    ]


@transfer_app.command("fit")
@user_errors
def fit_command(
    data: DataArg,
    x: Annotated[str, typer.Option("--x", help=f"Loss to predict from: {LOSS_HELP}.")],
    y: Annotated[str, typer.Option("--y", help=f"Loss to predict: {LOSS_HELP}.")],
    irreducible: IrreducibleOpt = DEFAULT_IRREDUCIBLE,
    compute_law: ComputeLawOpt = "kaplan_lse",
    train_dataset: TrainDatasetOpt = OWN_DATASET,
    bootstrap: BootstrapOpt = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    column: ColumnOpt = None,
    wide: WideOpt = None,
    loss_unit: LossUnitOpt = "nats",
    out: Annotated[Path | None, typer.Option(help="Write the fit as JSON here.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Save a scatter of the pairs with the fitted curve.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit the shifted power law from loss x to loss y."""
    check_outputs(files={"--out": out}, figures={"--plot": plot})
    table = load_runs(data, column, wide, loss_unit)
    result = fit_transfer(
        table,
        LossRef.parse(x, train_dataset),
        LossRef.parse(y, train_dataset),
        irreducible=_irreducible(irreducible),
        compute_law=_compute_law(compute_law),
        bootstrap=bootstrap,
        seed=seed,
    )
    if out is not None:
        result.save(out)
    if plot is not None:
        from scalinglab.report.transfer_plot import plot_transfer

        plot_transfer(result, plot)
    in_sample_are = result.in_sample_are()
    summary = {
        "x": str(result.x),
        "y": str(result.y),
        "setting": result.setting,
        "irreducible": result.irreducible,
        "params": result.params,
        "n_pairs": len(result.pairs),
        "are": in_sample_are,
        "converged": result.fit.converged,
        "warnings": result.fit.warnings,
        "bootstrap": result.fit.options.get("bootstrap", 0),
    }
    if as_json:
        ci = {k: list(v) for k, v in result.fit.ci().items()} if bootstrap else None
        print_json(
            summary
            | {"ci95": ci, "saved_to": str(out) if out else None, "plot": plot and str(plot)}
        )
        return
    print_table(
        _param_rows(result),
        title=f"{result.setting}: {result.x} → {result.y}",
        columns=["parameter", "value", "ci95_low", "ci95_high"]
        if bootstrap
        else ["parameter", "value"],
    )
    console.print(
        f"{len(result.pairs)} pairs · in-sample ARE {fmt(100 * in_sample_are, 3)}% · "
        f"E from {result.irreducible} · converged: {result.fit.converged}",
        highlight=False,
    )
    for w in result.fit.warnings:
        note("warning", w)
    for label, path in (("saved to", out), ("plot saved to", plot)):
        if path is not None:
            console.print(f"{label} {path}", highlight=False)


@transfer_app.command("predict")
@user_errors
def predict_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `transfer fit --out`.")],
    loss_x: Annotated[
        list[float], typer.Option("--loss-x", help="A model's loss on x (nats); repeatable.")
    ],
    level: Annotated[float, typer.Option(help="Level of the interval.")] = 0.95,
    interval: Annotated[
        str,
        typer.Option(
            help="prediction: where a new model's loss on y falls (the law's uncertainty and "
            "the models' scatter about it); confidence: the law's uncertainty only."
        ),
    ] = "prediction",
    as_json: JsonOpt = False,
) -> None:
    """Predict models' loss on y from their loss on x (with an interval if bootstrapped)."""
    result = TransferFit.load(fit_file)
    values = np.asarray(loss_x, dtype=float)
    predicted = result.predict(values)
    bounds = (
        result.predict_interval(values, level, kind=cast(IntervalKind, interval))
        if result.fit.bootstrap_params is not None
        else None
    )
    rows = []
    for i, value in enumerate(values):
        row = {"loss_x": float(value), "loss_y": float(predicted[i])}
        if bounds is not None:
            row["low"], row["high"] = float(bounds[0][i]), float(bounds[1][i])
        rows.append(row)
    kind = interval if bounds is not None else None
    if as_json:
        print_json(
            {
                "x": str(result.x),
                "y": str(result.y),
                "level": level,
                "interval": kind,
                "predictions": rows,
            }
        )
        return
    print_table(rows, title=f"{result.x} → {result.y}")
    if bounds is not None:
        console.print(f"low, high: {level:.0%} {interval} interval", highlight=False)
    else:
        console.print("no interval: fit with --bootstrap to get one", highlight=False)


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in table.to_dict(orient="records")]


def _pivot_rows(table: pd.DataFrame, value: str) -> list[dict[str, Any]]:
    wide = table.pivot(index="x", columns="y", values=value)
    return [
        {"x \\ y": str(x), **{str(c): ("" if pd.isna(v) else v) for c, v in row.items()}}
        for x, row in wide.iterrows()
    ]


@transfer_app.command("matrix")
@user_errors
def matrix_command(
    data: DataArg,
    setting: Annotated[
        str, typer.Option(help=f"Which pairs: {', '.join(SETTINGS)}.")
    ] = "train_to_train",
    family: Annotated[
        list[str] | None, typer.Option(help="Families (training corpora) to use; default all.")
    ] = None,
    test_dataset: Annotated[
        list[str] | None,
        typer.Option(help="Test datasets (train_to_test, test_to_test); default all others."),
    ] = None,
    irreducible: IrreducibleOpt = DEFAULT_IRREDUCIBLE,
    train_dataset: TrainDatasetOpt = OWN_DATASET,
    column: ColumnOpt = None,
    wide: WideOpt = None,
    loss_unit: LossUnitOpt = "nats",
    as_json: JsonOpt = False,
) -> None:
    """Fit every pair of a setting: matrices of κ, K and in-sample error."""
    table = load_runs(data, column, wide, loss_unit)
    result = transfer_matrix(
        table,
        setting,
        families=family,
        test_datasets=test_dataset,
        train_dataset=train_dataset,
        irreducible=_irreducible(irreducible),
    )
    if as_json:
        print_json(_records(result))
        return
    for value, title in (("kappa", "κ"), ("K", "K"), ("are", "in-sample ARE")):
        print_table(_pivot_rows(result, value), title=f"{setting}: {title} (rows x, columns y)")


@transfer_app.command("translate")
@user_errors
def translate_command(
    data: DataArg,
    x: Annotated[str, typer.Option("--x", help=f"Loss whose law is known: {LOSS_HELP}.")],
    y: Annotated[str, typer.Option("--y", help=f"Loss to translate the law to: {LOSS_HELP}.")],
    run: Annotated[
        list[str] | None,
        typer.Option(help="A y run to use (repeatable); default one per FLOP budget."),
    ] = None,
    law: Annotated[str, typer.Option(help="Compute law: kaplan_lse or chinchilla.")] = (
        "kaplan_lse"
    ),
    train_dataset: TrainDatasetOpt = OWN_DATASET,
    column: ColumnOpt = None,
    wide: WideOpt = None,
    loss_unit: LossUnitOpt = "nats",
    as_json: JsonOpt = False,
) -> None:
    """Translate x's compute law to y from a few y runs; compare with fitting y alone."""
    table = load_runs(data, column, wide, loss_unit)
    result = translate_law(
        table,
        LossRef.parse(x, train_dataset),
        LossRef.parse(y, train_dataset),
        y_runs=run,
        law=_compute_law(law),
    )
    scores = result.evaluate(table)
    payload = {
        "x": str(result.x),
        "y": str(result.y),
        "y_runs": result.y_runs,
        "transfer_params": result.transfer.params,
        "x_law_params": result.x_fit.params,
        "direct_law_params": result.direct.params,
        **scores,
    }
    if as_json:
        print_json(payload)
        return
    print_table(
        [
            {"law": f"translated from {result.x}", "ARE %": 100 * scores["are_translated"]},
            {"law": f"{law} fitted on the few runs", "ARE %": 100 * scores["are_direct"]},
        ],
        title=f"{result.y}: {len(result.y_runs)} runs used, {int(scores['n_heldout'])} held out",
    )


@transfer_app.command("backtest")
@user_errors
def backtest_command(
    data: DataArg,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Setting to run (repeatable): {', '.join(SETTINGS)}; default the first."
        ),
    ] = None,
    max_train_flops: Annotated[
        float, typer.Option(help="Fit on runs up to this compute; predict the larger ones.")
    ] = 1e19,
    family: Annotated[list[str] | None, typer.Option(help="Families to use; default all.")] = None,
    test_dataset: Annotated[
        list[str] | None, typer.Option(help="Test datasets; default all others.")
    ] = None,
    law: Annotated[str, typer.Option(help="Compute law: kaplan_lse or chinchilla.")] = (
        "kaplan_lse"
    ),
    irreducible: IrreducibleOpt = DEFAULT_IRREDUCIBLE,
    bootstrap: Annotated[
        int,
        typer.Option(help="Bootstrap replicates, to score 95% prediction intervals too (0: none)."),
    ] = 0,
    train_dataset: TrainDatasetOpt = OWN_DATASET,
    column: ColumnOpt = None,
    wide: WideOpt = None,
    loss_unit: LossUnitOpt = "nats",
    as_json: JsonOpt = False,
) -> None:
    """ARE of transfer laws beyond a compute budget, beside the notebooks' method and
    each loss's own compute law."""
    table = load_runs(data, column, wide, loss_unit)
    results = pd.concat(
        [
            backtest_transfer(
                table,
                s,
                max_train_flops=max_train_flops,
                families=family,
                test_datasets=test_dataset,
                train_dataset=train_dataset,
                law=_compute_law(law),
                irreducible=_irreducible(irreducible),
                bootstrap=bootstrap,
            )
            for s in (setting or ["train_to_train"])
        ],
        ignore_index=True,
    )
    summary = summarize_backtest(results)
    if as_json:
        print_json({"pairs": _records(results), "summary": _records(summary)})
        return
    print_table(
        _records(results),
        title=f"backtest: fit ≤ {max_train_flops:.3g} FLOPs, predict larger runs",
        columns=[
            "setting",
            "x",
            "y",
            "kappa",
            "K",
            "n_test",
            "are_transfer",
            "are_notebook",
            "are_compute",
            *(["coverage", "width"] if bootstrap else []),
        ],
    )
    print_table(_records(summary), title="ARE per setting (mean over pairs; max: worst pair)")
