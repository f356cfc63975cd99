"""A report as a list of sections, written as one self-contained HTML file, Markdown and PNGs.

``report.html`` is for exploring: every figure is interactive (Plotly: hover values, zoom,
log/linear axes, legend entries that hide a run or a size), every figure offers the values
behind it as CSV, tables sort, and a table of contents links every part. It is one file that
works offline: CSS, data and JavaScript are inline (Plotly's compressed, see
:mod:`scalinglab.report.plotly_bundle`) and the page makes no network request. Without the
``plotly`` package the page embeds the PNGs instead and says how to get the interactive one.
``report.md`` links the matplotlib PNGs written to ``figures/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from scalinglab._format import fmt, sort_key

if TYPE_CHECKING:
    from scalinglab.report.charts import Chart


@dataclass
class Table:
    """A captioned table; ``notes`` (fit diagnostics, caveats) are shown beside it."""

    caption: str
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    sortable: bool = False


@dataclass
class FigureItem:
    """A figure: the matplotlib one (PNG, Markdown) and, when given, the interactive one."""

    name: str
    caption: str
    figure: Figure
    chart: Chart | None = None


@dataclass
class Section:
    """One heading with paragraphs, tables and figures, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)

    def table(
        self,
        caption: str,
        rows: list[dict[str, Any]],
        *,
        notes: Sequence[str] = (),
        sortable: bool = False,
    ) -> Table:
        """Append and return a table."""
        table = Table(caption, rows, list(notes), sortable)
        self.tables.append(table)
        return table

    def figure(self, name: str, caption: str, figure: Figure, chart: Chart | None = None) -> None:
        """Append a figure (``name`` names its PNG and its CSV download)."""
        self.figures.append(FigureItem(name, caption, figure, chart))


@dataclass
class Report:
    """A report under construction: add sections, then :meth:`write`."""

    title: str
    summary: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Append and return a new section."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def write(self, out_dir: str | Path, *, interactive: bool | None = None) -> dict[str, Path]:
        """Write ``report.html``, ``report.md`` and ``figures/*.png`` under ``out_dir``.

        Parameters
        ----------
        out_dir
            Folder to write in (created if needed).
        interactive
            Draw the HTML's figures with Plotly (``True``), as PNGs (``False``), or with
            Plotly when the ``plotly`` package is installed (``None``).

        Returns
        -------
        dict
            Paths written: ``html``, ``markdown`` and one entry per figure name.
        """
        from scalinglab.report.plotly_bundle import plotly_available

        if interactive is None:
            interactive = plotly_available()
        out = Path(out_dir)
        figdir = out / "figures"
        figdir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        pngs: dict[str, bytes] = {}
        for sec in self.sections:
            for item in sec.figures:
                buf = io.BytesIO()
                item.figure.savefig(buf, format="png", dpi=110, bbox_inches="tight")
                plt.close(item.figure)
                pngs[item.name] = buf.getvalue()
                path = figdir / f"{_slug(item.name)}.png"
                path.write_bytes(pngs[item.name])
                written[item.name] = path
        html_path = out / "report.html"
        html_path.write_text(_html(self, pngs, interactive), encoding="utf-8")
        md_path = out / "report.md"
        md_path.write_text(self._markdown(), encoding="utf-8")
        written["html"], written["markdown"] = html_path, md_path
        return written

    def _markdown(self) -> str:
        lines = [f"# {_md_text(self.title)}", ""]
        lines.extend(f"- {_md_text(s)}" for s in self.summary)
        for sec in self.sections:
            lines += ["", f"## {_md_text(sec.title)}", ""]
            for p in sec.paragraphs:
                lines += [_md_text(p), ""]
            for table in sec.tables:
                lines += [f"**{_md_text(table.caption)}**", "", *_md_table(table.rows), ""]
                lines += [f"> {_md_text(n)}" for n in table.notes]
                if table.notes:
                    lines.append("")
            for item in sec.figures:
                alt = _md_text(item.caption).replace("[", "(").replace("]", ")")
                lines += [f"![{alt}](figures/{_slug(item.name)}.png)", ""]
        return "\n".join(lines).rstrip() + "\n"


