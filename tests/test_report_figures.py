"""The report's paper-grade pieces: round ticks, the regression band, the disagreement picker,
LaTeX tables, byte-identical SVG/PDF, interval cells, the alpha sweep section and the wording."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from semsim_study.analysis import artifacts, config, disagreement, figures, latex, page, render, report, study as S
from semsim_study.analysis.regression import ols_band
from semsim_study.analysis.ticks import RATE_TICKS, nice_step, nice_ticks, tick_label

from .support.report_fixtures import make_project

ATTACKS = ["dlg", "idlg", "invgrad", "gradinversion"]


# --- ticks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, target, want", [
    (0.0, 1.0, 5, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (-0.06, 0.93, 5, [-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),     # no padded -0.06 end
    (112.3, 287.9, 4, [100.0, 150.0, 200.0, 250.0, 300.0]),      # an FID axis on round numbers
    (0.1, 0.3, 2, [0.1, 0.2, 0.3]),                              # 0.1 + 0.2 without float noise
    (-0.83, -0.12, 4, [-1.0, -0.8, -0.6, -0.4, -0.2, 0.0]),
    (7.0, 7.0, 4, [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]),             # one value: the round interval around it
])
def test_nice_ticks_known_cases(lo, hi, target, want):
    assert nice_ticks(lo, hi, target) == want


def test_nice_ticks_cover_the_data_on_1_2_5_steps():
    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = sorted(rng.normal(0, 10 ** rng.uniform(-3, 4), 2) + rng.normal(0, 100))
        ticks = nice_ticks(a, b, 5)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6, (a, b, ticks)
        assert ticks[0] <= a and ticks[-1] >= b and len(ticks) <= 5 + 3
        assert ticks[0] > a - step - 1e-9 * abs(step) and ticks[-1] < b + step + 1e-9 * abs(step)  # no extra tick
        assert np.allclose(np.diff(ticks), step)


def test_nice_ticks_without_data_and_bad_spans():
    assert nice_ticks(math.nan, math.nan) == [0.0, 0.5, 1.0]
    assert nice_ticks(math.nan, 3.0)[0] <= 3.0 <= nice_ticks(math.nan, 3.0)[-1]
    with pytest.raises(ValueError):
        nice_step(0.0)
    assert nice_step(0.99, 5) == pytest.approx(0.2) and nice_step(1000, 4) == pytest.approx(500)
    assert tick_label(-0.5) == "\u22120.5" and tick_label(0.25) == "0.25" and tick_label(100.0) == "100"
    assert RATE_TICKS == (0.0, 0.25, 0.5, 0.75, 1.0)


# --- regression band --------------------------------------------------------------------------

def test_ols_band_exact_line_and_undefined_cases():
    band = ols_band([0, 1, 2, 3], [1, 3, 5, 7])
    assert band.slope == pytest.approx(2) and band.intercept == pytest.approx(1)
    assert np.allclose(band.low, band.fit) and np.allclose(band.high, band.fit)   # no residuals, no width
    assert ols_band([1, 2], [1, 2]) is None                                      # no residual freedom
    assert ols_band([1, 1, 1, 1], [1, 2, 3, 4]) is None                          # constant x
    assert ols_band([1, 2, np.nan, 4], [1, np.nan, 3, 4]) is None                # two finite points


def test_ols_band_matches_the_textbook_formula_and_covers_the_true_mean():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 30)
    y = 0.5 - 2 * x + rng.normal(0, 0.3, 30)
    band = ols_band(x, y, x_range=(0, 1), points=11)
    slope, intercept = np.polyfit(x, y, 1)
    assert band.slope == pytest.approx(slope) and band.intercept == pytest.approx(intercept)
    s = np.sqrt(((y - (intercept + slope * x)) ** 2).sum() / 28)
    from scipy import stats
    half = stats.t.ppf(0.975, 28) * s * np.sqrt(1 / 30 + (band.x - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    assert np.allclose(band.high - band.fit, half) and np.allclose(band.fit - band.low, half)
    # coverage: the 95% band holds the true mean at x = 0.8 in about 95% of repeated samples
    hits = 0
    for _ in range(400):
        y = 0.5 - 2 * x + rng.normal(0, 0.3, 30)
        b = ols_band(x, y, x_range=(0.8, 0.8), points=1)
        hits += b.low[0] <= 0.5 - 1.6 <= b.high[0]
    assert 0.91 <= hits / 400 <= 0.99


# --- disagreement picker ----------------------------------------------------------------------

def _images(rows) -> pd.DataFrame:
    cols = ["item_id", "image_id", "model", "attack", "psnr", "ssim", "lpips", "recognised_rate", "annotators"]
    df = pd.DataFrame(rows, columns=cols)
    return df.assign(status="ok", annotation_source="simulated")


def test_pick_finds_the_strongest_discordant_pair():
    df = _images([
        # original o1: a1 looks best to every metric but nobody recognises it; b1 is recognised
        ("d/m1/x/o1", "o1", "m1", "x", 30.0, 0.9, 0.1, 0.0, 3),
        ("d/m2/x/o1", "o1", "m2", "x", 10.0, 0.2, 0.8, 1.0, 3),
        # original o2: a weaker contradiction (smaller metric lead)
        ("d/m1/x/o2", "o2", "m1", "x", 20.0, 0.6, 0.4, 0.0, 3),
        ("d/m2/x/o2", "o2", "m2", "x", 18.0, 0.5, 0.5, 1.0, 3),
        # original o3: the metrics disagree among themselves (SSIM prefers the other): not a pair
        ("d/m1/x/o3", "o3", "m1", "x", 29.0, 0.1, 0.05, 0.0, 3),
        ("d/m2/x/o3", "o3", "m2", "x", 9.0, 0.95, 0.9, 1.0, 3),
    ])
    pair = disagreement.pick(df, "d")
    assert (pair.image_id, pair.a["item_id"], pair.b["item_id"]) == ("o1", "d/m1/x/o1", "d/m2/x/o1")
    assert pair.lead > 0 and pair.a["psnr"] == 30.0 and pair.b["recognised_rate"] == 1.0
    # without o1, the weaker o2 pair is the answer; o3 never qualifies
    assert disagreement.pick(df[df.image_id != "o1"], "d").image_id == "o2"
    assert disagreement.pick(df[df.image_id == "o3"], "d") is None


def test_pick_none_when_metrics_and_annotators_agree():
    df = _images([
        ("d/m1/x/o1", "o1", "m1", "x", 30.0, 0.9, 0.1, 1.0, 3),      # best by every metric, recognised
        ("d/m2/x/o1", "o1", "m2", "x", 10.0, 0.2, 0.8, 0.0, 3),
        ("d/m3/x/o1", "o1", "m3", "x", 12.0, 0.3, 0.7, 1 / 3, 3),
        ("d/m1/x/o2", "o2", "m1", "x", 25.0, 0.8, 0.2, 2 / 3, 3),
        # different originals are never paired, however the metrics rank them
        ("d/m2/x/o2", "o2", "m2", "x", 31.0, 0.95, 0.05, 1.0, 3),
    ])
    assert disagreement.pick(df, "d") is None
    # a reconstruction nobody annotated does not count as "not recognised"
    unannotated = _images([("d/m1/x/o1", "o1", "m1", "x", 30.0, 0.9, 0.1, math.nan, 0),
                           ("d/m2/x/o1", "o1", "m2", "x", 10.0, 0.2, 0.8, 1.0, 3)])
    assert disagreement.pick(unannotated, "d") is None
    assert disagreement.pick(df.iloc[:0], "d") is None


# --- LaTeX ------------------------------------------------------------------------------------

def test_latex_escape():
    assert latex.escape("a_b 50% & $x #1 {y}") == r"a\_b 50\% \& \$x \#1 \{y\}"
    assert latex.escape("resnet8_ats-3-1-7") == r"resnet8\_ats-3-1-7"          # hyphens stay hyphens
    assert latex.escape("-0.06 [-0.20, +0.10]") == "$-$0.06 [$-$0.20, +0.10]"  # minus signs become math
    assert latex.escape("ρ τ digits†‡ −1 —") == r"$\rho$ $\tau$ digits$^\dagger$$^\ddagger$ $-$1 ---"
    assert latex.escape("back\\slash ~ ^") == r"back\textbackslash{}slash \textasciitilde{} \textasciicircum{}"


def test_latex_table_is_booktabs_with_one_cell_per_column():
    text = latex.table(["metric", "a_b", "all"], [["PSNR", "+0.50 [+0.1, +0.7]", "n/a [1]"], ["SSIM", "-0.1", "0.2"]],
                       notes=["fewer than 3 points (n=2)"], caption="x 95%", label="tab:x")
    body = text[text.index("\\toprule"):text.index("\\bottomrule")]
    rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 3 and all(line.count(" & ") == 2 for line in rows)
    assert "\\begin{tabular}{lrr}" in text and "\\midrule" in text and "a\\_b" in text and "x 95\\%" in text
    assert "\\label{tab:x}" in text and "[1] fewer than 3 points (n=2)" in text


# --- deterministic figure bytes ---------------------------------------------------------------

def _scatter():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 20)
    return figures.scatter_panels([{"title": "PSNR\nρ = −0.50", "ylabel": "PSNR", "x": x, "y": 20 - 10 * x}],
                                  xlabel="unrecognised rate (simulated annotators)")


def test_svg_and_pdf_bytes_are_identical_across_writes():
    one, two = figures.export(_scatter()), figures.export(_scatter())
    assert one.svg == two.svg and one.pdf == two.pdf
    assert one.svg.startswith("<svg") and one.pdf.startswith(b"%PDF")
    assert b"CreationDate" not in one.pdf and "<dc:date>" not in one.svg
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    rows = [[(img, "original"), (None, "A"), (img, "B")]]
    a = figures.export(figures.image_rows(rows, row_titles=["d"], column_titles=["o", "A", "B"]))
    b = figures.export(figures.image_rows(rows, row_titles=["d"], column_titles=["o", "A", "B"]))
    assert a == b


def test_bar_axis_fits_the_intervals():
    fig = figures.interval_bars(["PSNR", "SSIM"], {"all": ([0.3, 0.5], [0.1, 0.35], [0.45, 0.62])}, ylabel="rho")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 0.7)                         # from 0 up to the highest bound, rounded up
    assert list(ax.get_yticks()) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    figures.export(fig)
    fig = figures.interval_bars(["PSNR"], {"all": ([-0.3], [-0.55], [0.05])}, ylabel="rho")
    assert fig.axes[0].get_ylim() == (-0.6, 0.1)
    figures.export(fig)


def test_bar_interval_that_misses_its_estimate_is_drawn_as_it_is():
    """A percentile bootstrap interval need not contain the estimate (few points or resamples:
    `make paper-smoke` met one); the error bar spans the interval, wherever the bar ends."""
    fig = figures.interval_bars(["PSNR", "SSIM"], {"all": ([0.9, 0.2], [0.3, 0.1], [0.8, 0.4])}, ylabel="rho")
    segments = fig.axes[0].collections[-1].get_segments()
    assert [tuple(np.round(seg[:, 1], 6)) for seg in segments] == [(0.3, 0.8), (0.1, 0.4)]
    figures.export(fig)


# --- the page and tables on a synthetic project -------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    make_project(root, datasets=("digits", "faces"), images=3, held_out_attacks=(), held_out_backbones=())
    cfg = config.ReportConfig(datasets=["digits", "faces"], attacks=ATTACKS, bootstrap=S.BootstrapConfig(reps=50), grid_images=3)
    study = S.build(root, cfg.datasets, [], [], cfg.bootstrap)
    return root, cfg, study


def test_table_cells_carry_their_intervals(built):
    _, _, study = built
    header, rows, _ = render.table_rows(study, "model", ["digits", "all"])
    assert header[:2] == ["metric", ""] and [r[1] for r in rows[:2]] == ["ρ", "τ"]
    for row in rows:
        for cell in row[2:]:
            assert cell.startswith("n/a") or (cell.count("[") == 1 and cell.endswith("]")), cell
    r = S.get(study, "model", "digits", "psnr", "kendall")
    assert rows[3][2] == render.interval_text(r["oriented"], r["oriented_ci_low"], r["oriented_ci_high"])
    assert render.interval_text(0.5, math.nan, 0.6) == "+0.50"


def test_page_says_simulated_annotators_and_shows_the_alpha_sweep_when_present(built):
    root, cfg, study = built
    art = artifacts.build(root, study, cfg.datasets, cfg.attacks, 0.95)
    html = page.build_html(root, study, cfg.datasets, cfg.attacks, cfg.bootstrap, cfg.grid_images, art)
    assert re.search(r"simulated annotators: \d/3 recognised", html) and not re.search(r"people: \d/3", html)
    assert "Controls: the annotators" in html and "gain over untrained" in html  # the controls table is on the page
    assert "unrecognised rate (simulated annotators)" in art.figures["scatter-digits"].svg
    assert "Metrics vs simulated annotators disagree" in html and "No alpha sweep yet" in html
    assert set(art.figures) == {"spearman-model", "scatter-digits", "scatter-faces", "disagreement"}
    assert {"model_level", "image_level", "controls", "contradictions_all"} <= set(art.tables)
    sweep = root / "reports" / "alpha_sweep" / "alpha_sweep.csv"
    sweep.parent.mkdir(parents=True, exist_ok=True)
    sweep.write_text("experiment,rev,alpha,semsim_spearman,semsim_kendall,scope\n"
                     "a,r1,0.5,0.4,0.3,all\nworkspace,r2,1.0,0.6,0.45,all\n")
    try:
        art = artifacts.build(root, study, cfg.datasets, cfg.attacks, 0.95)
    finally:
        sweep.unlink()
    html = page.build_html(root, study, cfg.datasets, cfg.attacks, cfg.bootstrap, cfg.grid_images, art)
    assert "From reports/alpha_sweep/alpha_sweep.csv" in html and "figure-alpha-sweep" in html and "No alpha sweep" not in html
    assert "alpha_sweep" in art.tables and "+0.600" in art.tables["alpha_sweep"]


def test_human_answers_say_people(tmp_path):
    make_project(tmp_path, datasets=("digits",), images=3, source="human", held_out_attacks=(), held_out_backbones=())
    study = S.build(tmp_path, ["digits"], [], [], S.BootstrapConfig(reps=0))
    art = artifacts.Artifacts()
    html = page.build_html(tmp_path, study, ["digits"], ATTACKS, S.BootstrapConfig(reps=0), 3, art)
    assert re.search(r"people: \d/3 recognised", html) and "simulated annotators" not in html
    assert render.verdict(2 / 3, 3, "simulated") == "simulated annotators: 2/3 recognised"
