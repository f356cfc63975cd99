"""``scalinglab curve fit|predict|compare|optimize``: schedule-aware loss curves."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
import typer

from scalinglab.cli._common import (
    check_outputs,
    console,
    fmt,
    markup,
    note,
    print_json,
    print_table,
    renamed_option,
    user_errors,
)
from scalinglab.cli.compute import parse_assignments, parse_float, print_diagnostics, print_noise
from scalinglab.cli.data_options import ColumnOpt, DatasetOpt, JsonOpt, LossUnitOpt, column_map
from scalinglab.cli.data_options import loss_unit as checked_loss_unit
from scalinglab.cli.main import app
from scalinglab.errors import InputError, SpecError
from scalinglab.evaluation.curve_forecast import with_forecast_noise
from scalinglab.fitting import Fit, fit, select_dataset
from scalinglab.laws import get_law
from scalinglab.laws.curve import (
    DEFAULT_CURVE_CONFIG,
    DEFAULT_CURVE_LAW,
    SHAPE_PARAMETERS,
    CurveLaw,
    MultiPowerLaw,
    ScheduleWarning,
    curve_errors,
    curve_law,
    final_loss_model,
    predict_curve,
    predicted_curves,
    reference_shape,
    run_schedule,
)
from scalinglab.report.curve_plots import plot_curves
from scalinglab.report.document import save_figure
from scalinglab.schedules import (
    LR_CONVENTIONS,
    ParametricSchedule,
    Schedule,
    choose_schedule,
    parse_schedule,
)

curve_app = typer.Typer(
    help="Loss curves from learning-rate schedules: fit, predict, compare laws, choose a schedule.",
    no_args_is_help=True,
)
app.add_typer(curve_app, name="curve")

CURVE_LAWS = ("annealing", "annealing_size", "multipower")

CurvesArg = Annotated[
    list[Path],
    typer.Argument(help="Curve files (CSV, Parquet, JSONL) with step, lr or schedule, loss."),
]
LawOpt = Annotated[str, typer.Option(help=f"Curve law: {', '.join(CURVE_LAWS)}.")]
DecayOpt = Annotated[
    float | None, typer.Option(help="Annealing momentum decay λ (annealing laws; 0.999).")
]
WarmupOpt = Annotated[
    str,
    typer.Option(
        help="How the warmup's learning rate enters the law. fit (default): the warmup counts "
        "for its area in the forward area S1, or more (a fitted S0 >= 0: after a short warmup "
        "the loss falls faster than a power law of the area says); s1: exactly its area "
        "(Tissue et al., Luo et al.); both: its rising rate also counts as negative annealing "
        "(Luo et al.'s code); neither: S1 and the annealing terms start at the peak.",
    ),
]
ProgressOpt = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress",
        help="multipower: the loss drop declines as training progresses, times S1^-delta "
        "(default; --no-progress is Luo et al.'s law).",
    ),
]
ShapeOpt = Annotated[
    str | None,
    typer.Option(
        help="multipower's loss-drop shape (C, beta, gamma, delta): reference (default with "
        "--progress; measured on Luo et al.'s AdamW GPT curves, since curves whose rate decays "
        "smoothly cannot fit it), free (fitted; default with --no-progress), or a fit JSON to "
        "borrow it from (a fit of runs with sudden drops, or of another model size).",
    ),
]
ScheduleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--schedule",
        help="RUN=SPEC: the schedule of a run (glob on run ids), e.g. "
        "'cosine_24000=cosine:peak=3e-4,total=24000,warmup=2160,final=3e-5'. "
        "Default: the run's schedule in a run store, else its logged lr.",
    ),
]
LrLoggedOpt = Annotated[
    str,
    typer.Option(
        help="Which update a logged lr belongs to: auto (decided from the log), before (the "
        "next update: Hugging Face, Lightning, nanoGPT) or after (the one just done: "
        "scalinglab's trainer).",
    ),
]
MinStepOpt = Annotated[
    int | None,
    typer.Option(help="Use only points from this step on (the lr logged before still counts)."),
]
MaxStepOpt = Annotated[int | None, typer.Option(help="Use only points up to this step.")]
RunParamsOpt = Annotated[
    list[str] | None,
    typer.Option(help="RUN=N: model size of runs (glob), for annealing_size."),
]
OldParamsOpt = Annotated[list[str] | None, renamed_option("--params", "--run-params")]
PlotOpt = Annotated[
    Path | None, typer.Option(help="Write a plot of observed and predicted curves here.")
]


def load_curves(
    paths: Sequence[Path],
    schedules: list[str] | None = None,
    params: list[str] | None = None,
    *,
    columns: list[str] | None = None,
    loss_unit: str = "nats",
    lr_logged: str = "auto",
) -> pd.DataFrame:
    """Curves from files, one run per file unless the file has a ``run_id`` column.

    A file without ``run_id`` is one run named after the file (``folder/name`` when two
    files share a name); a run store gives each run's schedule spec. ``schedules`` and
    ``params`` are ``RUN=VALUE`` assignments whose ``RUN`` is a glob on run ids; ``columns``
    ``THEIRS=ours`` renames; ``lr_logged`` how a logged lr is read (``auto``, ``before``,
    ``after``).
    """
    from scalinglab.data import file_format, load_observations
    from scalinglab.study import load

    if not paths:
        raise SpecError("give at least one curve file")
    if lr_logged not in LR_CONVENTIONS:
        raise SpecError(
            f"--lr-logged must be one of {', '.join(LR_CONVENTIONS)}, got '{lr_logged}'"
        )
    mapping, unit = column_map(columns), checked_loss_unit(loss_unit)
    stems = [p.stem for p in paths]
    clash = len(set(stems)) < len(stems)
    frames = []
    for path in paths:
        if path.suffix and path.exists() and file_format(path) == "sqlite":
            df = load(path, columns=mapping, loss_unit=unit)  # with each run's schedule spec
        else:
            df = load_observations(path, columns=mapping, loss_unit=unit, required=("step", "loss"))
        if "run_id" in df.attrs.get("derived", ()):
            df["run_id"] = f"{path.parent.name}/{path.stem}" if clash else path.stem
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.attrs["source"] = ", ".join(p.name for p in paths)
    table.attrs["rows_per_file"] = [len(f) for f in frames]
    table.attrs["lr_convention"] = lr_logged
    _assign(table, parse_assignments(schedules, "--schedule"), "schedule", _spec)
    _assign(
        table,
        parse_assignments(params, "--run-params"),
        "params",
        lambda v: parse_float(v, "--run-params"),
    )
    return table


def _assign(table: pd.DataFrame, items: Mapping[str, str], column: str, convert: Any) -> None:
    """Set ``column`` of the runs matching each ``RUN`` glob to ``convert(VALUE)``."""
    runs = table["run_id"].astype(str)
    for pattern, raw in items.items():
        hit = runs.map(lambda r, p=pattern: fnmatch.fnmatchcase(r, p)).to_numpy(dtype=bool)
        if not hit.any():
            raise SpecError(
                f"--{column} {pattern}: no run matches; runs are {', '.join(runs.unique())}"
            )
        if column not in table.columns:
            table[column] = None
        table[column] = table[column].astype(object)
        table.loc[hit, column] = convert(raw)


def _spec(text: str) -> str:
    """Validate a schedule spec now, so that a typo is reported as the user wrote it."""
    return parse_schedule(text).spec()


def _law(name: str, decay: float | None, warmup: str, progress: bool = True) -> CurveLaw:
    if name not in CURVE_LAWS:
        raise SpecError(f"unknown curve law '{name}'; use one of {', '.join(CURVE_LAWS)}")
    config: dict[str, Any] = {"warmup": warmup}
    if decay is not None:
        if name == "multipower":
            raise SpecError("--decay applies to the annealing laws, not multipower")
        config["decay"] = decay
    if name == "multipower":
        config["progress"] = progress
    law = get_law(name, **config)
    assert isinstance(law, CurveLaw)
    return law


def _fixed(
    law: CurveLaw, fix: list[str] | None = None, shape: str | None = None
) -> dict[str, float] | None:
    """Parameters held in the fit: the loss-drop shape (``--shape``), then ``--fix``."""
    held: dict[str, float] = {}
    if isinstance(law, MultiPowerLaw):
        held = _shape(law, shape)
    elif shape is not None:
        raise SpecError(f"--shape applies to multipower, not {law.name}")
    held.update(
        {k: parse_float(v, f"--fix {k}") for k, v in parse_assignments(fix, "--fix").items()}
    )
    return held or None


def _shape(law: MultiPowerLaw, shape: str | None) -> dict[str, float]:
    choice = shape or ("reference" if law.progress else "free")
    if choice == "free":
        return {}
    if choice == "reference":
        held = reference_shape(law)
        if not held:
            raise SpecError(
                "the reference shape was measured with the progress term: use --progress, "
                "or --shape free"
            )
        return held
    path = Path(choice)
    if not path.exists():
        raise SpecError(f"--shape must be reference, free or a fit JSON; no file '{choice}'")
    source = Fit.load(path)
    names = [n for n in SHAPE_PARAMETERS if n in law.param_names]
    missing = [n for n in names if n not in source.params]
    if source.law.name != law.name or missing:
        raise SpecError(
            f"--shape {path.name}: {_article(source.law.name)} {source.law.name} fit has no "
            "multipower loss-drop shape"
            + (f" ({', '.join(missing)} missing)" if source.law.name == law.name else "")
            + "; borrow it from a multipower fit (with --progress for delta)"
        )
    return {n: float(source.params[n]) for n in names}


def _read_schedules(table: pd.DataFrame) -> pd.DataFrame:
    """Each run's schedule read once, from its logged lr on the rows of every dataset.

    Rows of other datasets (a training loss logged every step beside an evaluation every few
    hundred) give the densest log; runs with a ``schedule`` spec keep it.
    """
    if "lr" not in table.columns:
        return table
    source = str(table.attrs.get("source", "<DataFrame>"))
    schedules: dict[str, Schedule] = {}
    for run, rows in table.groupby(table["run_id"].astype(str), sort=False):
        if "schedule" in rows.columns and rows["schedule"].notna().any():
            continue
        schedules[str(run)] = run_schedule(rows, source=source, name=str(run))
    table.attrs["schedules"] = schedules
    return table


def _load(
    data: Sequence[Path],
    schedule: list[str] | None,
    params: list[str] | None,
    column: list[str] | None,
    loss_unit: str,
    lr_logged: str,
    dataset: str | None,
) -> tuple[pd.DataFrame, list[str]]:
    """The curves of ``dataset``, each run's schedule read, and what the logs could not pin."""
    table = load_curves(
        data, schedule, params, columns=column, loss_unit=loss_unit, lr_logged=lr_logged
    )
    return _reading_logs(lambda: select_dataset(_read_schedules(table), dataset))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _window(table: pd.DataFrame, min_step: int | None, max_step: int | None) -> np.ndarray:
    """Rows with ``min_step <= step <= max_step``; an empty window is an error."""
    steps = pd.to_numeric(table["step"], errors="coerce").to_numpy(dtype=float)
    keep = np.ones(len(table), dtype=bool)
    if min_step is not None:
        keep &= steps >= min_step
    if max_step is not None:
        keep &= steps <= max_step
    if not keep.any():
        raise SpecError(
            f"no point between --min-step {min_step} and --max-step {max_step} "
            f"(steps run from {np.nanmin(steps):g} to {np.nanmax(steps):g})"
        )
    return keep