def legend_outside(ax: Any, below: bool = False, **kwargs: Any) -> None:
    """A legend beside the axes (or below them, where a colour bar takes the right side), so
    that it never covers data; figures are saved with ``bbox_inches="tight"``, which keeps
    it."""
    if below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, **kwargs)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8, **kwargs)


def save_figure(path: str | Path, fig: Figure, dpi: int = 120) -> None:
    """Write a figure to ``path`` (format from its suffix) and release it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


def _anchor(prefix: str, name: str) -> str:
    return f"{prefix}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-') or 'part'}"


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    return cols


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&])")
#: what starts a list item or a quote at the beginning of a line
_MD_BLOCK_START = re.compile(r"^(\s*\d*)([-+.)])(?=\s|$)")


def _md_text(text: str) -> str:
    """User text in Markdown: characters Markdown or HTML would read are escaped (``<`` too,
    so no raw HTML), a list marker at its start too, and line breaks become spaces (one
    paragraph, one table cell)."""
    line = _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))
    return _MD_BLOCK_START.sub(r"\1\\\2", line)


def _md_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols = _columns(rows)
    out = ["| " + " | ".join(_md_text(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_md_text(fmt(r.get(c, ""))) for c in cols) + " |" for r in rows]
    return out


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
line-height:1.45;background:#fff}
.layout{display:grid;grid-template-columns:13rem minmax(0,1fr);max-width:90rem;margin:0 auto}
nav.toc{position:sticky;top:0;align-self:start;max-height:100vh;overflow-y:auto;
padding:1.2em 1em;font-size:.88em;border-right:1px solid #e3e6eb}
nav.toc ol{padding-left:1.1em;margin:.3em 0}nav.toc a{color:#20467a;text-decoration:none}
nav.toc a:hover{text-decoration:underline}nav.toc>ol>li{margin:.35em 0}
main{padding:0 1.5em 3em;min-width:0}
h1{border-bottom:2px solid #3465a4;padding-bottom:.2em}h2{margin-top:2em;color:#20467a}
.summary{background:#f5f8fc;border-left:4px solid #3465a4;padding:.6em 1em}
.block{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;margin:1em 0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #c8ced8;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#eef2f8}td.text,th.text{text-align:left}
td.long{white-space:normal;min-width:16em;overflow-wrap:anywhere}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
aside.notes{flex:1 1 18em;max-width:32em;background:#fff8e6;border-left:4px solid #e0a800;
padding:.5em .9em;font-size:.9em}aside.notes h4{margin:.2em 0 .4em}
aside.notes ul{margin:0;padding-left:1.1em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #e3e6eb}
figcaption{font-size:.9em;color:#555}
.chart{width:100%;height:480px;border:1px solid #e3e6eb}
.toolbar{display:flex;gap:.5em;flex-wrap:wrap;margin:.3em 0}
.toolbar button{font:inherit;font-size:.85em;padding:.2em .7em;border:1px solid #9aa6b8;
border-radius:4px;background:#f5f8fc;cursor:pointer}
.toolbar button:hover{background:#e3ebf7}
.notice{background:#fdecea;border-left:4px solid #c9302c;padding:.5em 1em}
body:not(.no-charts) .nochart-notice{display:none}
code{background:#f1f1f1;padding:0 .2em}
@media (max-width:60rem){.layout{display:block}nav.toc{position:static;max-height:none;
border-right:0;border-bottom:1px solid #e3e6eb}}
"""

