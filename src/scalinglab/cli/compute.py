"""``scalinglab fit``, ``predict`` and ``laws``: compute scaling laws from a table of runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.text import Text

from scalinglab.cli._common import (
    check_outputs,
    console,
    fmt,
    print_json,
    print_table,
    progress_bar,
    user_errors,
)
from scalinglab.cli.data_options import ColumnOpt, JsonOpt, LossUnitOpt, read_data
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.laws import available_laws, get_law

if TYPE_CHECKING:
    import pandas as pd

    from scalinglab.fitting import Diagnostic, Fit


def parse_assignments(items: list[str] | None, option: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` → ``{"a": "1", "b": "2"}``, with a clear error for anything else."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SpecError(f"{option} expects NAME=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def parse_float(text: str, what: str) -> float:
    """A float from the command line, or a clear error naming the option."""
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{what}: '{text}' is not a number") from None


def load_table(
    path: Path, columns: list[str] | None = None, loss_unit: str = "nats"
) -> pd.DataFrame:
    """Observations from a file or run store, with optional column renames and loss unit."""
    return read_data(path, columns, loss_unit)


@app.command("fit")
@user_errors
def fit_command(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSONL or run-store (.sqlite) file.")],
    law: Annotated[str, typer.Option(help="Law to fit (see `scalinglab laws`).")] = "chinchilla",
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap refits for intervals (each a full start search).")
    ] = 0,
    bootstrap_kind: Annotated[
        str,
        typer.Option(
            help="auto (cases with >= 10 runs per free parameter, else parametric), cases "
            "(resample runs) or parametric (redraw from the law with the measured noise)."
        ),
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    dataset: Annotated[str | None, typer.Option(help="Dataset whose loss to fit.")] = None,
    all_checkpoints: Annotated[
        bool,
        typer.Option(
            "--all-checkpoints", help="Fit every checkpoint, not only each run's last one."
        ),
    ] = False,
    run: Annotated[str | None, typer.Option(help="Fit only runs whose id matches a glob.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Fit only runs of this schedule kind (cosine, wsd...).")
    ] = None,
    family: Annotated[
        str | None, typer.Option(help="Fit only runs of this family (default: the most measured).")
    ] = None,
    min_tokens: Annotated[
        float | None, typer.Option(help="Leave out measurements before this many tokens.")
    ] = None,
    loss: Annotated[str, typer.Option(help="huber or squares (on log residuals).")] = "huber",
    delta: Annotated[float, typer.Option(help="Huber threshold on log residuals.")] = 1e-3,
    fix: Annotated[list[str] | None, typer.Option(help="Hold a parameter: NAME=VALUE.")] = None,
    tie: Annotated[list[str] | None, typer.Option(help="Tie parameters: beta=alpha.")] = None,
    cap_irreducible: Annotated[
        bool, typer.Option(help="Bound the irreducible loss by the lowest observed loss.")
    ] = False,
    overestimate_penalty: Annotated[
        float, typer.Option(help="Multiplier on the loss of over-predicted points.")
    ] = 1.0,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    search: Annotated[
        str,
        typer.Option(
            help="fast (linear parameters solved exactly on the grid's lattice, or racing) "
            "or full (every start of the grid run to convergence)."
        ),
    ] = "fast",
    out: Annotated[Path | None, typer.Option(help="Write the fit as JSON here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a compute scaling law to a table of runs (by default each run's last measurement)."""
    check_outputs(files={"--out": out})
    from scalinglab.data import select_runs
    from scalinglab.fitting import select_dataset

    table = load_table(data, column, loss_unit)
    law_obj = get_law(law)
    rows = select_dataset(table, dataset)
    notes: list[str] = []
    if set(law_obj.inputs) <= COMPUTE_INPUTS:
        chosen = select_runs(
            rows,
            all_checkpoints=all_checkpoints,
            run=run,
            schedule=schedule,
            family=family,
            min_tokens=min_tokens,
        )
        rows, notes = chosen.rows, chosen.notes
    fixed = {k: parse_float(v, f"--fix {k}") for k, v in parse_assignments(fix, "--fix").items()}
    from scalinglab.fitting import fit  # scipy: imported by the commands that fit

    with progress_bar("bootstrap refits") as progress:
        result = fit(
            rows,
            law_obj,
            bootstrap=bootstrap,
            bootstrap_kind=bootstrap_kind,
            seed=seed,
            loss=loss,
            delta=delta,
            fixed=fixed or None,
            tie=parse_assignments(tie, "--tie") or None,
            cap_irreducible=cap_irreducible,
            overestimate_penalty=overestimate_penalty,
            search=search,
            progress=progress,
        )
    if out is not None:
        result.save(out)
    if as_json:
        print_json(
            result.to_dict()
            | {"interval": "confidence", "notes": notes, "saved_to": str(out) if out else None}
        )
        return
    cis = result.ci() if result.bootstrap_params is not None else {}
    label = f"95% CI ({result.options.get('bootstrap_kind')} bootstrap)"
    rows_out = [
        {"parameter": n, "value": v, label: f"[{fmt(cis[n][0])}, {fmt(cis[n][1])}]"}
        if cis
        else {"parameter": n, "value": v}
        for n, v in result.params.items()
    ]
    print_table(rows_out, title=f"{result.law.name} fit to {data.name}")
    console.print(
        f"objective {fmt(result.objective)} · {result.n_points} points in {result.n_groups} runs"
        f" · converged: {result.converged} · {result.search_summary()}"
    )
    print_noise(result)
    for note in notes:
        console.print(f"note: {note}", markup=False)
    print_diagnostics(result.diagnostics)
    if out is not None:
        console.print(f"saved to {out}", markup=False)


