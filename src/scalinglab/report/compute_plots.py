"""Plots of compute scaling laws: loss against compute, isoFLOP curves, optimal allocation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scalinglab.fitting import Fit
from scalinglab.planning.isoflop import IsoFlopResult
from scalinglab.planning.optimal import Plan
from scalinglab.report.document import legend_outside


def plot_loss_vs_compute(
    runs: pd.DataFrame, frontier: Plan | None = None, fit: Fit | None = None
) -> Figure:
    """Final loss of every run against its training compute, coloured by model size.

    Parameters
    ----------
    runs
        One final row per run, one dataset (``params``, ``tokens``, ``loss``).
    frontier
        A plan over a range of budgets: its loss at the optimum is drawn as the fitted law's
        compute-optimal frontier, with its bootstrap band when the plan has one.
    fit
        A law of ``params`` and ``tokens``: each trained size's curve L(N, D) is drawn
        through its runs, to judge the fit against the data.
    """
    flops = 6.0 * runs["params"] * runs["tokens"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sc = ax.scatter(
        flops,
        runs["loss"],
        c=runs["params"],
        norm=LogNorm(),
        cmap="viridis",
        s=28,
        edgecolor="k",
        linewidth=0.3,
        label="runs (final loss)",
        zorder=3,
    )
    fig.colorbar(sc, ax=ax, label="parameters N")
    if fit is not None:
        for n in np.unique(runs["params"].to_numpy(float)):
            tokens = runs.loc[runs["params"] == n, "tokens"].to_numpy(float)
            d = np.geomspace(tokens.min() / 1.5, tokens.max() * 1.5, 30)
            ax.plot(
                6.0 * n * d,
                fit.predict({"params": np.full_like(d, n), "tokens": d}),
                color=sc.cmap(sc.norm(n)),
                lw=1,
                alpha=0.8,
            )
    if frontier is not None:
        ax.plot(
            frontier.flops,
            frontier.loss,
            color="C3",
            lw=2,
            label=f"{frontier.law} fit: compute-optimal loss",
        )
        if "loss" in frontier.ci:
            lo, hi = frontier.ci["loss"]
            ax.fill_between(
                frontier.flops,
                lo,
                hi,
                color="C3",
                alpha=0.2,
                label=f"{frontier.level:.0%} bootstrap band",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss against compute")
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax, below=True)
    return fig


def plot_isoflop(runs: pd.DataFrame, result: IsoFlopResult) -> Figure:
    """Loss against model size per budget (one final row per run), parabolas and minima."""
    flops = 6.0 * runs["params"] * runs["tokens"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("plasma")
    minima = result.minima.sort_values("flops")
    for i, rec in enumerate(minima.to_dict(orient="records")):
        budget, n_opt, loss_opt = (
            float(rec["flops"]),
            float(rec["params_opt"]),
            float(rec["loss_opt"]),
        )
        color = cmap(i / max(len(minima) - 1, 1) * 0.85)
        near = np.abs(np.log(flops / budget)) < 0.2
        ax.scatter(runs.loc[near, "params"], runs.loc[near, "loss"], color=color, s=22)
        grid = np.geomspace(float(rec["params_min"]), float(rec["params_max"]), 60)
        curvature = float(rec["curvature"])
        parabola = loss_opt + 0.5 * curvature * (np.log(grid) - np.log(n_opt)) ** 2
        ax.plot(grid, parabola, color=color, lw=1.5, label=f"C = {budget:.1e}")
        ax.plot([n_opt], [loss_opt], marker="*", color=color, ms=12, markeredgecolor="k")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss (nats/token)")
    ax.set_title("IsoFLOP curves (★ = fitted minimum)")
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax)
    return fig


def plot_allocation(plan: Plan, isoflop: IsoFlopResult | None = None) -> Figure:
    """Compute-optimal parameters N* and tokens D* against compute, with bootstrap bands."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, color, label in (
        ("params", "C0", "N* (parameters)"),
        ("tokens", "C1", "D* (tokens)"),
    ):
        ax.plot(plan.flops, getattr(plan, name), color=color, lw=2, label=f"{label}, law")
        if name in plan.ci:
            lo, hi = plan.ci[name]
            ax.fill_between(plan.flops, lo, hi, color=color, alpha=0.2)
    if isoflop is not None:
        m = isoflop.minima
        ax.scatter(
            m["flops"],
            m["params_opt"],
            color="C0",
            marker="*",
            s=90,
            edgecolor="k",
            label="N* from isoFLOP minima",
            zorder=3,
        )
        ax.scatter(
            m["flops"],
            m["tokens_opt"],
            color="C1",
            marker="*",
            s=90,
            edgecolor="k",
            label="D* from isoFLOP minima",
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("parameters or tokens")
    title = "Compute-optimal allocation"
    if plan.params_exponent is not None and plan.tokens_exponent is not None:
        title += f": N* ∝ C^{plan.params_exponent:.2f}, D* ∝ C^{plan.tokens_exponent:.2f}"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax)
    return fig
