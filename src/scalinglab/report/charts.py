"""Interactive figures of the HTML report, as Plotly figure specifications (plain JSON).

A :class:`Chart` is what the browser draws: Plotly traces and layout, plus the table of every
plotted value, which the report offers as a CSV download. The builders here mirror the
matplotlib figures of ``report.md`` (``compute_plots``, ``curve_plots``, ...): same data, drawn
for exploring: hover values, zoom, log/linear axes, a legend entry per run or model size that
hides it when clicked. The specs are plain dictionaries, so building a report needs no Plotly;
only writing its HTML takes Plotly's JavaScript (the ``report`` extra).

User text (run ids, dataset names) reaches Plotly's labels HTML-escaped: Plotly reads a small
subset of HTML in names and hover text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps

from scalinglab._format import short_labels, si
from scalinglab.evaluation.transfer import TransferFit, Translation, select_losses
from scalinglab.fitting import Fit
from scalinglab.planning.isoflop import IsoFlopResult
from scalinglab.planning.optimal import Plan
from scalinglab.schedules import Schedule

#: what a trace's values may be given as
Values = Sequence[Any] | np.ndarray | pd.Series

#: hover formats by kind of value (d3-format)
NUMBER = ":.4~g"
LOSS = ":.4f"
#: significant digits of the numbers embedded in the page (plenty for a figure; keeps it small)
DIGITS = 7


def _round(values: Any) -> list[Any]:
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":
        out: list[Any] = []
        for v in arr.astype(float).tolist():
            out.append(None if not math.isfinite(v) else float(f"{v:.{DIGITS}g}"))
        return out
    if arr.dtype.kind in "iub":
        return [int(v) for v in arr.tolist()]
    return [html.escape(str(v)) for v in arr.tolist()]


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def palette(values: Values, cmap: str = "viridis", log: bool = True) -> list[str]:
    """One colour per value on a colour map (log scale by default), as hex strings."""
    v = np.asarray(values, dtype=float)
    t = np.log(v) if log else v
    span = float(np.ptp(t)) if t.size else 0.0
    pos = (t - t.min()) / span * 0.9 if span > 0 else np.zeros_like(t)
    return [_hex(colormaps[cmap](float(p))) for p in pos]


def qualitative(i: int) -> str:
    """The i-th colour of matplotlib's default cycle (the PNGs and the page agree)."""
    return _hex(colormaps["tab10"](i % 10))


def size_label(params: float) -> str:
    """``N = 36k`` style label of a model size."""
    return f"N = {si(params)}"


