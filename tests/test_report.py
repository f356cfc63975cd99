"""The report: files written, and the interactive HTML used in a real headless browser."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from scalinglab._format import Interval, Percent, fmt, short_labels
from scalinglab.data import load_observations
from scalinglab.examples import isoflop_sweep, schedule_runs
from scalinglab.report.document import Report
from scalinglab.report.study_report import build_report
from scalinglab.study import Study, analyse
from tests.browser import Browser, chromium

#: user text that rich, HTML, Markdown and Plotly would all read as markup if not escaped
NASTY = "<b>x</b>:train:[red]y[/red]&amp;"


@pytest.fixture(scope="module")
def study() -> Study:
    runs = isoflop_sweep(held_out=True)
    runs.loc[runs["run_id"] == runs["run_id"].iloc[0], "run_id"] = NASTY
    curves = schedule_runs(steps=1500, every=100).assign(family="schedules")
    return analyse(load_observations(pd.concat([runs, curves], ignore_index=True)), bootstrap=20)


@pytest.fixture(scope="module")
def report(study: Study) -> Report:
    return build_report(study, title="Example study " + NASTY)


@pytest.fixture(scope="module")
def written(report: Report, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return report.write(tmp_path_factory.mktemp("report"), interactive=True)


def _charts(html: str) -> list[str]:
    return re.findall(r'<div class="chart" data-chart="([^"]+)"', html)


def test_every_part_is_drawn_and_written(study: Study, written: dict[str, Path]) -> None:
    assert set(study.notes) <= {"isoflop"}, study.notes
    html = written["html"].read_text()
    markdown = written["markdown"].read_text()
    names = [k for k in written if k not in ("html", "markdown")]
    for name in ("loss_vs_compute", "isoflop", "allocation", "curves", "schedule_choice"):
        assert name in names
    for name in names:
        assert written[name].stat().st_size > 10_000
        assert f"figures/{written[name].name}" in markdown
    # every figure is interactive, with its log switches and its CSV
    assert sorted(_charts(html)) == sorted(names)
    assert html.count('data-action="csv"') == len(names)
    assert 'id="plotly-gzip"' in html and html.count("<script>") == 2
    assert "http://" not in html and "https://" not in html
    assert written["html"].stat().st_size < 5_000_000
    # the table of contents links every section, table and figure
    for anchor in re.findall(r'id="((?:s|f)-[^"]+)"', html):
        assert f'href="#{anchor}"' in html
    assert "Compute-optimal plans" in markdown and "Every fitted law" in markdown


def test_intervals_errors_and_diagnostics_read_one_way(written: dict[str, Path]) -> None:
    markdown = written["markdown"].read_text()
    plans = markdown.split("**Compute-optimal plans")[1].split("\n\n")[1]
    header = plans.splitlines()[0]
    assert header.count("|") == 6  # budget and four quantities, each `value [lo, hi]`
    # one column per quantity, `value [lo, hi]` (Markdown escapes the brackets)
    assert re.search(r"\d \\?\[[\d.]+[kMBT]?, [\d.]+[kMBT]?\\?\]", plans)
    errors = markdown.split("**Relative error of each law on each run**")[1].split("**")[0]
    assert "%" in errors and "rel_error" not in errors


def test_diagnostics_sit_beside_the_numbers_they_qualify(tmp_path: Path) -> None:
    report = Report("r")
    report.section("Compute").table(
        "Fitted parameters",
        [{"parameter": "E", "value [95% CI]": Interval(1.8, 1.7, 1.9)}],
        notes=["parameter 'beta' is at its lower bound"],
    )
    written = report.write(tmp_path, interactive=False)
    html = written["html"].read_text()
    block = html.split('<div class="block"')[1].split("</div></div>")[0]
    assert "Fitted parameters" in block and "<aside" in block and "lower bound" in block
    assert "1.8 [1.7, 1.9]" in block
    assert "> parameter 'beta' is at its lower bound" in written["markdown"].read_text()


def test_user_text_is_escaped_everywhere(written: dict[str, Path]) -> None:
    html = written["html"].read_text()
    assert NASTY not in html and "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;:train:[red]y[/red]&amp;amp;" in html
    markdown = written["markdown"].read_text()
    assert "\\<b\\>x\\</b\\>" in markdown


def test_static_page_without_plotly(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    report = Report("static")
    sec = report.section("Part")
    sec.table("runs", [{"run": "a", "loss": 2.0}, {"run": "b", "loss": 1.0}], sortable=True)
    figure = Figure()
    figure.subplots().plot([1, 2], [3, 4])
    sec.figure("line", "A line.", figure)
    written = report.write(tmp_path, interactive=False)
    html = written["html"].read_text()
    assert html.count("data:image/png;base64,") == len(written) - 2 == 1
    assert "pip install" in html and "plotly-gzip" not in html
    assert 'class="sortable"' in html  # sorting needs no Plotly


def test_formats() -> None:
    assert fmt(Interval(5.98e4, 3.39e4, 1.12e5)) == "59.8k [33.9k, 112k]"
    assert fmt(Interval(1.498, 1.47, 1.53)) == "1.498 [1.47, 1.53]"
    assert fmt(Interval(2.0, float("nan"), float("nan"))) == "2"
    assert fmt(Percent(0.011734)) == "1.17%" and fmt(Percent(float("nan"))) == "–"
    assert short_labels(["cpu-tiny-l-D512K-wsd-adamw-s0", "cpu-tiny-l-D512K-cosine-adamw-s0"]) == {
        "cpu-tiny-l-D512K-wsd-adamw-s0": "wsd",
        "cpu-tiny-l-D512K-cosine-adamw-s0": "cosine",
    }
    assert short_labels(["run-1", "run-1-b"]) == {"run-1": "1", "run-1-b": "1-b"}
    assert short_labels(["a"]) == {"a": "a"}


def test_chart_specs_are_valid_plotly(report: Report) -> None:
    plotly = pytest.importorskip("plotly.graph_objects")
    for sec in report.sections:
        for item in sec.figures:
            assert item.chart is not None
            plotly.Figure(item.chart.spec())  # raises on any unknown property
            rows = list(csv.DictReader(io.StringIO(item.chart.csv())))
            assert rows and len(rows[0]) >= 3


def test_report_in_chromium(written: dict[str, Path]) -> None:
    if chromium() is None:
        pytest.skip("chromium is not installed and could not be (scripts/ensure_chromium.sh)")
    page = written["html"]
    with Browser(width=1280, height=900) as browser:
        browser.open(page, "document.body.classList.contains('charts-ready')")
        # no request leaves the file (data: and blob: URLs are inside it)
        outside = [u for u in browser.requests if not u.startswith(("data:", "blob:"))]
        assert outside == [page.resolve().as_uri()]
        chart = 'div.chart[data-chart="loss_vs_compute"]'
        # hovering a run's point shows its run id and its loss
        x, y = browser.center_of(f"{chart} .scatterlayer .trace .points path")
        browser.hover(x, y)
        lines = browser.js(
            "Array.from(document.querySelectorAll('.hoverlayer .hovertext tspan.line'))"
            ".map(e => e.textContent)"
        )
        shown = dict(line.split(": ", 1) for line in lines if ": " in line)
        assert {"run", "loss", "law", "law error (%)"} <= set(shown), lines
        loss = browser.js(
            f"(function () {{ var run = {json.dumps(shown['run'])};"
            f"var found = null; document.querySelector('{chart}').data.forEach(function (t) {{"
            "(t.customdata || []).forEach(function (c, i) {"
            "if (t.mode === 'markers' && c[0] === run) { found = t.y[i]; } }); });"
            "return found; })()"
        )
        assert loss is not None and f"{loss:.4f}" == shown["loss"]
        # a click on a legend entry hides that model size (its runs and its law)
        browser.hover(1, 1)
        x, y = browser.center_of(f"{chart} .legend .traces")
        browser.click(x, y)
        # (Plotly acts on a legend click once its double-click window has passed)
        hidden = browser.wait_until(
            f"document.querySelector('{chart}').data.filter(t => t.visible === 'legendonly')"
            ".map(t => t.legendgroup)"
        )
        assert len(hidden) == 2 and len(set(hidden)) == 1
        # log/linear switch
        browser.click(*browser.center_of('button[data-action="log-x"][data-chart="curves"]'))
        assert browser.wait_until(
            "document.querySelector('div.chart[data-chart=\"curves\"]').layout.xaxis.type === 'log'"
        )
        # the CSV download carries the figure's values
        browser.click(*browser.center_of('button[data-action="csv"][data-chart="isoflop"]'))
        deadline = 50
        while not list(browser.downloads.glob("isoflop.csv")) and deadline:
            browser.pump(0.2)
            deadline -= 1
        rows = list(csv.DictReader((browser.downloads / "isoflop.csv").open()))
        assert rows and {"series", "params", "loss"} <= set(rows[0])
        # the runs table sorts by a click on its header
        header = "table.sortable thead th:nth-child(2)"
        browser.click(*browser.center_of(header))
        sizes = browser.js(
            "Array.from(document.querySelector('table.sortable').tBodies[0].rows)"
            ".map(r => parseFloat(r.cells[1].dataset.sort))"
        )
        assert sizes == sorted(sizes) and len(sizes) > 10
        # the plans table is readable at 1280 px: no horizontal scrolling
        widths = browser.js(
            "Array.from(document.querySelectorAll('.scroll')).filter(d => "
            "d.querySelector('caption').textContent.startsWith('Compute-optimal plans'))"
            ".map(d => [d.scrollWidth, d.clientWidth])"
        )
        assert widths and all(s <= c for s, c in widths), widths
        # legends sit outside the plotting area: they cover no data
        overlaps = browser.js(
            "Array.from(document.querySelectorAll('div.chart')).map(function (div) {"
            "var legend = div.querySelector('.legend'), plot = div.querySelector('.nsewdrag');"
            "if (!legend || !plot) { return false; }"
            "var a = legend.getBoundingClientRect(), b = plot.getBoundingClientRect();"
            "return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;"
            "})"
        )
        assert not any(overlaps), overlaps
        browser.screenshot(page.parent / "screenshot.png")
        assert browser.errors == []
