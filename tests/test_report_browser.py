"""The HTML report in a real headless browser (Debian's chromium driven by Playwright).

Opens index.html from file:// (it must need nothing else), checks every <img> decoded
(naturalWidth > 0), the inline SVG figures laid out with a size (the Spearman bars with their
error bars, a scatter figure per annotated dataset, round axis ends), the disagreement section,
the tables and the provenance banner, and takes the README's screenshots with
scripts/report-screenshots into a temporary folder (docs/*.png come from running that script on
a real run). Same skip rule as the annotation app's browser tests: skip outside CI when
chromium or playwright is missing, fail in CI (CI=true).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

from semsim_study.analysis import config, report, study as S

from .support.report_fixtures import make_project

ROOT = Path(__file__).resolve().parents[1]


def _screenshots_script():
    """scripts/report-screenshots as a module (it has no .py suffix: it is a command)."""
    path = ROOT / "scripts" / "report-screenshots"
    loader = importlib.machinery.SourceFileLoader("report_screenshots", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module



def test_report_page_renders_with_images(tmp_path, browser):
    make_project(tmp_path, datasets=("digits", "faces", "shapes"), images=2, annotated=("digits", "faces"))
    cfg = config.ReportConfig(datasets=["digits", "faces", "shapes"], attacks=["dlg", "idlg", "invgrad", "gradinversion"],
                              held_out_attacks=["dlg"], held_out_backbones=["lenet"],
                              bootstrap=S.BootstrapConfig(reps=100), grid_images=4)
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
    pair_images = 3 * page.locator("#disagreement ~ .disagree").count()
    assert len(images) == 2 * 4 * 3 + pair_images  # grids: original + reconstruction, 4 per dataset, 3 datasets
    assert all(done and width > 0 and src == "data:image/png;base64" for done, width, src in images), images
    figs = page.eval_on_selector_all("div.figure", "xs => xs.map(x => [x.id, x.querySelector('svg') !== null, "
                                     "x.getBoundingClientRect().width, x.getBoundingClientRect().height])")
    assert [f[0] for f in figs] == ["figure-spearman-model", "figure-scatter-digits", "figure-scatter-faces"]
    assert all(has_svg and w > 300 and h > 150 for _, has_svg, w, h in figs), figs
    assert page.locator("#figure-spearman-model svg [id^='LineCollection']").count() >= 1   # error bars drawn
    scatter = page.inner_text("#figure-scatter-digits")
    assert "unrecognised rate (simulated annotators)" in scatter and "0.25" in scatter and "ρ = " in scatter
    # the disagreement section: one original + A + B per annotated dataset that has a pair, all decoded
    pairs = page.eval_on_selector_all("#disagreement ~ .disagree", "xs => xs.map(x => [x.dataset.dataset, "
                                      "Array.from(x.querySelectorAll('img')).map(i => i.naturalWidth > 0 && "
                                      "i.getBoundingClientRect().width >= 150)])")
    notes = page.locator("#disagreement ~ .no-pair").count()
    assert len(pairs) + notes == 2 and all(len(ok) == 3 and all(ok) for _, ok in pairs), pairs
    assert "the metrics rank it more similar" in page.inner_text("#disagreement ~ .disagree") if pairs else notes == 2
    assert "No alpha sweep yet" in page.inner_text("body")
    banner = page.inner_text("#provenance")
    assert "Simulated annotators" in banner and "digits" in banner and "Pipeline-trained" in banner
    assert "shapes" in banner and "no annotations" in banner
    from semsim_study.analysis.orientation import SET_METRICS

    # 9 metrics and 3 controls, then the noise ceiling, a rho row and a tau row each, every cell with its interval
    assert page.locator("#model-level + table tbody tr").count() == 2 * len(SET_METRICS) + 2
    assert page.inner_text("#model-level + table tbody tr.ceiling td:first-child") == "Noise ceiling"
    assert "[" in page.inner_text("#model-level + table tbody tr:first-child td:nth-child(3)")
    body = page.inner_text("body")
    assert re.search(r"simulated annotators: \d/3 recognised", body) and not re.search(r"people: \d", body)
    context.close()
    assert not problems, problems
    shots = _screenshots_script().capture(browser, out / "index.html", tmp_path / "docs")
    assert {p.name for p in shots.values()} == {"report.png", "report-disagreement.png"}
    assert all(p.stat().st_size > 10_000 for p in shots.values())