@dataclass
class Chart:
    """One interactive figure: Plotly traces and layout, and the values behind them.

    Parameters
    ----------
    x_title, y_title
        Axis titles (with units).
    x_log, y_log
        Whether the axes start logarithmic; the page lets the reader switch.
    """

    x_title: str
    y_title: str
    x_log: bool = False
    y_log: bool = False
    title: str = ""
    traces: list[dict[str, Any]] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=dict)
    tables: list[pd.DataFrame] = field(default_factory=list)
    #: axes the page's log/linear switches act on
    x_axes: tuple[str, ...] = ("xaxis",)
    y_axes: tuple[str, ...] = ("yaxis",)

    def add(
        self,
        name: str,
        x: Values,
        y: Values,
        *,
        x_name: str,
        y_name: str,
        columns: Mapping[str, Values] | None = None,
        mode: str = "markers",
        group: str | None = None,
        legend: bool = True,
        color: str | None = None,
        dash: str | None = None,
        symbol: str | None = None,
        size: float | None = None,
        width: float | None = None,
        yaxis: str | None = None,
        extra: Mapping[str, Any] | None = None,
        hover: bool = True,
        series: str | None = None,
    ) -> dict[str, Any]:
        """Add a trace; its values (and ``columns``) become rows of the CSV and its hover.

        ``series`` names the rows in the CSV (default ``name``); ``x_name``/``y_name`` are the
        CSV's column names and the hover's labels.
        """
        columns = dict(columns or {})
        n = len(np.asarray(x))
        trace: dict[str, Any] = {
            "type": "scatter",
            "mode": mode,
            "name": html.escape(name),
            "x": _round(x),
            "y": _round(y),
            "showlegend": legend,
        }
        if group is not None:
            trace["legendgroup"] = group
        marker: dict[str, Any] = {}
        line: dict[str, Any] = {}
        if color is not None:
            marker["color"] = color
            line["color"] = color
        if symbol is not None:
            marker["symbol"] = symbol
        if size is not None:
            marker["size"] = size
        if dash is not None:
            line["dash"] = dash
        if width is not None:
            line["width"] = width
        if "markers" in mode and marker:
            trace["marker"] = marker
        if "lines" in mode and line:
            trace["line"] = line
        if yaxis is not None:
            trace["yaxis"] = yaxis
        if hover:
            lines = [f"<b>{html.escape(name)}</b>"]
            if columns:
                trace["customdata"] = [
                    list(row) for row in zip(*(_round(v) for v in columns.values()), strict=True)
                ]
                for i, (label, values) in enumerate(columns.items()):
                    numeric = np.asarray(values).dtype.kind in "fiu"
                    spec = NUMBER if numeric else ""
                    lines.append(f"{html.escape(label)}: %{{customdata[{i}]{spec}}}")
            lines.append(f"{html.escape(x_name)}: %{{x{NUMBER}}}")
            lines.append(f"{html.escape(y_name)}: %{{y{LOSS if 'loss' in y_name else NUMBER}}}")
            trace["hovertemplate"] = "<br>".join(lines) + "<extra></extra>"
        else:
            trace["hoverinfo"] = "skip"
        if extra:
            trace.update(extra)
        self.traces.append(trace)
        table = pd.DataFrame({"series": [series or name] * n})
        for label, values in columns.items():
            table[label] = np.asarray(values)
        table[x_name] = np.asarray(x)
        table[y_name] = np.asarray(y)
        self.tables.append(table)
        return trace

    def band(
        self,
        name: str,
        x: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        *,
        x_name: str,
        y_name: str,
        color: str,
        group: str | None = None,
    ) -> None:
        """A shaded interval between ``lo`` and ``hi`` (one legend entry, both in the CSV)."""
        for bound, values in (("lower", lo), ("upper", hi)):
            self.add(
                name,
                x,
                values,
                x_name=x_name,
                y_name=y_name,
                mode="lines",
                group=group or name,
                legend=bound == "upper",
                color=color,
                width=0,
                hover=False,
                series=f"{name} ({bound})",
                extra={"fill": "tonexty", "fillcolor": _fade(color)} if bound == "upper" else None,
            )

    def csv(self) -> str:
        """Every plotted value, one row per point, with the series it belongs to."""
        if not self.tables:
            return ""
        return pd.concat(self.tables, ignore_index=True).to_csv(index=False)

    def spec(self) -> dict[str, Any]:
        """The Plotly figure: ``{"data": traces, "layout": layout}``."""
        layout: dict[str, Any] = {
            "xaxis": {"title": {"text": html.escape(self.x_title)}, "type": _type(self.x_log)},
            "yaxis": {"title": {"text": html.escape(self.y_title)}, "type": _type(self.y_log)},
        }
        if self.title:
            layout["title"] = {"text": html.escape(self.title)}
        for key, value in self.layout.items():
            if isinstance(value, dict) and isinstance(layout.get(key), dict):
                layout[key] = {**layout[key], **value}
            else:
                layout[key] = value
        return {"data": self.traces, "layout": layout}


def _type(log: bool) -> str:
    return "log" if log else "linear"