#: inputs of compute laws: a table of checkpoints is reduced to each run's last measurement
COMPUTE_INPUTS = {"params", "tokens", "flops", "params_nonembedding"}


#: how each source of a fit's noise estimate reads
NOISE_SOURCES = {
    "residuals": "the residuals",
    "repeats": "runs with the same inputs",
    "forecast": "the law's error forecasting the end of its curves",
}


def print_noise(result: Fit) -> None:
    """One line on the run-to-run noise behind prediction intervals."""
    if result.noise is None:
        console.print(
            "run-to-run noise: not measurable (no degrees of freedom left); forecasts carry "
            "confidence intervals only",
            markup=False,
        )
        return
    noise = result.noise
    source = " and ".join(NOISE_SOURCES.get(part, part) for part in noise.source.split("+"))
    console.print(
        f"run-to-run noise: {100 * noise.sd_log:.2g}% of the loss (from {source}, "
        f"{noise.dof} degrees of freedom); prediction intervals add it to the parameters' "
        "uncertainty",
        markup=False,
    )


def print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    """Each flag on its own line: what is wrong, then what to do."""
    for flag in diagnostics:
        text = Text("flag: ", style="bold yellow") + Text(flag.message)
        if flag.advice:
            text += Text(f" — {flag.advice}")
        console.print(text, soft_wrap=True)


