"""``scalinglab fit``, ``predict`` and ``laws``: compute scaling laws from a table of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.markup import escape

from scalinglab.cli._common import (
    check_outputs,
    console,
    fmt,
    print_json,
    print_table,
    user_errors,
)
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.fitting import Fit, fit
from scalinglab.laws import available_laws, get_law


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


def load_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Observations from a file or run store, with optional column renames."""
    from scalinglab.data import load_observations

    mapping = parse_assignments(columns, "--column")
    return load_observations(path, columns=mapping or None)


@app.command("fit")
@user_errors
def fit_command(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSONL or run-store (.sqlite) file.")],
    law: Annotated[str, typer.Option(help="Law to fit (see `scalinglab laws`).")] = "chinchilla",
    bootstrap: Annotated[int, typer.Option(help="Run-resampled refits for 95% CIs.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    dataset: Annotated[str | None, typer.Option(help="Dataset whose loss to fit.")] = None,
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
    column: Annotated[
        list[str] | None, typer.Option(help="Map a column: THEIRS=ours (e.g. 'Model Size=params').")
    ] = None,
    search: Annotated[
        str,
        typer.Option(
            help="fast (linear parameters solved exactly on the grid's lattice, or racing) "
            "or full (every start of the grid run to convergence)."
        ),
    ] = "fast",
    out: Annotated[Path | None, typer.Option(help="Write the fit as JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit a compute scaling law to a table of runs."""
    check_outputs(files={"--out": out})
    table = load_table(data, column)
    fixed = {k: parse_float(v, f"--fix {k}") for k, v in parse_assignments(fix, "--fix").items()}
    result = fit(
        table,
        law,
        dataset=dataset,
        bootstrap=bootstrap,
        seed=seed,
        loss=loss,
        delta=delta,
        fixed=fixed or None,
        tie=parse_assignments(tie, "--tie") or None,
        cap_irreducible=cap_irreducible,
        overestimate_penalty=overestimate_penalty,
        search=search,
    )
    if out is not None:
        result.save(out)
    if as_json:
        print_json(result.to_dict() | {"saved_to": str(out) if out else None})
        return
    cis = result.ci() if result.bootstrap_params is not None else {}
    rows = [
        {
            "parameter": n,
            "value": v,
            "ci95_low": cis.get(n, ("",))[0],
            "ci95_high": cis.get(n, ("", ""))[1],
        }
        for n, v in result.params.items()
    ]
    print_table(
        rows,
        title=f"{result.law.name} fit to {data.name}",
        columns=["parameter", "value", "ci95_low", "ci95_high"] if cis else ["parameter", "value"],
    )
    console.print(
        f"objective {fmt(result.objective)} · {result.n_points} points in {result.n_groups} runs"
        f" · converged: {result.converged} · {result.search_summary()}"
    )
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if out is not None:
        console.print(f"saved to {escape(str(out))}")


@app.command("predict")
@user_errors
def predict_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `scalinglab fit --out`.")],
    params: Annotated[list[float] | None, typer.Option(help="Total parameters N.")] = None,
    tokens: Annotated[list[float] | None, typer.Option(help="Training tokens D.")] = None,
    flops: Annotated[list[float] | None, typer.Option(help="Training FLOPs C.")] = None,
    level: Annotated[float, typer.Option(help="Confidence level of the interval.")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Forecast the loss of a model from a saved fit, with a bootstrap interval."""
    result = Fit.load(fit_file)
    given = {"params": params, "tokens": tokens, "flops": flops}
    unused = [f"--{k}" for k, v in given.items() if v and k not in result.law.inputs]
    if unused:
        takes = ", ".join(f"--{name}" for name in result.law.inputs)
        raise SpecError(
            f"law '{result.law.name}' takes {takes}, not {', '.join(unused)}; leave "
            f"{'it' if len(unused) == 1 else 'them'} out"
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
    loss_nats = result.predict(x)
    rows = []
    interval = result.predict_interval(x, level) if result.bootstrap_params is not None else None
    for i in range(loss_nats.size):
        row: dict[str, float] = {k: float(v[i]) for k, v in x.items()}
        row["loss_nats"] = float(loss_nats[i])
        if interval is not None:
            row["ci_low"], row["ci_high"] = float(interval[0][i]), float(interval[1][i])
        rows.append(row)
    if as_json:
        print_json({"law": result.law.name, "level": level, "predictions": rows})
    else:
        print_table(rows, title=f"forecast from {fit_file.name}")


@app.command("laws")
@user_errors
def laws_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
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