#: sorting of the runs table, figure toolbars (log/linear, CSV download) and drawing
_PAGE_JS = """
(function () {
  'use strict';
  var charts = JSON.parse(document.getElementById('chart-data').textContent);
  var config = {responsive: true, displaylogo: false, scrollZoom: false,
    modeBarButtonsToRemove: ['select2d', 'lasso2d']};
  var base = {margin: {l: 70, r: 20, t: 30, b: 60}, hovermode: 'closest',
    legend: {x: 1.02, xanchor: 'left', y: 1, yanchor: 'top'},
    font: {family: 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif', size: 12}};

  function merge(a, b) {
    var out = {};
    [a, b].forEach(function (src) {
      Object.keys(src).forEach(function (k) {
        var v = src[k];
        out[k] = (v && typeof v === 'object' && !Array.isArray(v) && out[k] &&
          typeof out[k] === 'object') ? merge(out[k], v) : v;
      });
    });
    return out;
  }

  window.__drawCharts = function () {
    document.querySelectorAll('div.chart').forEach(function (div) {
      var c = charts[div.dataset.chart];
      Plotly.newPlot(div, c.spec.data, merge(base, c.spec.layout), config);
    });
    document.body.classList.add('charts-ready');
  };

  function toggleAxes(div, axes) {
    var current = div.layout[axes[0]].type === 'log' ? 'log' : 'linear';
    var next = current === 'log' ? 'linear' : 'log';
    var update = {};
    axes.forEach(function (a) { update[a + '.type'] = next; update[a + '.autorange'] = true; });
    Plotly.relayout(div, update);
    return next;
  }

  document.querySelectorAll('.toolbar button').forEach(function (button) {
    button.addEventListener('click', function () {
      var name = button.dataset.chart, c = charts[name];
      var div = document.querySelector('div.chart[data-chart="' + name + '"]');
      if (button.dataset.action === 'csv') {
        var url = URL.createObjectURL(new Blob([c.csv], {type: 'text/csv'}));
        var a = document.createElement('a');
        a.href = url; a.download = name + '.csv';
        document.body.appendChild(a); a.click(); a.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
        return;
      }
      var axis = button.dataset.action === 'log-x' ? 'x' : 'y';
      var next = toggleAxes(div, c[axis + '_axes']);
      button.textContent = axis + ': ' + next;
    });
  });

  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = r1.cells[col].dataset.sort, b = r2.cells[col].dataset.sort;
          var x = parseFloat(a), y = parseFloat(b), cmp;
          if (!isNaN(x) && !isNaN(y)) { cmp = x - y; }
          else if (!isNaN(x)) { cmp = -1; } else if (!isNaN(y)) { cmp = 1; }
          else { cmp = String(a).localeCompare(String(b)); }
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') { sort(); } });
    });
  });
})();
"""