@app.command("predict")
@user_errors
def predict_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `scalinglab fit --out`.")],
    params: Annotated[list[float] | None, typer.Option(help="Total parameters N.")] = None,
    tokens: Annotated[list[float] | None, typer.Option(help="Training tokens D.")] = None,
    flops: Annotated[list[float] | None, typer.Option(help="Training FLOPs C.")] = None,
    level: Annotated[float, typer.Option(help="Level of the intervals.")] = 0.95,
    as_json: JsonOpt = False,
) -> None:
    """Forecast the loss of a new run from a saved fit, with its intervals and flags.

    The prediction interval covers the loss a new run will measure (parameter uncertainty and
    run-to-run noise); the confidence interval covers the law's mean loss there.
    """
    from scalinglab.fitting import Fit

    result = Fit.load(fit_file)
    given = {"params": params, "tokens": tokens, "flops": flops}
    unused = [f"--{k}" for k, v in given.items() if v and k not in result.law.inputs]
    if unused:
        raise SpecError(
            f"law '{result.law.name}' reads {', '.join(result.law.inputs)}; "
            f"{', '.join(unused)} would be ignored"
        )
    x: dict[str, np.ndarray] = {}
    for name in result.law.inputs:
        values = given.get(name)
        if not values:
            raise SpecError(f"law '{result.law.name}' needs --{name}")
        x[name] = np.asarray(values, dtype=float)
    lengths = {len(v) for v in x.values()}
    if len(lengths) > 1:
        raise SpecError("give the same number of values to every option")
    bad = [f"--{k} {v}" for k, arr in x.items() for v in arr if not (np.isfinite(v) and v > 0)]
    if bad:
        raise SpecError(f"values must be positive: {', '.join(bad)}")
    if not 0 < level < 1:
        raise SpecError(f"--level must be between 0 and 1, got {level}")
    loss_nats = result.predict(x)
    booted = result.bootstrap_params is not None
    confidence = result.predict_interval(x, level, kind="confidence") if booted else None
    prediction = (
        result.predict_interval(x, level, kind="prediction")
        if booted and result.noise is not None
        else None
    )
    ratio = result.extrapolation_ratio(x)
    rows = []
    for i in range(loss_nats.size):
        row: dict[str, float] = {k: float(v[i]) for k, v in x.items()}
        row["loss_nats"] = float(loss_nats[i])
        if prediction is not None:
            row["prediction_low"], row["prediction_high"] = (
                float(prediction[0][i]),
                float(prediction[1][i]),
            )
        if confidence is not None:
            row["confidence_low"], row["confidence_high"] = (
                float(confidence[0][i]),
                float(confidence[1][i]),
            )
        if ratio is not None:
            row["extrapolation_ratio"] = float(ratio[i])
        rows.append(row)
    flags = result.forecast_diagnostics(x)
    if as_json:
        print_json(
            {
                "law": result.law.name,
                "level": level,
                "intervals": {
                    "prediction": "the loss a new run will measure: parameter uncertainty "
                    "and run-to-run noise",
                    "confidence": "the law's mean loss: parameter uncertainty only",
                },
                "predictions": rows,
                "diagnostics": [d.to_dict() for d in flags],
            }
        )
        return
    table_rows = []
    for row in rows:
        shown: dict[str, str] = {k: fmt(row[k]) for k in x}
        shown["loss (nats)"] = fmt(row["loss_nats"])
        if "prediction_low" in row:
            shown[f"{level:.0%} prediction interval"] = (
                f"[{fmt(row['prediction_low'])}, {fmt(row['prediction_high'])}]"
            )
        if "confidence_low" in row:
            shown[f"{level:.0%} confidence interval"] = (
                f"[{fmt(row['confidence_low'])}, {fmt(row['confidence_high'])}]"
            )
        if "extrapolation_ratio" in row:
            shown["× largest fitted"] = fmt(row["extrapolation_ratio"])
        table_rows.append(shown)
    print_table(table_rows, title=f"forecast from {fit_file.name}")
    if not booted:
        console.print(
            "no intervals: the fit has no bootstrap replicates (refit with --bootstrap 1000)",
            markup=False,
        )
    elif prediction is not None:
        console.print(
            "prediction interval: the loss a new run will measure (parameters and run-to-run "
            "noise); confidence interval: the law's mean loss (parameters only)",
            markup=False,
        )
    print_diagnostics(flags)


@app.command("laws")
@user_errors
def laws_command(
    as_json: JsonOpt = False,
) -> None:
    """List the laws scalinglab can fit, with their inputs and parameters."""
    rows = []
    for name in available_laws():
        law = get_law(name)
        rows.append(
            {
                "law": name,
                "inputs": ", ".join(law.inputs),
                "parameters": ", ".join(law.param_names),
                "form": (type(law).__doc__ or "").strip().splitlines()[0].replace("``", ""),
            }
        )
    if as_json:
        print_json(rows)
    else:
        print_table(rows, title="laws")
