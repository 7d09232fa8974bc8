"""The HTML report in a real headless browser (Debian's chromium driven by Playwright).

Opens index.html from file:// (it must need nothing else), checks every <img> decoded
(naturalWidth > 0), the inline SVG plots, the tables and the provenance banner, and saves a
screenshot. Same skip rule as the annotation app's browser tests: skip outside CI when
chromium or playwright is missing, fail in CI (CI=true).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from semsim_study.analysis import report, study as S

from .report_fixtures import make_project

SCREENSHOT = os.environ.get("REPORT_SCREENSHOT")  # e.g. docs/report.png to refresh the README picture



def test_report_page_renders_with_images(tmp_path, browser):
    make_project(tmp_path, datasets=("digits", "faces", "shapes"), images=2, annotated=("digits", "faces"))
    cfg = report.ReportConfig(datasets=["digits", "faces", "shapes"], attacks=["dlg", "idlg", "invgrad", "gradinversion"],
                              held_out_attacks=["dlg"], held_out_backbones=["lenet"],
                              settings=S.Settings(reps=100), grid_images=4)
    out = tmp_path / "reports/report"
    report.write(tmp_path, out, cfg)
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "xs => xs.map(x => [x.complete, x.naturalWidth, x.src.slice(0, 21)])")
    assert len(images) == 2 * 4 * 3          # original + reconstruction, 4 per dataset, 3 datasets
    assert all(done and width > 0 and src == "data:image/png;base64" for done, width, src in images), images
    assert page.locator("svg").count() >= 3  # bar chart + one scatter grid per annotated dataset
    banner = page.inner_text("#provenance")
    assert "Simulated annotators" in banner and "digits" in banner and "Pipeline-trained" in banner
    assert "shapes" in banner and "no annotations" in banner
    from semsim_study.analysis.orientation import SET_METRICS

    assert page.locator("#model-level + table tbody tr").count() == len(SET_METRICS) == 12  # 8 metrics, 4 controls
    assert "people: " in page.inner_text("body")
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    context.close()
    assert not problems, problems