_T = TypeVar("_T")


def _reading_logs(work: Callable[[], _T]) -> tuple[_T, list[str]]:
    """Run ``work``, collecting what logged learning rates could not pin (one line each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        result = work()
    lines: list[str] = []
    for item in caught:
        if not isinstance(item.message, ScheduleWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            continue
        line = (
            f"run {item.message.run}: {item.message.note}; "
            f"give its schedule: --schedule '{item.message.run}=SPEC'"
        )
        if line not in lines:
            lines.append(line)
    return result, lines


def _print_notes(lines: list[str]) -> None:
    for line in lines:
        note("warning", line)


def _error_rows(errors: pd.DataFrame, law: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for rec in errors.to_dict("records"):
        row = {"law": law} if law is not None else {}
        row.update(
            {
                "run_id": rec["run_id"],
                "points": rec["points"],
                "mean_err_pct": 100 * rec["mean_rel_error"],
                "max_err_pct": 100 * rec["max_rel_error"],
                "final_err_pct": 100 * rec["final_rel_error"],
            }
        )
        rows.append(row)
    return rows


@curve_app.command("fit")
@user_errors
def fit_command(
    data: CurvesArg,
    law: LawOpt = DEFAULT_CURVE_LAW,
    decay: DecayOpt = None,
    warmup: WarmupOpt = str(DEFAULT_CURVE_CONFIG["warmup"]),
    progress: ProgressOpt = True,
    shape: ShapeOpt = None,
    schedule: ScheduleOpt = None,
    run_params: RunParamsOpt = None,
    params: OldParamsOpt = None,
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    lr_logged: LrLoggedOpt = "auto",
    min_step: MinStepOpt = None,
    max_step: MaxStepOpt = None,
    fix: Annotated[list[str] | None, typer.Option(help="Hold a parameter: NAME=VALUE.")] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            help="Bootstrap refits for 95% intervals; the fit's noise then also carries the "
            "law's error forecasting the last quarter of each curve from the rest."
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the fit as JSON here.")] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a loss-curve law to one or more training curves."""
    check_outputs(files={"--out": out}, figures={"--plot": plot})
    params = run_params if params is None else params
    table, notes = _load(data, schedule, params, column, loss_unit, lr_logged, dataset)
    used = _window(table, min_step, max_step)
    curve = _law(law, decay, warmup, progress)
    options: dict[str, Any] = {
        "fixed": _fixed(curve, fix, shape),
        "weights": used.astype(float) if not used.all() else None,
    }
    result = fit(table, curve, bootstrap=bootstrap, seed=seed, **options)
    if bootstrap:
        # prediction intervals carry the law's error forecasting its own curves' ends
        result = with_forecast_noise(result, table, **options)
    errors = curve_errors(result, table, score=used)
    curves = predicted_curves(result, table) if plot is not None else None
    if out is not None:
        result.save(out)
    if plot is not None and curves is not None:
        save_figure(plot, plot_curves(curves, table[used], title=f"{law} fit"))
    if as_json:
        print_json(
            result.to_dict()
            | {
                "fit_errors": _error_rows(errors),
                "schedule_warnings": notes,
                "saved_to": str(out) if out else None,
                "plot": str(plot) if plot else None,
            }
        )
        return
    cis = result.ci() if result.bootstrap_params is not None else {}
    print_table(
        [
            {"parameter": n, "value": v, "ci95_low": cis.get(n, ("", ""))[0],
             "ci95_high": cis.get(n, ("", ""))[1]}
            for n, v in result.params.items()
        ],
        title=f"{law} fit to {table.attrs['source']}",
        columns=["parameter", "value", "ci95_low", "ci95_high"] if cis else ["parameter", "value"],
    )  # fmt: skip
    print_table(_error_rows(errors), title="fit error per curve (%)")
    console.print(
        f"objective {fmt(result.objective)} · {result.n_points} points in {result.n_groups} "
        f"curves · converged: {result.converged}"
    )
    print_noise(result)
    print_diagnostics(result.diagnostics)
    _print_notes(notes)
    for label, path in (("saved to", out), ("plot saved to", plot)):
        if path is not None:
            console.print(f"{label} {path}")