def _fade(color: str, alpha: float = 0.2) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def loss_vs_compute_chart(
    runs: pd.DataFrame, frontier: Plan | None = None, fit: Fit | None = None
) -> Chart:
    """Final loss against compute, one legend entry per model size (runs and law)."""
    chart = Chart("training compute C = 6·N·D (FLOPs)", "loss (nats/token)", True, True)
    sizes = np.unique(runs["params"].to_numpy(float))
    for n, color in zip(sizes, palette(sizes), strict=True):
        part = runs[runs["params"] == n].sort_values("tokens")
        tokens = part["tokens"].to_numpy(float)
        label = size_label(n)
        if fit is not None:
            d = np.geomspace(tokens.min() / 1.5, tokens.max() * 1.5, 30)
            chart.add(
                f"{label}: law",
                6.0 * n * d,
                fit.predict({"params": np.full_like(d, n), "tokens": d}),
                x_name="flops",
                y_name="loss",
                columns={"params": np.full_like(d, n), "tokens": d},
                mode="lines",
                group=label,
                legend=False,
                color=color,
                width=1.5,
                hover=False,
            )
        loss = part["loss"].to_numpy(float)
        columns: dict[str, Values] = {
            "run": part["run_id"].astype(str).to_numpy(),
            "params": part["params"],
            "tokens": tokens,
        }
        if fit is not None:
            law = fit.predict({"params": np.full_like(tokens, n), "tokens": tokens})
            columns["law"] = law
            columns["law error (%)"] = 100 * (law - loss) / loss
        chart.add(
            label,
            6.0 * n * tokens,
            loss,
            x_name="flops",
            y_name="loss",
            columns=columns,
            group=label,
            color=color,
            size=9,
            series=f"{label}: runs",
        )
    if frontier is not None:
        red = qualitative(3)
        name = f"{frontier.law} fit: compute-optimal loss"
        if "loss" in frontier.ci:
            lo, hi = frontier.ci["loss"]
            chart.band(
                f"{frontier.level:.0%} bootstrap band",
                frontier.flops,
                lo,
                hi,
                x_name="flops",
                y_name="loss",
                color=red,
            )
        chart.add(
            name,
            frontier.flops,
            frontier.loss,
            x_name="flops",
            y_name="loss",
            columns={"params": frontier.params, "tokens": frontier.tokens},
            mode="lines",
            color=red,
            width=3,
            series="frontier",
        )
    return chart


def isoflop_chart(runs: pd.DataFrame, result: IsoFlopResult) -> Chart:
    """Loss against model size per budget, the fitted parabola and its minimum."""
    chart = Chart("parameters N", "final loss (nats/token)", True, False)
    flops = 6.0 * runs["params"] * runs["tokens"]
    minima = result.minima.sort_values("flops")
    colors = palette(minima["flops"].to_numpy(float), "plasma")
    for rec, color in zip(minima.to_dict(orient="records"), colors, strict=True):
        budget, n_opt, loss_opt = float(rec["flops"]), float(rec["params_opt"]), rec["loss_opt"]
        label = f"C = {budget:.2e}"
        near = np.abs(np.log(flops / budget)) < 0.2
        part = runs[near.to_numpy()]
        chart.add(
            label,
            part["params"],
            part["loss"],
            x_name="params",
            y_name="loss",
            columns={"run": part["run_id"].astype(str).to_numpy(), "tokens": part["tokens"]},
            group=label,
            color=color,
            size=8,
            series=f"{label}: runs",
        )
        grid = np.geomspace(float(rec["params_min"]), float(rec["params_max"]), 60)
        parabola = loss_opt + 0.5 * float(rec["curvature"]) * (np.log(grid) - np.log(n_opt)) ** 2
        chart.add(
            f"{label}: parabola",
            grid,
            parabola,
            x_name="params",
            y_name="loss",
            mode="lines",
            group=label,
            legend=False,
            color=color,
            hover=False,
        )
        chart.add(
            f"{label}: minimum",
            [n_opt],
            [loss_opt],
            x_name="params",
            y_name="loss",
            group=label,
            legend=False,
            color=color,
            symbol="star",
            size=16,
        )
    return chart


