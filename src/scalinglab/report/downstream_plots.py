"""Downstream forecasts in a report: the loss law, per-task error curves, and the verdicts.

:func:`add_downstream_section` appends one section to any :class:`~scalinglab.report.
document.Report` (the hook other reports call); :func:`write_downstream_report` writes a
report of its own (``scalinglab downstream fit --report DIR``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scalinglab.evaluation.downstream import FORMS, DownstreamFit
from scalinglab.evaluation.downstream_data import DownstreamTable
from scalinglab.laws.downstream import LOSS_FEATURE
from scalinglab.laws.overtraining import MULTIPLIER
from scalinglab.report.document import Report

#: colour of each verdict in titles and frames
STATUS_COLOURS = {
    "predictable": "#2e7d32",
    "near_chance": "#757575",
    "non_monotone": "#c62828",
    "too_noisy": "#ef6c00",
    "too_few_runs": "#6a1b9a",
    "unassessed": "#1d2330",
}
FORM_STYLES = {"exp": ("C0", "-"), "sigmoid": ("C3", "--")}
#: small multiples per figure
PANELS_PER_FIGURE = 16


def plot_loss_law(fit: DownstreamFit, table: DownstreamTable) -> Figure:
    """Validation loss against compute, coloured by tokens per parameter, with the loss law
    along each M of the runs (solid over the fitted compute, dotted beyond)."""
    if fit.loss_fit is None:
        raise ValueError("this fit has no loss law")
    runs = table.runs
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    norm = LogNorm(vmin=float(runs[MULTIPLIER].min()), vmax=float(runs[MULTIPLIER].max()))
    sc = ax.scatter(
        runs["flops"],
        runs["loss"],
        c=runs[MULTIPLIER],
        norm=norm,
        cmap="cool",
        s=26,
        edgecolor="k",
        linewidth=0.3,
        zorder=3,
        label="runs",
    )
    fig.colorbar(sc, ax=ax, label="tokens per parameter M")
    lo, hi = float(runs["flops"].min()), float(runs["flops"].max())
    for m in np.unique(runs[MULTIPLIER].to_numpy(float)):
        for span, style in (((lo, hi), "-"), ((hi, hi * 30), ":")):
            c = np.geomspace(*span, 40)
            ax.plot(
                c,
                fit.loss_fit.predict({"flops": c, MULTIPLIER: np.full_like(c, m)}),
                style,
                color=sc.cmap(norm(m)),
                lw=1,
            )
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(f"{table.loss_column} (nats/token)")
    ax.set_title(f"{fit.loss_fit.law.name} law, dotted: up to 30× the largest run")
    ax.grid(True, alpha=0.3)
    return fig


def plot_task_curves(fit: DownstreamFit, table: DownstreamTable, targets: Sequence[str]) -> Figure:
    """Error against validation loss per target: runs coloured by M, the loss → error forms,
    chance as a dotted line; the title carries the verdict in its colour."""
    cols = min(4, len(targets))
    rows = math.ceil(len(targets) / cols)
    fig = Figure(figsize=(3.3 * cols, 2.7 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    runs = table.runs
    loss = runs["loss"].to_numpy(float)
    span = float(np.ptp(loss)) or 1.0
    grid = np.linspace(loss.min() - 0.15 * span, loss.max() + 0.02 * span, 120)
    grid = grid[grid > 0]
    has_m = MULTIPLIER in runs.columns and runs[MULTIPLIER].notna().all()
    norm = (
        LogNorm(vmin=float(runs[MULTIPLIER].min()), vmax=float(runs[MULTIPLIER].max()))
        if has_m
        else None
    )
    for ax, target in zip(axes, targets, strict=False):
        error = table.error(target).to_numpy(float)
        ax.scatter(
            loss,
            error,
            c=runs[MULTIPLIER] if has_m else "C7",
            norm=norm,
            cmap="cool",
            s=14,
            edgecolor="k",
            linewidth=0.2,
            zorder=3,
        )
        for form, (colour, style) in FORM_STYLES.items():
            if form in fit.fits.get(target, {}):
                curve = fit.fits[target][form].predict({LOSS_FEATURE: grid})
                ax.plot(grid, curve, style, color=colour, lw=1.2, label=form)
        chance = fit.chance.get(target)
        if chance is not None:
            ax.axhline(chance, color="k", ls=":", lw=0.8, label="chance")
        # the data and chance set the scale; a form running off beyond them is cut
        shown = error[np.isfinite(error)]
        low = min(float(shown.min()), chance if chance is not None else np.inf)
        high = max(float(shown.max()), chance if chance is not None else -np.inf)
        pad = 0.15 * (high - low) or 0.02
        ax.set_ylim(max(low - pad, 0.0), min(high + pad, 1.02))
        verdict = fit.verdicts.get(target)
        status = verdict.status if verdict else "unassessed"
        colour = STATUS_COLOURS[status]
        ax.set_title(f"{target}\n{status.replace('_', ' ')}", fontsize=8, color=colour)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
        ax.invert_xaxis()  # lower loss (more compute) to the right
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(targets) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="best")
    fig.supxlabel(f"{table.loss_column} (nats/token, decreasing)", fontsize=9)
    fig.supylabel("top-1 error", fontsize=9)
    return fig


def verdict_rows(fit: DownstreamFit) -> list[dict[str, object]]:
    """One row per target: verdict, chosen form, backtest errors, why."""
    rows: list[dict[str, object]] = []
    for target in fit.targets:
        verdict = fit.verdicts.get(target)
        row: dict[str, object] = {
            "target": target,
            "status": verdict.status if verdict else "unassessed",
            "form": fit.selected_form(target),
        }
        if verdict is not None:
            for form in FORMS:
                if form in verdict.backtest_mae:
                    row[f"backtest MAE {form}"] = verdict.backtest_mae[form]
            row["no-fit baseline"] = (
                verdict.persistence_mae if verdict.persistence_mae is not None else ""
            )
            row["why"] = verdict.message
        rows.append(row)
    return rows


def add_downstream_section(report: Report, fit: DownstreamFit, table: DownstreamTable) -> None:
    """Append the downstream section: loss law, per-target curves, verdict table."""
    sec = report.section("Downstream task error")
    counts: dict[str, int] = {}
    for verdict in fit.verdicts.values():
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
    sec.paragraphs.append(
        f"{len(table.runs)} runs, {len(table.tasks)} tasks and {len(table.averages)} "
        f"average(s); errors forecast from '{table.loss_column}'. Forms side by side: "
        + ", ".join(f"{k} ({v})" for k, v in FORMS.items() if k in fit.options.get("forms", []))
        + ". A target is forecastable when fitting the smaller-compute runs forecasts the "
        "largest ones within the tolerance; "
        + (
            ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items())
            if counts
            else "verdicts were not assessed"
        )
        + "."
    )
    if fit.loss_fit is not None:
        sec.figure(
            "downstream_loss_law",
            f"Validation loss against compute with the {fit.loss_fit.law.name} law.",
            plot_loss_law(fit, table),
        )
    targets = [*table.averages, *[t for t in fit.targets if t not in table.averages]]
    targets = [t for t in targets if t in fit.fits]
    for page, start in enumerate(range(0, len(targets), PANELS_PER_FIGURE)):
        chunk = targets[start : start + PANELS_PER_FIGURE]
        sec.figure(
            f"downstream_tasks_{page + 1}",
            "Top-1 error against validation loss (points: runs, coloured by tokens per "
            "parameter); lines: the exp and sigmoid forms; dotted: chance. Titles: the "
            "verdict (green forecastable, grey near chance, orange too noisy, red "
            "non-monotone).",
            plot_task_curves(fit, table, chunk),
        )
    sec.table("Which targets are forecastable", verdict_rows(fit), sortable=True)


def write_downstream_report(
    fit: DownstreamFit, table: DownstreamTable, out_dir: str | Path
) -> dict[str, Path]:
    """Write a report of the downstream fit (HTML, Markdown, PNGs) under ``out_dir``."""
    report = Report(title=f"Downstream forecasts: {table.source}")
    predictable = [t for t, v in fit.verdicts.items() if v.predictable]
    if fit.verdicts:
        report.summary.append(
            f"{len(predictable)} of {len(fit.verdicts)} targets forecastable: "
            + (", ".join(predictable) or "none")
        )
    report.summary.extend(fit.warnings[:10])
    add_downstream_section(report, fit, table)
    return report.write(out_dir)