@curve_app.command("predict")
@user_errors
def predict_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `curve fit --out`.")],
    specs: Annotated[
        list[str] | None, typer.Argument(help="Schedule specs to predict, e.g. 'cosine:...'.")
    ] = None,
    data: Annotated[
        list[Path] | None, typer.Option(help="Observed curves to compare with (repeatable).")
    ] = None,
    schedule: ScheduleOpt = None,
    run_params: RunParamsOpt = None,
    params: OldParamsOpt = None,
    model_params: Annotated[
        float | None, typer.Option(help="Model size N for the specs (annealing_size).")
    ] = None,
    every: Annotated[int, typer.Option(help="Step interval of the predicted curve.")] = 1000,
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    lr_logged: LrLoggedOpt = "auto",
    min_step: MinStepOpt = None,
    max_step: MaxStepOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict the loss curve of any schedule (and check it against observed curves)."""
    check_outputs(figures={"--plot": plot})
    result = Fit.load(fit_file)
    law = curve_law(result)
    if not specs and not data:
        raise SpecError("give schedule specs to predict and/or --data curves to compare with")
    if every < 1:
        raise SpecError(f"--every must be at least 1, got {every}")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    schedules: dict[str, Schedule] = {}
    for spec in specs or []:
        sched = parse_schedule(spec)
        steps = np.unique(np.r_[np.arange(every, sched.total + 1, every), sched.total])
        curves[sched.spec()] = (
            steps,
            predict_curve(result, sched, steps, model_params=model_params),
        )
        schedules[sched.spec()] = sched
    table = None
    errors: list[dict[str, Any]] = []
    notes: list[str] = []
    if data:
        params = run_params if params is None else params
        table, notes = _load(data, schedule, params, column, loss_unit, lr_logged, dataset)
        scored = _window(table, min_step, max_step)
        errors = _error_rows(curve_errors(result, table, score=scored))
        curves |= predicted_curves(result, table)
        table = table[scored]
    if plot is not None:
        save_figure(plot, plot_curves(curves, table, title=f"{law.name} predictions"))
    rows = [
        {"schedule": name, "steps": int(steps[-1]), "final_loss": float(loss[-1])}
        for name, (steps, loss) in curves.items()
        if name in schedules
    ]
    if as_json:
        print_json(
            {
                "law": law.name,
                "predictions": [
                    {"schedule": name, "step": steps, "loss": loss}
                    for name, (steps, loss) in curves.items()
                    if name in schedules
                ],
                "errors": errors,
                "schedule_warnings": notes,
                "plot": str(plot) if plot else None,
            }
        )
        return
    if rows:
        print_table(rows, title=f"predicted final loss ({law.name})")
    if errors:
        print_table(errors, title="prediction error per observed curve (%)")
    _print_notes(notes)
    if plot is not None:
        console.print(f"plot saved to {plot}")


@curve_app.command("compare")
@user_errors
def compare_command(
    train: Annotated[list[Path], typer.Option(help="Curves to fit on (repeatable).")],
    test: Annotated[list[Path], typer.Option(help="Held-out curves to predict (repeatable).")],
    law: Annotated[
        list[str] | None, typer.Option(help="Laws to compare (default annealing, multipower).")
    ] = None,
    decay: DecayOpt = None,
    warmup: WarmupOpt = str(DEFAULT_CURVE_CONFIG["warmup"]),
    progress: ProgressOpt = True,
    shape: ShapeOpt = None,
    schedule: ScheduleOpt = None,
    run_params: RunParamsOpt = None,
    params: OldParamsOpt = None,
    dataset: DatasetOpt = None,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    lr_logged: LrLoggedOpt = "auto",
    min_step: MinStepOpt = None,
    max_step: MaxStepOpt = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit each law on some curves and compare their predictions of held-out curves."""
    check_outputs(figures={"--plot": plot})
    names = law or ["annealing", "multipower"]
    twice = {p.resolve() for p in train} & {p.resolve() for p in test}
    if twice:
        raise InputError(f"curves both fitted and held out: {', '.join(p.name for p in twice)}")
    # one table, so that run names and --schedule/--run-params cover both sets
    params = run_params if params is None else params
    both = load_curves(
        [*train, *test], schedule, params, columns=column, loss_unit=loss_unit, lr_logged=lr_logged
    )
    both, notes = _reading_logs(lambda: _read_schedules(both))
    n_train = sum(both.attrs["rows_per_file"][: len(train)])
    train_table = select_dataset(both.iloc[:n_train], dataset)
    test_table = select_dataset(both.iloc[n_train:], dataset)
    train_table.attrs["source"] = ", ".join(p.name for p in train)
    overlap = set(train_table["run_id"].astype(str)) & set(test_table["run_id"].astype(str))
    if overlap:
        raise InputError(f"runs both fitted and held out: {', '.join(sorted(overlap))}")
    fitted_points = _window(train_table, min_step, max_step)
    scored_points = _window(test_table, min_step, max_step)
    per_curve: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    fits: dict[str, Fit] = {}
    for name in names:
        curve = _law(name, decay if name != "multipower" else None, warmup, progress)
        result = fit(
            train_table,
            curve,
            fixed=_fixed(curve, shape=shape if name == "multipower" else None),
            weights=None if fitted_points.all() else fitted_points.astype(float),
        )
        errors = curve_errors(result, test_table, score=scored_points)
        fits[name] = result
        per_curve.extend(_error_rows(errors, name))
        summary.append(
            {
                "law": name,
                "mean_err_pct": 100 * float(errors["mean_rel_error"].mean()),
                "max_err_pct": 100 * float(errors["max_rel_error"].max()),
                "fit_objective": result.objective,
            }
        )
    best = min(summary, key=lambda r: r["mean_err_pct"])["law"]
    if plot is not None:
        result = fits[best]
        save_figure(
            plot,
            plot_curves(
                predicted_curves(result, test_table),
                test_table[scored_points],
                title=f"held-out curves, {best} fitted on {train_table.attrs['source']}",
            ),
        )
    if as_json:
        print_json(
            {
                "summary": summary,
                "per_curve": per_curve,
                "best": best,
                "params": {k: f.params for k, f in fits.items()},
                "schedule_warnings": notes,
                "plot": str(plot) if plot else None,
            }
        )
        return
    print_table(per_curve, title="held-out error per curve (%)")
    print_table(summary, title="held-out error per law (%)")
    console.print(markup("lowest mean error: [bold]{}[/]", best))
    _print_notes(notes)
    if plot is not None:
        console.print(f"plot saved to {plot}")