def allocation_chart(plan: Plan, isoflop: IsoFlopResult | None = None) -> Chart:
    """Compute-optimal N* and D* against compute, with bootstrap bands and isoFLOP minima."""
    chart = Chart("training compute C (FLOPs)", "parameters or tokens", True, True)
    for i, (name, label) in enumerate((("params", "N* (parameters)"), ("tokens", "D* (tokens)"))):
        color = qualitative(i)
        if name in plan.ci:
            lo, hi = plan.ci[name]
            chart.band(
                f"{label}: {plan.level:.0%} band",
                plan.flops,
                lo,
                hi,
                x_name="flops",
                y_name=name,
                color=color,
                group=label,
            )
        chart.add(
            f"{label}, law",
            plan.flops,
            getattr(plan, name),
            x_name="flops",
            y_name=name,
            mode="lines",
            group=label,
            color=color,
            width=3,
        )
        if isoflop is not None:
            m = isoflop.minima
            chart.add(
                f"{label} from isoFLOP minima",
                m["flops"],
                m[f"{name}_opt"],
                x_name="flops",
                y_name=name,
                color=color,
                symbol="star",
                size=14,
            )
    return chart


def curves_chart(
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    observed: pd.DataFrame | None = None,
    *,
    fitted: frozenset[str] = frozenset(),
) -> Chart:
    """Observed points and a curve law's curves, one legend entry per run."""
    chart = Chart("step", "loss (nats/token)", False, True)
    labels = short_labels(predicted)
    for i, (run, (steps, loss)) in enumerate(predicted.items()):
        color = qualitative(i)
        role = "fitted" if run in fitted else "predicted"
        label = f"{labels[run]} ({role})"
        if observed is not None:
            rows = observed[observed["run_id"].astype(str) == run].sort_values("step")
            if len(rows):
                measured = rows["loss"].to_numpy(float)
                law = np.interp(rows["step"].to_numpy(float), steps, loss)
                chart.add(
                    label,
                    rows["step"],
                    measured,
                    x_name="step",
                    y_name="loss",
                    columns={
                        "run": rows["run_id"].astype(str).to_numpy(),
                        "law": law,
                        "law error (%)": 100 * (law - measured) / measured,
                    },
                    group=run,
                    color=color,
                    size=5,
                    series=f"{run}: observed",
                )
        chart.add(
            f"{label}: law",
            steps,
            loss,
            x_name="step",
            y_name="loss",
            columns={"run": np.full(len(steps), run)},
            mode="lines",
            group=run,
            legend=observed is None,
            color=color,
            dash="dash" if role == "fitted" else None,
            series=f"{run}: {role}",
            hover=observed is None,
        )
    return chart


def schedule_choice_chart(
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]], schedules: Mapping[str, Schedule]
) -> Chart:
    """Candidate schedules (top) and their predicted loss curves (bottom), shared steps."""
    chart = Chart("step", "predicted loss (nats/token)", False, True)
    chart.y_axes = ("yaxis",)
    chart.layout = {
        "yaxis": {"domain": [0.0, 0.6]},
        "yaxis2": {"domain": [0.66, 1.0], "title": {"text": "learning rate"}, "anchor": "x"},
    }
    for i, (name, (steps, loss)) in enumerate(predicted.items()):
        color = qualitative(i)
        lr = schedules[name].array()
        chart.add(
            name,
            np.arange(lr.size),
            lr,
            x_name="step",
            y_name="learning rate",
            mode="lines",
            group=name,
            color=color,
            yaxis="y2",
            series=f"{name}: learning rate",
        )
        chart.add(
            f"{name}: loss",
            steps,
            loss,
            x_name="step",
            y_name="loss",
            mode="lines",
            group=name,
            legend=False,
            color=color,
            series=f"{name}: predicted loss",
        )
    return chart


