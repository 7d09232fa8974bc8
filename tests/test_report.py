"""Report: correlations against scipy, bootstrap, orientation, contradictions, bad input, outputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from semsim_study.analysis import alpha_sweep, contradictions, correlate as C, report, study as S
from semsim_study.analysis.orientation import expected_sign
from semsim_study.metric_table import leakage_sign

from .support.report_fixtures import make_project

ROOT = Path(__file__).resolve().parents[1]


# --- correlation values -------------------------------------------------------------------

@pytest.mark.parametrize("x, y", [
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]),
    ([1, 2, 2, 3, 7, 7, 9], [3, 1, 1, 2, 8, 6, 6]),          # ties in both
    ([0.1, 0.5, 0.2, 0.9], [10, 3, 8, 1]),                    # negative
])
def test_values_and_p_match_scipy(x, y):
    res = C.correlate(x, y, reps=100, seed=0, key="k")
    for name, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau), ("pearson", stats.pearsonr)):
        ref = fn(x, y)
        assert res[name].value == pytest.approx(ref.statistic, abs=1e-12)
        assert res[name].p == pytest.approx(ref.pvalue, rel=1e-9)
        assert res[name].n == len(x) and res[name].reason == ""


def test_hand_computed_kendall():
    # pairs of (1,2,3) vs (1,3,2): concordant (1,2),(1,3); discordant (2,3) -> tau = 1/3
    assert C.correlate([1, 2, 3], [1, 3, 2], reps=0, seed=0, key="k")["kendall"].value == pytest.approx(1 / 3)


def test_bootstrap_statistics_equal_scipy_on_each_resample():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 25).astype(float)        # many ties
    y = x + rng.normal(size=25)
    counts = C.resample_counts(25, 5, rng)
    boot = C.bootstrap(x, y, counts)
    for r in range(5):
        idx = np.repeat(np.arange(25), counts[r].astype(int))
        assert boot["spearman"][r] == pytest.approx(stats.spearmanr(x[idx], y[idx]).statistic, abs=1e-9)
        assert boot["kendall"][r] == pytest.approx(stats.kendalltau(x[idx], y[idx]).statistic, abs=1e-9)
        assert boot["pearson"][r] == pytest.approx(stats.pearsonr(x[idx], y[idx]).statistic, abs=1e-9)


def _bootstrap_by_pair_matrices(x, y, counts):
    """The bootstrap's rank and Kendall sums written as the n x n products the module docstring
    states (what correlate.py computed before its running sums): the reference for the bits."""
    w = counts.astype(float)

    def ranks(v):
        m = (v[None, :] < v[:, None]).astype(np.float32) + 0.5 * (v[None, :] == v[:, None]).astype(np.float32)
        return (counts @ m.T).astype(float) + 0.5

    def tied(sgn):
        return (np.einsum("ra,ra->r", (counts @ (sgn == 0).astype(np.float32)).astype(float), w) - w.sum(axis=1)) / 2.0

    sx = np.sign(x[:, None] - x[None, :]).astype(np.float32)
    sy = np.sign(y[:, None] - y[None, :]).astype(np.float32)
    big_n = w.sum(axis=1)
    s = np.einsum("ra,ra->r", (counts @ (sx * sy)).astype(float), w) / 2.0
    n0, n1, n2 = big_n * (big_n - 1) / 2.0, tied(sx), tied(sy)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = s / np.sqrt((n0 - n1) * (n0 - n2))
    tau[(n0 - n1 <= 0) | (n0 - n2 <= 0)] = np.nan
    return {"pearson": C._weighted_pearson(w, x, y), "spearman": C._weighted_pearson(w, ranks(x), ranks(y)),
            "kendall": np.clip(tau, -1.0, 1.0)}


@pytest.mark.parametrize("n", [3, 25, 300])
def test_bootstrap_is_the_pair_matrix_form_bit_for_bit(n):
    rng = np.random.default_rng(n)
    cases = [(rng.normal(size=n), rng.normal(size=n)),                      # no ties
             (rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n) / 3),  # ties in both, as rates
             (np.ones(n), rng.normal(size=n)),                               # constant
             (rng.choice([0.0, -0.0, 1.0], n), rng.choice([-0.0, 0.0, 2.0], n))]  # signed zeros tie
    weights = [C.resample_counts(n, 200, rng), rng.integers(1, 4, (1, n)).astype(np.float32)]  # as noise_ceiling
    for x, y in cases:
        for counts in weights:
            got, ref = C.bootstrap(x, y, counts), _bootstrap_by_pair_matrices(x, y, counts)
            assert {c: got[c].tobytes() for c in got} == {c: ref[c].tobytes() for c in ref}


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    a = C.correlate(x, y, reps=500, seed=7, key="model/digits")
    b = C.correlate(x, y, reps=500, seed=7, key="model/digits")
    c = C.correlate(x, y, reps=500, seed=8, key="model/digits")
    for name in C.COEFFICIENTS:
        assert a[name].ci_low < a[name].value < a[name].ci_high
        assert (a[name].ci_low, a[name].ci_high) == (b[name].ci_low, b[name].ci_high)
        assert a[name].ci_low != c[name].ci_low
    assert a["spearman"].ci_high - a["spearman"].ci_low < 0.8


# --- orientation ----------------------------------------------------------------------------

def test_orientation_signs():
    for m in ("psnr", "ssim", "classification"):
        assert expected_sign(m, "unrecognised_rate") == -1 and expected_sign(m, "recognised_rate") == 1
        assert leakage_sign(m) == 1
    for m in ("mse", "lpips", "fid", "semsim", "ce_distance"):
        assert expected_sign(m, "unrecognised_rate") == 1 and expected_sign(m, "recognised_rate") == -1
        assert leakage_sign(m) == -1
    r = C.Corr("spearman", -0.8, 0.01, -0.9, -0.6, 10)
    o = r.oriented(-1)
    assert (o.value, o.ci_low, o.ci_high) == pytest.approx((0.8, 0.6, 0.9))


def test_oriented_values_positive_for_faithful_synthetic_metrics(tmp_path):
    p = make_project(tmp_path, datasets=("digits",), images=4, pngs=False)
    st = S.build(tmp_path, ["digits"], [], [], S.BootstrapConfig(reps=50))
    t = st.correlations
    model = t[(t.level == "model") & (t.scope == "digits") & (t.coefficient == "spearman")].set_index("metric")
    assert model.loc["psnr", "value"] < 0 < model.loc["psnr", "oriented"]        # PSNR falls as unrecognised rises
    assert model.loc["mse", "value"] > 0 and model.loc["mse", "oriented"] > 0
    image = t[(t.level == "image") & (t.scope == "digits") & (t.coefficient == "spearman")].set_index("metric")
    assert image.loc["psnr", "value"] > 0 and image.loc["semsim", "value"] < 0 < image.loc["semsim", "oriented"]
    assert p["datasets"] == ["digits"]


# --- contradictions -------------------------------------------------------------------------

def test_discordant_share_equals_counting_every_pair_with_ties():
    def every_pair(a, b):
        iu = np.triu_indices(len(a), k=1)
        da, db = np.sign(a[:, None] - a[None, :])[iu], np.sign(b[:, None] - b[None, :])[iu]
        strict = (da != 0) & (db != 0)
        return (float((da[strict] != db[strict]).mean()) if strict.any() else math.nan), int(strict.sum())

    rng = np.random.default_rng(4)
    for trial in range(150):
        n = int(rng.integers(2, 30))
        a = rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n)
        b = a.copy() if trial % 7 == 0 else rng.integers(0, 3, n).astype(float)
        got, want = contradictions.discordant_share(a, b), every_pair(a, b)
        assert got[1] == want[1]
        assert (math.isnan(got[0]) and math.isnan(want[0])) or got[0] == pytest.approx(want[0], abs=1e-12)


def test_discordant_share_by_hand():
    # a = (1,2,3,4), b = (1,3,2,2): pairs (i<j) signs of a all +; b: (0,1)+ (0,2)+ (0,3)+ (1,2)- (1,3)- (2,3)0
    # strictly ordered by both: 5 pairs, 2 opposite -> 0.4
    share, pairs = contradictions.discordant_share([1, 2, 3, 4], [1, 3, 2, 2])
    assert (share, pairs) == (pytest.approx(0.4), 5)
    assert contradictions.discordant_share([1, 2, 3], [3, 2, 1]) == (1.0, 3)


def test_pairwise_orients_distances():
    images = pd.DataFrame({"psnr": [10.0, 20, 30, 40], "mse": [0.1, 0.01, 0.001, 0.0001],
                           "ssim": [0.4, 0.3, 0.2, 0.1]})
    rows = {r["metric"]: r for r in contradictions.pairwise(images, ["mse", "psnr", "ssim"])}
    assert rows["mse~psnr"]["spearman"] == pytest.approx(1.0) and rows["mse~psnr"]["discordant_share"] == 0.0
    assert rows["psnr~ssim"]["spearman"] == pytest.approx(-1.0) and rows["psnr~ssim"]["discordant_share"] == 1.0


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("x, y, reason", [
    ([1, 2], [1, 2], "fewer than 3 points (n=2)"),
    ([1, 1, 1, 1], [1, 2, 3, 4], "metric is constant"),
    ([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5], "human rate is constant"),
    ([1, 2, np.nan, np.nan], [1, 2, 3, 4], "fewer than 3 points (n=2)"),
])
def test_nan_with_reason(x, y, reason):
    res = C.correlate(x, y, reps=10, seed=0, key="k")
    for c in C.COEFFICIENTS:
        assert math.isnan(res[c].value) and res[c].reason == reason


def test_missing_annotations_listed_and_few_sets(tmp_path):
    make_project(tmp_path, datasets=("digits", "faces", "glyphs"), models=("lenet_none",), attacks=("dlg", "idlg"),
                 images=3, annotated=("digits", "faces"), pngs=False, held_out_attacks=(), held_out_backbones=())
    # faces: annotations exist but nobody annotated anything
    items = tmp_path / "data/annotations/faces/items.csv"
    df = pd.read_csv(items)
    df["annotators"] = 0
    df["recognised_rate"] = np.nan
    df.to_csv(items, index=False)
    st = S.build(tmp_path, ["digits", "faces", "glyphs"], ["dlg"], [], S.BootstrapConfig(reps=20))
    t = st.correlations
    model = t[t.level == "model"]
    from semsim_study.analysis.orientation import CONTROL_METRICS

    digits = model[model.scope == "digits"]
    metrics, ctrl = digits[~digits.metric.isin(CONTROL_METRICS)], digits[digits.metric.isin(CONTROL_METRICS)]
    assert (metrics.reason == "fewer than 3 points (n=2)").all()   # 2 sets only
    # no budgets, and no other annotated dataset to cross-fit on: the controls have no values
    assert ctrl.reason.str.startswith("no Control").all()
    assert model[model.scope == "glyphs"].reason.str.startswith("no annotations").all()
    assert model[model.scope == "faces"].reason.str.startswith("no annotated item").all()
    assert model[model.scope == "attack-dlg"].reason.str.startswith("no semsim scores").all()
    assert not st.dataset("glyphs").annotated and st.dataset("digits").annotation_source == "simulated"
    from semsim_study.analysis import render
    text = " ".join(render.banner(st))
    assert "glyphs" in text and "faces" in text and "Simulated annotators" in text and "Pipeline-trained" in text


def test_bad_metrics_file_names_file(tmp_path):
    make_project(tmp_path, datasets=("digits",), images=2, pngs=False)
    (tmp_path / "data/metrics/digits/images.csv").write_text("item_id,mse\nx,1\n")
    from semsim_study.errors import DataError
    with pytest.raises(DataError, match=r"images.csv: missing column\(s\) dataset"):
        S.build(tmp_path, ["digits"], [], [], S.BootstrapConfig(reps=0))


def test_human_and_imagenet_give_no_warning_lines(tmp_path):
    make_project(tmp_path, datasets=("digits",), images=3, source="human", features="imagenet", pngs=False,
                 held_out_attacks=(), held_out_backbones=())
    from semsim_study.analysis import render
    st = S.build(tmp_path, ["digits"], [], [], S.BootstrapConfig(reps=0))
    assert render.banner(st) == [] and render.column_label(st, "digits") == "digits"


# --- the stage end to end ------------------------------------------------------------------

def _params(tmp_path: Path, p: dict) -> Path:
    import yaml
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def run_stage(tmp_path: Path, params: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.report", "--params", str(_params(tmp_path, params)),
                           "--root", str(tmp_path), "--out", str(tmp_path / "reports/report")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_stage_writes_every_file_deterministically(tmp_path):
    params = make_project(tmp_path, datasets=("digits", "faces", "shapes"), images=3, annotated=("digits", "faces"))
    done = run_stage(tmp_path, params)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "reports/report"
    for name in ("summary.json", "correlations.csv", "provenance.json", "report.md", "index.html",
                 "plots/scatter/digits/semsim.csv", "plots/scatter/faces/fid.csv", "plots/spearman/all.csv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    head = json.loads((tmp_path / "reports" / "metrics" / "report.json").read_text())
    assert head["spearman"]["all"]["semsim"] == summary["model_level"]["all"]["semsim"]["spearman"]
    leaves = lambda d: sum(leaves(v) for v in d.values()) if isinstance(d, dict) else 1  # noqa: E731
    assert leaves(head) <= 100
    ceiling = summary["noise_ceiling"]
    assert set(ceiling["model_level"]) == set(ceiling["image_level"]) == {"digits", "faces", "shapes", "all"}
    digits = ceiling["model_level"]["digits"]
    assert digits["n"] == 16 and digits["half_sizes"] == [1.0, 2.0] and digits["answers_per_item"] == 3.0
    assert digits["spearman"]["ci_low"] <= digits["spearman"]["value"] <= digits["spearman"]["ci_high"]
    assert ceiling["model_level"]["shapes"]["spearman"]["value"] is None and "image_level" in ceiling[
        "generalisation"]["attack-dlg"]
    assert head["noise_ceiling"] == {s: v["spearman"]["value"] for s, v in ceiling["model_level"].items()}
    assert summary["model_level"]["digits"]["semsim"]["spearman"] > 0
    assert set(summary["model_level"]["digits"]["psnr"]) == {"spearman", "kendall", "pearson"}
    assert summary["model_level"]["shapes"]["mse"]["spearman"] is None
    assert "image_level" in summary["generalisation"]["attack-dlg"]
    table = pd.read_csv(out / "correlations.csv")
    assert list(table.columns[:11]) == ["level", "scope", "metric", "coefficient", "value", "oriented", "p",
                                        "ci_low", "ci_high", "n", "reason"]
    assert {"model", "image", "contradiction"} <= set(table.level)
    md = (out / "report.md").read_text()
    assert "| metric |  | digits†‡ | faces†‡ | shapes‡ | all |" in md and "no annotations" in md
    assert "| PSNR | ρ | +" in md and "|  | τ | +" in md                # every cell with its interval: "+0.7 [+0.5, +0.8]"
    assert md.count("| Noise ceiling | ρ | +") == 4                      # model, image and both held-out tables
    html = (out / "index.html").read_text()
    assert html.count("<tr class='ceiling'><td>Noise ceiling</td><td>ρ</td>") == 4
    assert "Noise ceiling" in (out / "tables" / "model_level.tex").read_text()
    for name in ("spearman-model", "scatter-digits", "scatter-faces", "disagreement"):
        assert (out / "figures" / f"{name}.svg").read_text().startswith("<svg")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert not (out / "figures" / "scatter-shapes.svg").exists()        # shapes has no annotations
    assert (out / "tables" / "model_level.tex").read_text().count("\\toprule") == 1
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_stage(tmp_path, params).returncode == 0
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after                                     # same inputs, same bytes


def test_stage_bad_param_one_line(tmp_path):
    params = make_project(tmp_path, datasets=("digits",), images=2, pngs=False)
    params["report"]["bootstrap"] = -1
    done = run_stage(tmp_path, params)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: params: 'report.bootstrap'")


def test_embedded_size_project_reports_every_dataset(tmp_path):
    """~480 items / 80 sets / 5 datasets / 6 held-out runs with 1000 resamples (its speed is measured in the closing notes, not here)."""
    params = make_project(tmp_path, datasets=("digits", "photos", "faces", "glyphs", "shapes"), images=6,
                          held_out_attacks=("dlg", "idlg", "invgrad", "gradinversion"),
                          held_out_backbones=("resnet8", "lenet"))
    params["report"].update(bootstrap=1000, grid_images=8)
    done = run_stage(tmp_path, params)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "reports" / "report" / "summary.json").read_text())
    assert set(summary["model_level"]) >= {"digits", "photos", "faces", "glyphs", "shapes", "all"}


# --- alpha sweep ----------------------------------------------------------------------------

def test_alpha_sweep_parses_recorded_exp_show(tmp_path):
    sample = json.loads((ROOT / "tests/data/exp_show_dvc3.json").read_text())
    rows = alpha_sweep.parse(sample)
    got = {(r["experiment"], r["alpha"], r["semsim_spearman"], r["semsim_kendall"]) for r in rows}
    assert ("master", 1.0, 0.6, 0.5) in got and ("awful-grip", 0.25, 0.525, 0.425) in got
    assert ("naive-goos", 2.0, 0.7, 0.6) in got and len(rows) == 4      # workspace too
    assert [r["alpha"] for r in rows] == sorted(r["alpha"] for r in rows)
    # robust: errors, missing metrics and other layouts do not crash
    odd = [{"rev": "x", "data": {"params": {"params.yaml": {"data": {"alpha": "0.5"}}}, "metrics": None},
            "error": {"msg": "failed"}}, {"unrelated": [1, 2]}]
    (r,) = alpha_sweep.parse(odd)
    assert r["alpha"] == 0.5 and math.isnan(r["semsim_spearman"])
    assert alpha_sweep.main(["--json-file", str(ROOT / "tests/data/exp_show_dvc3.json"),
                             "--out", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "alpha_sweep.csv").read_text().startswith("experiment,rev,alpha,")
    assert "<svg" in (tmp_path / "sweep" / "alpha_sweep.svg").read_text()
    import yaml  # the plot is declared beside the CSV, so `dvc plots show` draws it only once it exists
    plot = yaml.safe_load((tmp_path / "sweep" / "dvc.yaml").read_text())["plots"][0]["alpha_sweep.csv"]
    assert plot["x"] == "alpha" and plot["y"] == ["semsim_spearman", "semsim_kendall"]


def test_dvc_yaml_declares_report():
    import yaml
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = dvc["stages"]["report"]
    assert "report" in stage["params"] and "data/metrics" in stage["deps"]
    assert "semsim_study/analysis" in stage["deps"]  # the whole package (tests/test_dvc_deps.py: the closure)
    assert [next(iter(m)) for m in stage["metrics"]] == ["reports/headline"]  # the project's only DVC metrics
    assert any("reports/metrics/report.json" in m for m in stage["outs"] if isinstance(m, dict))
    others = [name for name, s in dvc["stages"].items() if name != "report" and "metrics" in (s.get("do") or s)]
    assert others == [], others
    assert any("reports/report/summary.json" in m for m in stage["outs"] if isinstance(m, dict))


# --------------------------------------------------------------------------- threat-model controls
def test_threat_model_controls_are_cross_fitted_and_know_no_image():
    import pandas as pd

    from semsim_study.analysis import threat_controls as controls

    def sets(rates):
        rows = [(m, a, r) for (m, a), r in rates.items()]
        return pd.DataFrame(rows, columns=["model", "attack", "unrecognised_rate"])

    a = sets({("lenet_x", "invgrad@20"): 0.9, ("lenet_x", "invgrad@150"): 0.1, ("resnet8_y", "invgrad@20"): 1.0,
              ("resnet8_y", "invgrad@150"): 0.7, ("resnet8_y", "dlg"): 0.8})
    b = sets({("lenet_z", "invgrad@20"): 0.5, ("lenet_z", "invgrad@150"): 0.3, ("resnet8_w", "invgrad@20"): 0.6,
              ("resnet8_w", "invgrad@150"): 0.2})
    out = controls.add({"a": a, "b": b})
    # backbone only: the backbone's mean over the *other* dataset, never this one's rates
    assert out["a"]["backbone_only"].tolist() == pytest.approx([0.4, 0.4, 0.4, 0.4, 0.4])
    assert out["b"]["backbone_only"].tolist() == pytest.approx([0.5, 0.5, 2.5 / 3, 2.5 / 3])
    # budget only: rank of the budget among its attack's budgets; an attack without budgets has none
    assert out["a"]["budget_only"].tolist()[:4] == [0.0, 1.0, 0.0, 1.0] and math.isnan(out["a"]["budget_only"].iloc[4])
    # threat model: same backbone and attack label elsewhere; unseen combinations get no value
    assert out["b"]["threat_model"].tolist() == pytest.approx([0.9, 0.1, 1.0, 0.7])
    assert math.isnan(out["a"]["threat_model"].iloc[4])
    # changing a dataset's own rates never changes its own controls
    a2 = a.assign(unrecognised_rate=[0.0, 1.0, 0.0, 1.0, 0.0])
    again = controls.add({"a": a2, "b": b})["a"]
    assert again[["backbone_only", "budget_only"]].equals(out["a"][["backbone_only", "budget_only"]])
    assert again["threat_model"].equals(out["a"]["threat_model"])


def test_controls_sit_in_the_model_level_table_with_their_orientation():
    assert expected_sign("backbone_only", "unrecognised_rate") == 1
    assert expected_sign("budget_only", "unrecognised_rate") == -1  # more budget, fewer unrecognised
    assert expected_sign("threat_model", "unrecognised_rate") == 1
    from semsim_study.analysis.orientation import CONTROL_METRICS, IMAGE_METRICS, SET_METRICS

    assert set(CONTROL_METRICS) <= set(SET_METRICS) and not set(CONTROL_METRICS) & set(IMAGE_METRICS)


def test_attack_labels_spell_and_parse_budgets():
    from semsim_study import threat

    assert threat.label("invgrad", 400) == "invgrad@400" and threat.label("dlg") == "dlg"
    assert threat.method("invgrad@400") == "invgrad" and threat.method("dlg") == "dlg"
    assert threat.budget("invgrad@400") == 400 and threat.budget("dlg") is None
    with pytest.raises(ValueError, match="not an integer"):
        threat.budget("invgrad@many")


def test_pooled_scope_ranks_within_each_dataset():
    from semsim_study.analysis.study import within_dataset_ranks

    # within each dataset the metric orders the sets perfectly, but dataset b sits at an offset
    # that reverses the order across datasets: concatenating raw values would hide the agreement
    t = pd.DataFrame({"dataset": ["a"] * 4 + ["b"] * 4,
                      "semsim": [1.0, 2.0, 3.0, 4.0, -10.0, -9.0, -8.0, -7.0],
                      "unrecognised_rate": [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]})
    raw = stats.spearmanr(t["semsim"], t["unrecognised_rate"]).statistic
    ranked = within_dataset_ranks(t, ("semsim", "unrecognised_rate"))
    assert raw < 0 and stats.spearmanr(ranked["semsim"], ranked["unrecognised_rate"]).statistic == pytest.approx(1.0)
    assert ranked.loc[t["dataset"] == "b", "semsim"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert within_dataset_ranks(t.assign(semsim=[np.nan] + [1.0] * 7), ("semsim",))["semsim"].isna().sum() == 1


# --------------------------------------------------------------------------- the DVC metrics
def test_headline_by_scope_is_a_few_rounded_columns_per_scope():
    """What `dvc metrics show` prints: per scope SemSim, its controls, the pixel metrics and the
    noise ceiling, rounded; metrics without a value (too few sets) are left out, not written as null."""
    from semsim_study.analysis.headline import SHOWN, by_scope

    rho = {m: {"spearman": 0.1234567 * (k + 1), "kendall": 0.1} for k, m in enumerate([*SHOWN.values(), "fid"])}
    summary = {"model_level": {"all": rho, "digits": {**rho, "lpips": {"spearman": None}}},
               "noise_ceiling": {"model_level": {"all": {"spearman": {"value": 0.97654, "ci_low": 0.9}}}}}
    rows = by_scope(summary)
    assert set(rows) == {"all", "digits"}
    assert list(rows["all"]) == [*SHOWN, "semsim_kendall", "ceiling"]
    assert rows["all"]["semsim"] == 0.123 and rows["all"]["untrained"] == 0.247 and rows["all"]["ceiling"] == 0.977
    assert rows["all"]["semsim_kendall"] == 0.1
    assert "lpips" not in rows["digits"] and "ceiling" not in rows["digits"] and "fid" not in rows["all"]


def test_alpha_sweep_reads_the_headline_files():
    """`dvc exp show --json` lists the headline folder's files; the sweep takes SemSim's rho and tau from them."""
    record = {"rev": "abc", "name": "exp-1", "data": {
        "params": {"params.yaml": {"data": {"alpha": 0.5}}},
        "metrics": {"reports/headline/all.json": {"data": {"semsim": 0.61, "semsim_kendall": 0.44}},
                    "reports/headline/digits.json": {"data": {"semsim": 0.9, "semsim_kendall": 0.8}}}}}
    (row,) = alpha_sweep.parse([record])
    assert (row["alpha"], row["semsim_spearman"], row["semsim_kendall"]) == (0.5, 0.61, 0.44)
    (row,) = alpha_sweep.parse([record], scope="digits")
    assert row["semsim_spearman"] == 0.9


def test_distinct_pair_prints_the_decimals_where_two_values_differ():
    """A sentence that calls trained SemSim worse shows the decimals where it is: never "+0.84 vs +0.84"."""
    from semsim_study.decimals import distinct_pair
    assert distinct_pair(0.8412, 0.8438) == ("+0.841", "+0.844")
    assert distinct_pair(0.50, 0.81) == ("+0.50", "+0.81")
    assert distinct_pair(0.84121, 0.84123) == ("+0.8412", "+0.8412")  # at most four decimals
    assert distinct_pair(0.9, 0.8, digits=3, most=2, signed=False) == ("0.900", "0.800")  # digits beyond most


def test_controls_table_shows_the_paired_gain_and_tells_close_values_apart(tmp_path):
    """The SemSim columns carry training's gain with its paired interval, and the sentence naming a
    dataset where training lost prints the decimals where it lost."""
    from semsim_study.analysis import checks_table
    (tmp_path / "reports" / "semsim").mkdir(parents=True)
    (tmp_path / "reports" / "semsim" / "dataset-faces.json").write_text(json.dumps({
        "heldout_triplet_accuracy": 0.900063, "heldout_triplet_accuracy_random_init": 0.900117, "selected_epoch": 3,
        "heldout_gain_over_random_init": -0.000052, "heldout_gain_over_random_init_ci": [-0.0012, 0.0009],
        "heldout_gain_over_random_init_matched": -0.000789,
        "heldout_gain_over_random_init_matched_ci": [-0.004, 0.0031]}))
    rows, worse, compared = checks_table.rows(tmp_path, ["faces", "digits"])
    assert len(rows[0]) == len(checks_table.HEADER)
    assert rows[0][-2:] == ["-0.0001 [-0.0012, +0.0009]", "-0.0008 [-0.0040, +0.0031]"]
    assert rows[1][-2:] == ["n/a [n/a, n/a]"] * 2  # no SemSim record for digits
    assert worse == ["faces (0.90006 vs 0.90012)"] and compared == 1
    assert "faces (0.90006 vs 0.90012)" in checks_table.verdict(worse, compared)
    # nothing recorded: the verdict says so instead of "matches or beats ... on every dataset"
    assert checks_table.rows(tmp_path, ["digits"])[1:] == ([], 0)
    assert checks_table.verdict([], 0).startswith("No SemSim record")
    assert "wherever both are recorded" in checks_table.verdict([], 2)