@curve_app.command("optimize")
@user_errors
def optimize_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `curve fit --out`.")],
    total: Annotated[int, typer.Option(help="Number of optimizer steps (the budget).")],
    peak: Annotated[float, typer.Option(help="Peak learning rate.")],
    warmup: Annotated[int, typer.Option(help="Linear warmup steps (from 0).")] = 0,
    final: Annotated[float, typer.Option(help="Floor of every schedule (cosine's end).")] = 0.0,
    model_params: Annotated[
        float | None, typer.Option(help="Model size N (annealing_size).")
    ] = None,
    knots: Annotated[int, typer.Option(help="Knots of the free schedule.")] = 40,
    save_schedule: Annotated[
        Path | None, typer.Option(help="Write the recommended schedule as a step,lr CSV here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a plot of the schedules and their predicted curves.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Choose a schedule for a fixed step budget: WSD cooldown grid and a free monotone one."""
    check_outputs(files={"--save-schedule": save_schedule}, figures={"--plot": plot})
    result = Fit.load(fit_file)
    choice = choose_schedule(
        final_loss_model(result, model_params=model_params),
        total=total,
        peak=peak,
        warmup=warmup,
        final=final,
        knots=knots,
    )
    rec = choice.recommended
    rows = [
        {
            "schedule": c.name,
            "spec": (
                c.schedule.spec() if isinstance(c.schedule, ParametricSchedule) else "free (knots)"
            ),
            "final_loss": c.final_loss,
            "gain_vs_cosine": choice.gain_over(choice.cosine, c),
            "gain_vs_wsd20": choice.gain_over(choice.wsd20, c),
        }
        for c in choice.candidates
    ]
    if save_schedule is not None:
        pd.DataFrame({"step": np.arange(total), "lr": rec.schedule.array()}).to_csv(
            save_schedule, index=False
        )
    if plot is not None:
        scheds = {c.name: c.schedule for c in choice.candidates}
        every = max(total // 400, 1)
        # from a tenth of the run on: the first steps would dwarf the differences
        steps = np.unique(np.r_[np.arange(max(warmup, total // 10, 1), total + 1, every), total])
        curves = {
            name: (steps, predict_curve(result, s, steps, model_params=model_params))
            for name, s in scheds.items()
        }
        save_figure(
            plot, plot_curves(curves, title=f"schedules for {total} steps", schedules=scheds)
        )
    if as_json:
        print_json(
            {
                "law": result.law.name,
                "total": total,
                "candidates": rows,
                "recommended": rec.name,
                "wsd_grid": choice.wsd_grid,
                "knots": {"step": choice.knots[0], "lr": choice.knots[1]},
                "saved_to": str(save_schedule) if save_schedule else None,
                "plot": str(plot) if plot else None,
            }
        )
        return
    print_table(rows, title=f"predicted final loss after {total} steps ({result.law.name})")
    console.print(
        markup(
            "recommended: [bold]{}[/], {} nats below cosine and {} below WSD-20%",
            rec.name,
            fmt(choice.gain_over(choice.cosine, rec)),
            fmt(choice.gain_over(choice.wsd20, rec)),
        )
    )
    for label, path in (("schedule saved to", save_schedule), ("plot saved to", plot)):
        if path is not None:
            console.print(f"{label} {path}")
