"""Draw a :class:`scalinglab.study.Study` as a report (HTML, Markdown, PNG)."""

from __future__ import annotations

from scalinglab.report.compute_plots import plot_allocation, plot_isoflop, plot_loss_vs_compute
from scalinglab.report.document import Report
from scalinglab.study import Study, final_rows


def build_report(study: Study, title: str = "Scaling study") -> Report:
    """Lay out every part of the study that was made, and why the others were not."""
    report = Report(title=title, summary=list(study.summary))
    _compute_section(report, study)
    _fits_table(report, study)
    if study.notes:
        sec = report.section("Parts not made")
        sec.tables.append(("Why", [{"part": k, "reason": v} for k, v in study.notes.items()]))
    return report


def _compute_section(report: Report, study: Study) -> None:
    if study.compute_fit is None:
        return
    sec = report.section("Compute scaling law")
    rows = final_rows(study.observations)
    if study.dataset is not None and "dataset" in rows.columns:
        rows = rows[rows["dataset"].astype(str) == study.dataset]
    fit = study.compute_fit
    n_boot = 0 if fit.bootstrap_params is None else len(fit.bootstrap_params)
    sec.paragraphs.append(
        f"{fit.law.name} law fitted to the final loss of {fit.n_points} runs on "
        f"'{study.dataset}' (Huber δ={fit.options.get('delta')} on log residuals, "
        f"{fit.n_starts} starts, {n_boot} bootstrap replicates resampling runs)."
    )
    sec.figures.append(
        (
            "loss_vs_compute",
            plot_loss_vs_compute(rows, study.frontier),
            "Final loss of every run against its compute, with the law's "
            "compute-optimal frontier and its bootstrap band.",
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
                "Compute-optimal parameters and tokens against compute, with "
                "bootstrap bands; stars are the isoFLOP minima.",
            )
        )
    if study.plan is not None:
        sec.tables.append(("Compute-optimal plans", study.plan.to_records()))


def _fits_table(report: Report, study: Study) -> None:
    fits = [("compute", study.compute_fit)]
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
