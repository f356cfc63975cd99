"""The report: files written, and the HTML opened in a real (headless) browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalinglab.data import load_observations
from scalinglab.examples import isoflop_sweep
from scalinglab.report.study_report import build_report
from scalinglab.study import analyse
from tests.browser import chromium, inspect_page


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    study = analyse(load_observations(isoflop_sweep(held_out=True)), bootstrap=50)
    return build_report(study, title="Example study").write(tmp_path_factory.mktemp("report"))


def test_report_files(written: dict[str, Path]) -> None:
    html = written["html"].read_text()
    markdown = written["markdown"].read_text()
    n_figures = len(written) - 2
    assert n_figures >= 6  # compute (3), loss-to-loss (2), backtest heatmaps
    assert html.count("data:image/png;base64,") == n_figures
    assert "http://" not in html and "https://" not in html  # viewable offline
    for name in ("loss_vs_compute", "isoflop", "allocation", "transfer", "translation"):
        assert written[name].stat().st_size > 10_000
        assert f"figures/{name}.png" in markdown
    assert "Compute-optimal plans" in markdown and "Every fitted law" in markdown


def test_report_opens_in_chromium(written: dict[str, Path]) -> None:
    if chromium() is None:
        pytest.skip("chromium is not installed and could not be (scripts/ensure_chromium.sh)")
    shot = written["html"].parent / "screenshot.png"
    verdict = inspect_page(written["html"], shot)
    assert verdict["errors"] == []
    assert len(verdict["images"]) == len(written) - 2
    assert all(img["ok"] and img["width"] > 100 for img in verdict["images"]), verdict
    assert shot.stat().st_size > 10_000
