"""Draw a :class:`scalinglab.study.Study` as a report (HTML, Markdown, PNG)."""

from __future__ import annotations

import numpy as np

from scalinglab.data.runs import final_rows
from scalinglab.laws.curve import predict_curve, predicted_curves
from scalinglab.report.backtest_plot import plot_are_heatmap
from scalinglab.report.compute_plots import plot_allocation, plot_isoflop, plot_loss_vs_compute
from scalinglab.report.curve_plots import plot_curves
from scalinglab.report.document import Report
from scalinglab.report.transfer_plot import plot_transfer
from scalinglab.report.translation_plot import plot_translation
from scalinglab.study import Study, recipe_rows


def build_report(study: Study, title: str = "Scaling study") -> Report:
    """Lay out every part of the study that was made, and why the others were not."""
    report = Report(title=title, summary=list(study.summary))
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
        sec.tables.append(
            (
                "Flags",
                [
                    {"fit": part, "flag": d.message, "what to do": d.advice}
                    for part, found in flags.items()
                    for d in found
                ],
            )
        )
    if study.notes:
        sec = report.section("Parts not made")
        sec.tables.append(("Why", [{"part": k, "reason": v} for k, v in study.notes.items()]))
    return report


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
    sec.figures.append(
        (
            "loss_vs_compute",
            plot_loss_vs_compute(rows, study.frontier, study.compute_fit),
            "Final loss of every run against its compute; thin lines: the fitted law for each "
            "trained size; thick: its compute-optimal frontier and bootstrap band.",
        )
    )
    if study.isoflop is not None:
        sec.figures.append(
            (
                "isoflop",
                plot_isoflop(rows, study.isoflop),
                "IsoFLOP curves: loss against model size per budget, "
                "parabola in log N and its minimum.",
            )
        )
    if study.frontier is not None:
        sec.figures.append(
            (
                "allocation",
                plot_allocation(study.frontier, study.isoflop),
                "Compute-optimal parameters and tokens against compute, with bootstrap bands"
                + ("; stars are the isoFLOP minima." if study.isoflop is not None else "."),
            )
        )
    if study.plan is not None:
        sec.tables.append(("Compute-optimal plans", study.plan.to_records()))


def _curve_section(report: Report, study: Study) -> None:
    curve = study.extras.get("curve")
    if curve is None:
        return
    sec = report.section("Loss curves across learning-rate schedules")
    sec.paragraphs.append(
        f"Curve laws fitted on {', '.join(curve.fitted_runs)} and used to predict "
        f"{', '.join(curve.held_out_runs)} from its schedule alone. The {curve.best_law} law "
        "is drawn: it forecasts the last quarter of the fitted curves from the rest best."
    )
    best = curve.fits[curve.best_law]
    predicted = predicted_curves(best, curve.observations)
    sec.figures.append(
        (
            "curves",
            plot_curves(
                predicted,
                curve.observations,
                fitted=frozenset(curve.fitted_runs),
                title=f"{curve.best_law} law: observed points, fitted and predicted curves",
            ),
            "Loss against step: dashed curves were fitted, solid curves are predictions of runs "
            "the law never saw; points are the measured losses.",
        )
    )
    table = curve.errors.copy()
    for col in ("mean_rel_error", "max_rel_error", "final_rel_error"):
        table[col.replace("rel_error", "error_pct")] = 100 * table.pop(col)
    sec.tables.append(("Relative error of each law on each run", table.to_dict("records")))
    if curve.choice is not None:
        rows = [
            {
                "schedule": c.name,
                "predicted_final_loss": c.final_loss,
                "gain_over_cosine_nats": curve.choice.gain_over(curve.choice.cosine, c),
            }
            for c in curve.choice.candidates
        ]
        sec.tables.append((f"Schedule choice by the {curve.best_law} law", rows))
        sched = {c.name: c.schedule for c in curve.choice.candidates}
        total = curve.choice.cosine.schedule.total
        first = int(curve.observations["step"].min())
        steps = np.unique(np.linspace(first, total, 200).astype(np.int64))
        sec.figures.append(
            (
                "schedule_choice",
                plot_curves(
                    {
                        c.name: (
                            steps,
                            predict_curve(best, c.schedule, steps),
                        )
                        for c in curve.choice.candidates
                    },
                    schedules=sched,
                    title="Candidate schedules and their predicted loss curves",
                ),
                "Learning rate (top) and predicted loss (bottom) of cosine, WSD-20%, the best WSD "
                "and the optimised monotone schedule.",
            )
        )


def _transfer_section(report: Report, study: Study) -> None:
    transfer = study.extras.get("transfer")
    if transfer is None:
        return
    result = transfer.fit
    sec = report.section("Loss-to-loss prediction")
    sec.paragraphs.append(
        f"Shifted power law L_y = K·(L_x − E_x)^κ + E_y from {result.x} to {result.y}, with E_x "
        f"and E_y from {result.irreducible} compute fits on each loss "
        "(Brandfonbrener et al. 2024)."
    )
    sec.figures.append(
        (
            "transfer",
            plot_transfer(result),
            "Pairs of losses of the same model on the two datasets, coloured by "
            "compute, with the fitted shifted power law.",
        )
    )
    if transfer.translation is not None:
        sec.figures.append(
            (
                "translation",
                plot_translation(transfer.translation, study.observations),
                "Forecasts of every run on the second dataset by the translated "
                "law and by a law fitted on the same few runs alone.",
            )
        )
    if transfer.scores:
        sec.tables.append(
            (
                "Translated law against direct fit (held-out runs)",
                [
                    {"law": "translated", "ARE_pct": 100 * transfer.scores["are_translated"]},
                    {"law": "direct", "ARE_pct": 100 * transfer.scores["are_direct"]},
                ],
            )
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
    sec.tables.append(("Best forecast with every smaller size seen", [backtest.headline]))
    ok = backtest.results[backtest.results["error"].isna()]
    for choice in sorted(ok["choice"].unique()):
        sec.figures.append(
            (
                f"backtest_{choice}",
                plot_are_heatmap(ok, choice=choice),
                f"ARE of the forecast ({choice}) by training sizes k and fraction p "
                "of their runs seen.",
            )
        )


def _fits_table(report: Report, study: Study) -> None:
    fits = [("compute", study.compute_fit)]
    curve = study.extras.get("curve")
    if curve is not None:
        fits += [(f"curve ({name})", f) for name, f in curve.fits.items()]
    transfer = study.extras.get("transfer")
    if transfer is not None:
        fits.append(("loss-to-loss", transfer.fit.fit))
    rows = []
    for part, fit in fits:
        if fit is None:
            continue
        cis = fit.ci() if fit.bootstrap_params is not None else {}
        for name, value in fit.params.items():
            row = {"part": part, "law": fit.law.name, "parameter": name, "value": value}
            if name in cis:
                row["ci95_low"], row["ci95_high"] = cis[name]
            rows.append(row)
    if rows:
        report.section("Every fitted law").tables.append(("Parameters and 95% CIs", rows))