def transfer_chart(result: TransferFit) -> Chart:
    """Pairs of losses on the two datasets, coloured by compute, and the fitted law."""
    chart = Chart(
        f"loss on {result.x} (nats/token)", f"loss on {result.y} (nats/token)", False, False
    )
    pairs = result.pairs
    p = result.params
    trace = chart.add(
        f"fitted pairs ({len(pairs)})",
        pairs["loss_x"],
        pairs["loss_y"],
        x_name="loss_x",
        y_name="loss_y",
        columns={"flops": pairs["flops"]},
        size=9,
    )
    trace["marker"] = {
        "color": _round(np.log10(pairs["flops"].to_numpy(float))),
        "colorscale": "Viridis",
        "size": 9,
        "colorbar": {"title": {"text": "log10 FLOPs"}, "x": 1.0, "len": 0.8},
    }
    x = pairs["loss_x"].to_numpy(float)
    lo = max(float(x.min()) - 0.05 * float(np.ptp(x)), p["E_x"] + 1e-3)
    grid = np.linspace(lo, float(x.max()) + 0.05 * float(np.ptp(x)), 200)
    chart.add(
        f"K={p['K']:.3g}, κ={p['kappa']:.3g}, E_x={p['E_x']:.3g}, E_y={p['E_y']:.3g}",
        grid,
        result.predict(grid),
        x_name="loss_x",
        y_name="loss_y",
        mode="lines",
        color=qualitative(3),
        width=2.5,
        series="law",
        hover=False,
    )
    # the colour bar takes the right margin: the legend goes below the plot
    chart.layout = {"legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}}
    return chart


def translation_chart(translation: Translation, observations: pd.DataFrame) -> Chart:
    """Observed loss of every ``y`` run against the translated and the direct law's forecast."""
    rows = select_losses(observations, translation.y)
    n, d = rows["params"].to_numpy(float), rows["tokens"].to_numpy(float)
    observed = rows["loss"].to_numpy(float)
    used = rows["run_id"].astype(str).isin(translation.y_runs).to_numpy()
    run_ids = rows["run_id"].astype(str).to_numpy()
    chart = Chart(
        f"observed loss on {translation.y.dataset} (nats/token)",
        "forecast loss (nats/token)",
        False,
        False,
    )
    for i, (label, predicted, symbol) in enumerate(
        (
            ("translated from x's law", translation.predict(n, d), "circle"),
            ("fitted on the few y runs alone", translation.predict_direct(n, d), "x"),
        )
    ):
        chart.add(
            f"{label} (held-out runs)",
            observed[~used],
            predicted[~used],
            x_name="observed loss",
            y_name="forecast loss",
            columns={"run": run_ids[~used], "params": n[~used], "tokens": d[~used]},
            color=qualitative(i),
            symbol=symbol,
            size=9,
        )
    chart.add(
        "runs used to translate",
        observed[used],
        translation.predict(n[used], d[used]),
        x_name="observed loss",
        y_name="forecast loss",
        columns={"run": run_ids[used], "params": n[used], "tokens": d[used]},
        color=qualitative(3),
        symbol="star",
        size=14,
    )
    lo, hi = float(observed.min()), float(observed.max())
    pad = 0.05 * (hi - lo)
    chart.add(
        "perfect forecast",
        [lo - pad, hi + pad],
        [lo - pad, hi + pad],
        x_name="observed loss",
        y_name="forecast loss",
        mode="lines",
        color="#000000",
        dash="dot",
        width=1,
        hover=False,
    )
    return chart


def heatmap_chart(grid: pd.DataFrame, *, z_title: str = "ARE (%)") -> Chart:
    """A heatmap of percentages: rows ``grid.index`` (k), columns ``grid.columns`` (p)."""
    chart = Chart("fraction p of each training run seen", "training model sizes k")
    values = 100 * grid.to_numpy(dtype=float)
    x = [f"{p:g}" for p in grid.columns]
    y = [str(k) for k in grid.index]
    chart.traces.append(
        {
            "type": "heatmap",
            "x": x,
            "y": y,
            "z": [_round(row) for row in values],
            "text": [["" if not math.isfinite(v) else f"{v:.1f}%" for v in row] for row in values],
            "texttemplate": "%{text}",
            "colorscale": "Viridis",
            "reversescale": True,
            "colorbar": {"title": {"text": z_title}},
            "hovertemplate": "k = %{y}<br>p = %{x}<br>ARE = %{z:.3g}%<extra></extra>",
        }
    )
    long = grid.rename_axis(index="k", columns="fraction").reset_index()
    long = long.melt(id_vars="k", var_name="fraction", value_name="are_pct")
    long["are_pct"] = 100 * long["are_pct"]
    chart.tables.append(long)
    chart.layout = {"xaxis": {"type": "category"}, "yaxis": {"type": "category"}}
    chart.x_axes = chart.y_axes = ()
    return chart
