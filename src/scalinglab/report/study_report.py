"""Draw a :class:`scalinglab.study.Study` as a report (interactive HTML, Markdown, PNG)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scalinglab._format import Interval, Percent
from scalinglab.data.runs import final_rows
from scalinglab.fitting import Fit
from scalinglab.laws.curve import predict_curve, predicted_curves
from scalinglab.planning.optimal import Plan
from scalinglab.report import charts
from scalinglab.report.backtest_plot import are_grid, plot_are_heatmap
from scalinglab.report.compute_plots import plot_allocation, plot_isoflop, plot_loss_vs_compute
from scalinglab.report.curve_plots import plot_curves
from scalinglab.report.document import Report
from scalinglab.report.transfer_plot import plot_transfer
from scalinglab.report.translation_plot import plot_translation
from scalinglab.study import Study, recipe_rows


def build_report(study: Study, title: str = "Scaling study") -> Report:
    """Lay out every part of the study that was made, and why the others were not."""
    report = Report(title=title, summary=list(study.summary))
    _runs_section(report, study)
    _compute_section(report, study)
    _curve_section(report, study)
    _transfer_section(report, study)
    _backtest_section(report, study)
    _fits_table(report, study)
    flags = study.flags()
    if flags:
        sec = report.section("Flags on the fits")
        sec.paragraphs.append(
            "What makes a number less trustworthy, and what to do about it. A clean fit has none."
        )
        sec.table(
            "Flags",
            [
                {"fit": part, "flag": d.message, "what to do": d.advice}
                for part, found in flags.items()
                for d in found
            ],
        )
    if study.notes:
        sec = report.section("Parts not made")
        sec.table("Why", [{"part": k, "reason": v} for k, v in study.notes.items()])
    return report


def fit_notes(fit: Fit) -> list[str]:
    """What a reader must know about a fit before trusting its numbers: its diagnostics,
    one line each (what is wrong: what to do)."""
    return [str(d) for d in fit.diagnostics]


def _interval(value: float, bounds: tuple[Any, Any] | None) -> Interval | float:
    if bounds is None:
        return float(value)
    return Interval(float(value), float(bounds[0]), float(bounds[1]))


def _runs_section(report: Report, study: Study) -> None:
    """One row per run: size, tokens, schedule, optimizer and its final loss per dataset."""
    obs = study.observations
    if obs.empty:
        return
    finals = final_rows(obs)
    info = finals.groupby("run_id", sort=False).agg(
        params=("params", "first"), tokens=("tokens", "max")
    )
    for column in ("family", "schedule", "optimizer"):
        if column in finals.columns:
            info[column] = finals.groupby("run_id", sort=False)[column].first().map(_label)
    if "dataset" in finals.columns:
        losses = finals.pivot_table(
            index="run_id", columns="dataset", values="loss", aggfunc="last"
        )
        losses.columns = [f"final loss: {c}" for c in losses.columns]
        info = info.join(losses)
    else:
        info["final loss"] = finals.groupby("run_id", sort=False)["loss"].last()
    info = info.sort_values(["params", "tokens"])
    rows = [
        {"run": str(run), **{_RUN_COLUMNS.get(str(c), str(c)): _plain(v) for c, v in rec.items()}}
        for run, rec in zip(info.index, info.to_dict(orient="records"), strict=True)
    ]
    sec = report.section("Runs")
    sec.paragraphs.append(
        f"{len(rows)} runs; N is the total number of parameters, D the tokens seen at the "
        "last measurement. Click a column to sort."
    )
    sec.table("Every run and its final losses (nats/token)", rows, sortable=True)


#: headers of the runs table
_RUN_COLUMNS = {"params": "N (parameters)", "tokens": "D (tokens)"}


def _label(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def _plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """The plans table: one column per quantity, each ``value [lo, hi]``."""
    rows = []
    for i, flops in enumerate(plan.flops):
        row: dict[str, Any] = {"budget (FLOPs)": float(flops)}
        for name, label in (
            ("params", "N* (parameters)"),
            ("tokens", "D* (tokens)"),
            ("tokens_per_param", "tokens per parameter"),
            ("loss", "loss (nats/token)"),
        ):
            bounds = None
            if name in plan.ci:
                bounds = (plan.ci[name][0][i], plan.ci[name][1][i])
            row[label] = _interval(float(getattr(plan, name)[i]), bounds)
        rows.append(row)
    return rows


def _parameter_rows(fit: Fit) -> list[dict[str, Any]]:
    cis = fit.ci() if fit.bootstrap_params is not None else {}
    return [
        {"parameter": name, "value [95% CI]": _interval(value, cis.get(name))}
        for name, value in fit.params.items()
    ]


def _compute_section(report: Report, study: Study) -> None:
    if study.compute_fit is None:
        return
    sec = report.section("Compute scaling law")
    rows = final_rows(recipe_rows(study))
    fit = study.compute_fit
    n_boot = 0 if fit.bootstrap_params is None else len(fit.bootstrap_params)
    sec.paragraphs.append(
        f"{fit.law.name} law fitted to the final loss of {fit.n_points} runs on "
        f"'{study.dataset}' (Huber δ={fit.options.get('delta')} on log residuals, "
        f"{fit.n_starts} starts, {n_boot} exploring bootstrap refits, "
        f"{fit.options.get('bootstrap_kind')}). Intervals on parameters and plans are "
        "confidence intervals; the loss a run trained at a plan will measure has a wider "
        "prediction interval (run-to-run noise added)."
    )
    sec.table("Fitted parameters", _parameter_rows(fit), notes=fit_notes(fit))
    sec.figure(
        "loss_vs_compute",
        "Loss against compute: final loss of every run; thin lines: the fitted law for each "
        "trained size; thick: its compute-optimal frontier and bootstrap band.",
        plot_loss_vs_compute(rows, study.frontier, fit),
        charts.loss_vs_compute_chart(rows, study.frontier, fit),
    )
    if study.isoflop is not None:
        sec.figure(
            "isoflop",
            "IsoFLOP curves: loss against model size per budget, parabola in log N and its "
            "minimum.",
            plot_isoflop(rows, study.isoflop),
            charts.isoflop_chart(rows, study.isoflop),
        )
    if study.frontier is not None:
        sec.figure(
            "allocation",
            "Compute-optimal allocation: parameters and tokens against compute, with bootstrap "
            "bands" + ("; stars are the isoFLOP minima." if study.isoflop is not None else "."),
            plot_allocation(study.frontier, study.isoflop),
            charts.allocation_chart(study.frontier, study.isoflop),
        )
    if study.plan is not None:
        level = f"{study.plan.level:.0%} bootstrap intervals" if study.plan.ci else "no intervals"
        inherited = []
        if fit.diagnostics:
            inherited = [
                f"These plans inherit the {len(fit.diagnostics)} diagnostic(s) of the fit "
                "(beside its parameters above)."
            ]
        sec.table(
            f"Compute-optimal plans ({level})",
            _plan_rows(study.plan),
            notes=[*study.plan.warnings, *inherited],
        )


def _curve_section(report: Report, study: Study) -> None:
    curve = study.extras.get("curve")
    if curve is None:
        return
    sec = report.section("Loss curves across learning-rate schedules")
    sec.paragraphs.append(
        f"Curve laws fitted on {', '.join(curve.fitted_runs)} and used to predict "
        f"{', '.join(curve.held_out_runs)} from its schedule alone. The {curve.best_law} law "
        "predicts the held-out curves best."
    )
    best = curve.fits[curve.best_law]
    predicted = predicted_curves(best, curve.observations)
    fitted = frozenset(curve.fitted_runs)
    sec.figure(
        "curves",
        "Loss curves: dashed curves were fitted, solid curves are predictions of runs the law "
        "never saw; points are the measured losses.",
        plot_curves(
            predicted,
            curve.observations,
            fitted=fitted,
            title=f"{curve.best_law} law: observed points, fitted and predicted curves",
        ),
        charts.curves_chart(predicted, curve.observations, fitted=fitted),
    )
    table = curve.errors.copy()
    rows = []
    for rec in table.to_dict(orient="records"):
        row: dict[str, Any] = {
            str(k): v for k, v in rec.items() if not str(k).endswith("rel_error")
        }
        for col in ("mean_rel_error", "max_rel_error", "final_rel_error"):
            row[col.replace("_rel_error", " error")] = Percent(float(rec[col]))
        rows.append(row)
    notes = [f"{name}: {n}" for name, f in curve.fits.items() for n in fit_notes(f)]
    sec.table("Relative error of each law on each run", rows, notes=notes, sortable=True)
    if curve.choice is not None:
        sec.table(
            f"Schedule choice by the {curve.best_law} law",
            [
                {
                    "schedule": c.name,
                    "predicted final loss (nats)": c.final_loss,
                    "gain over cosine (nats)": curve.choice.gain_over(curve.choice.cosine, c),
                }
                for c in curve.choice.candidates
            ],
        )
        schedules = {c.name: c.schedule for c in curve.choice.candidates}
        total = curve.choice.cosine.schedule.total
        first = int(curve.observations["step"].min())
        steps = np.unique(np.linspace(first, total, 200).astype(np.int64))
        candidates = {
            c.name: (steps, predict_curve(best, c.schedule, steps)) for c in curve.choice.candidates
        }
        sec.figure(
            "schedule_choice",
            "Candidate schedules: learning rate (top) and predicted loss (bottom) of cosine, "
            "WSD-20%, the best WSD and the optimised monotone schedule.",
            plot_curves(
                candidates,
                schedules=schedules,
                title="Candidate schedules and their predicted loss curves",
            ),
            charts.schedule_choice_chart(candidates, schedules),
        )


def _transfer_section(report: Report, study: Study) -> None:
    transfer = study.extras.get("transfer")
    if transfer is None:
        return
    result = transfer.fit
    sec = report.section("Loss-to-loss prediction")
    floors = (
        "E_x and E_y fitted with K and κ, each at most the irreducible loss of its own compute fit"
        if result.irreducible == "joint"
        else f"E_x and E_y from {result.irreducible} compute fits on each loss"
    )
    sec.paragraphs.append(
        f"Shifted power law L_y = K·(L_x − E_x)^κ + E_y from {result.x} to {result.y}, with "
        f"{floors} (Brandfonbrener et al. 2024)."
    )
    sec.table("Fitted parameters", _parameter_rows(result.fit), notes=fit_notes(result.fit))
    sec.figure(
        "transfer",
        "Loss-to-loss pairs: losses of the same model on the two datasets, coloured by "
        "compute, with the fitted shifted power law.",
        plot_transfer(result),
        charts.transfer_chart(result),
    )
    if transfer.translation is not None:
        sec.figure(
            "translation",
            "Translated law: forecasts of every run on the second dataset by the translated "
            "law and by a law fitted on the same few runs alone.",
            plot_translation(transfer.translation, study.observations),
            charts.translation_chart(transfer.translation, study.observations),
        )
    if transfer.scores:
        sec.table(
            "Translated law against direct fit (held-out runs)",
            [
                {"law": "translated", "ARE": Percent(transfer.scores["are_translated"])},
                {"law": "direct", "ARE": Percent(transfer.scores["are_direct"])},
            ],
        )


def _backtest_section(report: Report, study: Study) -> None:
    backtest = study.extras.get("backtest")
    if backtest is None:
        return
    sec = report.section("Backtest: forecasting the largest run")
    sec.paragraphs.append(
        f"The compute law is fitted on the k smallest model sizes, seeing the first fraction p "
        f"of each of their runs, and forecasts the checkpoints of {backtest.target} after 70% "
        "of its tokens. ARE is the mean absolute relative error there; the no-fit baselines "
        "forecast the target's loss from the last loss(es) seen."
    )
    headline = {
        k: Percent(float(v)) if (k == "are" or k.startswith("baseline")) else v
        for k, v in backtest.headline.items()
    }
    headline = {("ARE" if k == "are" else k): v for k, v in headline.items()}
    sec.table("Best forecast with every smaller size seen", [headline])
    ok = backtest.results[backtest.results["error"].isna()]
    failed = backtest.results[backtest.results["error"].notna()]
    for choice in sorted(ok["choice"].unique()):
        sec.figure(
            f"backtest_{choice}",
            f"Backtest ARE ({choice}) by training sizes k and fraction p of their runs seen.",
            plot_are_heatmap(ok, choice=choice),
            charts.heatmap_chart(are_grid(ok, choice=choice)),
        )
    if not failed.empty:
        why = failed.groupby(["choice", "error"], sort=True).size().reset_index(name="scenarios")
        sec.table(
            "Scenarios without a forecast",
            [
                {"choice": r["choice"], "scenarios": int(r["scenarios"]), "why": r["error"]}
                for r in why.to_dict(orient="records")
            ],
        )


def _fits_table(report: Report, study: Study) -> None:
    fits: list[tuple[str, Fit | None]] = [("compute", study.compute_fit)]
    curve = study.extras.get("curve")
    if curve is not None:
        fits += [(f"curve ({name})", f) for name, f in curve.fits.items()]
    transfer = study.extras.get("transfer")
    if transfer is not None:
        fits.append(("loss-to-loss", transfer.fit.fit))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for part, fit in fits:
        if fit is None:
            continue
        rows += [{"part": part, "law": fit.law.name, **r} for r in _parameter_rows(fit)]
        notes += [f"{part}: {n}" for n in fit_notes(fit)]
    if rows:
        report.section("Every fitted law").table(
            "Parameters and 95% bootstrap intervals", rows, notes=notes
        )