def _json_script(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``<`` can close the element."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


#: text cells longer than this wrap (schedule specs); shorter ones (run ids) never do
_LONG_TEXT = 48


def _cell(value: Any) -> str:
    key = sort_key(value)
    text = fmt(value)
    css = ""
    if isinstance(key, str):
        css = ' class="text long"' if len(text) > _LONG_TEXT else ' class="text"'

    return f'<td{css} data-sort="{html.escape(str(key))}">{html.escape(text)}</td>'


def _html_table(table: Table, anchor: str) -> str:
    if not table.rows:
        body = f"<p><em>{html.escape(table.caption)}: no rows</em></p>"
    else:
        cols = _columns(table.rows)
        first = table.rows[0]
        head = "".join(
            f'<th scope="col"{_text_class(first.get(c))}>{html.escape(c)}</th>' for c in cols
        )
        rows = "".join(
            "<tr>" + "".join(_cell(r.get(c, "")) for c in cols) + "</tr>" for r in table.rows
        )
        css = ' class="sortable"' if table.sortable else ""
        body = (
            f'<div class="scroll"><table{css}><caption>{html.escape(table.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        )
    notes = ""
    if table.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
        notes = f'<aside class="notes"><h4>Diagnostics</h4><ul>{items}</ul></aside>'
    return f'<div class="block" id="{anchor}">{body}{notes}</div>'


def _text_class(value: Any) -> str:
    return ' class="text"' if isinstance(sort_key(value), str) else ""


def _figure(item: FigureItem, anchor: str, png: bytes, interactive: bool) -> str:
    caption = f"<figcaption>{html.escape(item.caption)}</figcaption>"
    image = (
        f'<img alt="{html.escape(item.caption)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
    )
    if not interactive or item.chart is None:
        return f'<figure id="{anchor}">{image}{caption}</figure>'
    name = html.escape(item.name)
    chart = item.chart
    tools = []
    if chart.x_axes:
        label = "log" if chart.x_log else "linear"
        tools.append(
            f'<button type="button" data-action="log-x" data-chart="{name}" '
            f'title="switch the x axis between log and linear">x: {label}</button>'
        )
    if chart.y_axes:
        label = "log" if chart.y_log else "linear"
        tools.append(
            f'<button type="button" data-action="log-y" data-chart="{name}" '
            f'title="switch the y axis between log and linear">y: {label}</button>'
        )
    tools.append(
        f'<button type="button" data-action="csv" data-chart="{name}" '
        f'title="the values drawn in this figure">Download CSV</button>'
    )
    return (
        f'<figure id="{anchor}"><div class="toolbar">{"".join(tools)}</div>'
        f'<div class="chart" data-chart="{name}" role="img" '
        f'aria-label="{html.escape(item.caption)}"></div>{caption}</figure>'
    )


def _html(report: Report, pngs: Mapping[str, bytes], interactive: bool) -> str:
    toc: list[str] = []
    body: list[str] = [f"<h1>{html.escape(report.title)}</h1>"]
    if not interactive:
        from scalinglab.report.plotly_bundle import INSTALL_HINT

        body.append(
            '<p class="notice">Static figures: for interactive ones (hover, zoom, log axes, '
            f"CSV downloads) install Plotly: <code>{html.escape(INSTALL_HINT)}</code>.</p>"
        )
    else:
        body.append(
            '<p class="notice nochart-notice">This browser cannot unpack the interactive '
            "figures (it lacks DecompressionStream); open report.md for the static ones.</p>"
        )
    if report.summary:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in report.summary)
        body.append(f'<section id="summary"><h2>Summary</h2><ul class="summary">{items}</ul>')
        body.append("</section>")
        toc.append('<li><a href="#summary">Summary</a></li>')
    charts: dict[str, Any] = {}
    for sec in report.sections:
        sec_id = _anchor("s", sec.title)
        sub: list[str] = []
        body.append(f'<section id="{sec_id}"><h2>{html.escape(sec.title)}</h2>')
        body.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        for table in sec.tables:
            anchor = _anchor(f"{sec_id}-t", table.caption)
            body.append(_html_table(table, anchor))
            sub.append(f'<li><a href="#{anchor}">{html.escape(table.caption)}</a></li>')
        for item in sec.figures:
            anchor = _anchor("f", item.name)
            body.append(_figure(item, anchor, pngs[item.name], interactive))
            if interactive and item.chart is not None:
                charts[item.name] = {
                    "spec": item.chart.spec(),
                    "csv": item.chart.csv(),
                    "x_axes": list(item.chart.x_axes),
                    "y_axes": list(item.chart.y_axes),
                }
            label = item.caption.split(":")[0].split(".")[0]
            sub.append(f'<li><a href="#{anchor}">{html.escape(label)}</a></li>')
        body.append("</section>")
        nested = f"<ol>{''.join(sub)}</ol>" if sub else ""
        toc.append(f'<li><a href="#{sec_id}">{html.escape(sec.title)}</a>{nested}</li>')
    scripts = ""
    if interactive and charts:
        from scalinglab.report.plotly_bundle import LOADER_JS, plotly_js_gzip_base64

        version, bundle = plotly_js_gzip_base64()
        scripts = (
            f'<script type="application/json" id="chart-data">{_json_script(charts)}</script>'
            f"<!-- plotly.js {html.escape(version)}, MIT licence, gzip + base64 -->"
            f'<script type="application/octet-stream" id="plotly-gzip">{bundle}</script>'
            f"<script>{_PAGE_JS}</script><script>{LOADER_JS}</script>"
        )
    elif report.sections:
        # sorting works without the charts too
        scripts = (
            '<script type="application/json" id="chart-data">{}</script>'
            f"<script>{_PAGE_JS}</script>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
            '<div class="layout"><nav class="toc" aria-label="Contents"><strong>Contents</strong>'
            f"<ol>{''.join(toc)}</ol></nav><main>",
            *body,
            "</main></div>",
            scripts,
            "</body></html>",
        ]
    )
