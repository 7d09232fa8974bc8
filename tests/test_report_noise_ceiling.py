"""The noise ceiling: Spearman-Brown by hand, the split, the weighted bootstrap, and its bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from semsim_study.analysis import correlate as C, noise_ceiling as N, render, study as S

from .support.report_fixtures import make_project

DATASETS = ["digits", "faces"]


def test_spearman_brown_by_hand():
    # equal halves: the textbook 2r / (1 + r)
    assert N.spearman_brown(0.6, 1, 1) == pytest.approx(0.75)
    assert N.spearman_brown(0.5, 2, 2) == pytest.approx(2 / 3)
    # one answer against two, one answer's reliability q = 1/2: rel_1 = 1/2, rel_2 = 2/3, so the
    # halves correlate sqrt(1/3); three answers: rel_3 = 3 q / (1 + 2 q) = 3/4
    assert N.spearman_brown(math.sqrt(1 / 3), 1, 2) == pytest.approx(0.75)
    assert N.spearman_brown(math.sqrt(1 / 3), 1, 2, k=1) == pytest.approx(0.5)
    assert N.spearman_brown(0.0, 1, 2) == 0.0 and N.spearman_brown(1.0, 1, 2) == pytest.approx(1.0)
    assert N.spearman_brown(-0.6, 1, 1) == pytest.approx(-0.75)          # sign kept
    assert np.isnan(N.spearman_brown(np.nan, 1, 2))
    assert N.spearman_brown(np.array([0.6, -0.6]), 1, 1) == pytest.approx([0.75, -0.75])
    # the ceiling is the square root of the reliability; tau goes through r = sin(pi tau / 2)
    rel, ceiling = N.correct("spearman", 0.6, 1, 1)
    assert (rel, ceiling) == pytest.approx((0.75, math.sqrt(0.75)))
    rel, ceiling = N.correct("kendall", 2 / np.pi * np.arcsin(0.6), 1, 1)
    assert rel == pytest.approx(2 / np.pi * np.arcsin(0.75))
    assert ceiling == pytest.approx(2 / np.pi * np.arcsin(math.sqrt(0.75)))


def test_halves_are_disjoint_seeded_and_sized_n_over_2():
    rows = [("a", "p1", True), ("a", "p2", False), ("a", "p3", True), ("b", "p1", False), ("b", "p2", True),
            ("c", "p1", True), ("c", "p2", True), ("c", "p3", False), ("c", "p4", True), ("d", "p1", True)]
    answers = pd.DataFrame(rows, columns=["item_id", "annotator_id", "recognised"])
    h = N.Halves(answers, seed=0, dataset="digits", splits=50)
    assert h.items == ["a", "b", "c"]                                  # d: one answer cannot be split
    assert h.n_a.tolist() == [1, 1, 2] and h.n_b.tolist() == [2, 1, 2]
    assert ((h.rec_a + h.rec_b) == np.array([2, 1, 3])).all()        # every answer in exactly one half
    assert len({tuple(r) for r in h.rec_a}) > 1                        # the splits differ
    again = N.Halves(answers.sample(frac=1, random_state=1), 0, "digits", 50)    # the row order changes nothing
    assert (again.rec_a == h.rec_a).all()
    assert not (N.Halves(answers, seed=1, dataset="digits", splits=50).rec_a == h.rec_a).all()
    rates_a, _ = h.item_rates()
    assert set(np.unique(rates_a[:, 2])) <= {0.5, 1.0}
    maj_a, _ = h.majority()                                            # item c, half of 2: 1 of 2 is a tie
    assert set(np.unique(maj_a[:, 2])) <= {0.5, 1.0}


def test_bootstrap_on_distinct_pairs_equals_the_bootstrap_on_every_unit():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, 60).astype(float)
    y = rng.integers(0, 3, 60) / 2
    counts = C.resample_counts(60, 40, rng)
    whole, boots = N._split_statistics(x, y, counts)
    direct = C.bootstrap(x, y, counts)
    points = C.point(x, y)
    for c in C.COEFFICIENTS:
        assert whole[c] == pytest.approx(points[c][0], abs=1e-9)
        np.testing.assert_allclose(boots[c], direct[c], atol=1e-9, equal_nan=True)


def _answers(root, dataset: str, recognised) -> None:
    """Replace a dataset's answers: recognised(item index, annotator index) -> bool, 3 per item."""
    path = root / "data" / "annotations" / dataset / "answers.csv"
    items = pd.read_csv(path)["item_id"].drop_duplicates().tolist()
    rows = [(item, f"a{j}", "A", "x", "2026-01-01T00:00:00+00:00", "simulated", bool(recognised(i, j)))
            for i, item in enumerate(items) for j in range(3)]
    pd.DataFrame(rows, columns=["item_id", "annotator_id", "protocol", "answer", "submitted_at", "source",
                                "recognised"]).to_csv(path, index=False)


def _ceiling(root, reps=200) -> pd.DataFrame:
    study = S.build(root, DATASETS, [], [], S.BootstrapConfig(reps=0))
    return N.compute(root, study, S.BootstrapConfig(reps=reps)).set_index(["level", "scope", "coefficient"])


def test_a_crowd_that_always_agrees_reaches_one(tmp_path):
    make_project(tmp_path, datasets=DATASETS, images=4, pngs=False, held_out_attacks=(), held_out_backbones=())
    for ds in DATASETS:      # every annotator gives the item's verdict: both halves see the same rates
        _answers(tmp_path, ds, lambda i, j: (i * 7919) % 5 < 2)
    t = _ceiling(tmp_path)
    for level in ("model", "image"):
        for scope in [*DATASETS, "all"]:
            for c in C.COEFFICIENTS:
                row = t.loc[(level, scope, c)]
                assert row["split_half"] == pytest.approx(1.0) and row["value"] == pytest.approx(1.0)
                assert row["ci_low"] == pytest.approx(1.0) and row["ci_high"] == pytest.approx(1.0)
    assert t.loc[("image", "all", "spearman"), "n"] == 2 * 16 * 4 and t.loc[("model", "all", "spearman"), "n"] == 32
    assert t.loc[("model", "digits", "spearman"), ["half_a", "half_b", "answers_per_item"]].tolist() == [1, 2, 3]


def test_a_crowd_answering_at_random_has_no_ceiling(tmp_path):
    make_project(tmp_path, datasets=DATASETS, images=12, pngs=False, held_out_attacks=(), held_out_backbones=())
    rng = np.random.default_rng(11)
    for ds in DATASETS:
        flips = rng.uniform(size=(10_000, 3)) < 0.5
        _answers(tmp_path, ds, lambda i, j: flips[i, j])
    t = _ceiling(tmp_path, reps=300)
    for level in ("model", "image"):
        for scope in [*DATASETS, "all"]:
            row = t.loc[(level, scope, "spearman")]
            assert abs(row["reliability"]) < 0.25, (level, scope, row["reliability"])
            assert row["ci_low"] < 0 < row["ci_high"], (level, scope)
    # on many items the random crowd agrees with itself no more than chance would (3 standard errors)
    row = t.loc[("image", "all", "spearman")]
    assert abs(row["split_half"]) < 3 / math.sqrt(row["n"])


def test_missing_answers_give_a_reason_and_the_tables_a_row(tmp_path):
    make_project(tmp_path, datasets=DATASETS, images=3, pngs=False, held_out_attacks=(), held_out_backbones=())
    (tmp_path / "data" / "annotations" / "faces" / "answers.csv").unlink()
    study = S.build(tmp_path, DATASETS, [], [], S.BootstrapConfig(reps=20))
    study.ceiling = N.compute(tmp_path, study, S.BootstrapConfig(reps=20))
    assert N.get(study, "model", "faces", "spearman")["reason"].startswith("no raw answers")
    assert math.isfinite(N.get(study, "model", "digits", "spearman")["value"])
    assert N.get(study, "model", "all", "spearman")["n"] == 16          # pooled: digits' sets only
    header, rows, reasons = render.table_rows(study, "model", [*DATASETS, "all"])
    assert rows[-2][:2] == [render.CEILING_LABEL, "ρ"] and rows[-1][:2] == ["", "τ"]
    assert rows[-2][3].startswith("n/a") and any(r.startswith("no raw answers") for r in reasons)
    summary = N.summary(study)
    assert summary["model_level"]["faces"]["spearman"]["value"] is None
    assert summary["image_level"]["digits"]["n"] == 16 * 3 and summary["splits"] == N.SPLITS


def test_bad_recognised_value_names_the_line(tmp_path):
    path = tmp_path / "data" / "annotations" / "digits" / "answers.csv"
    path.parent.mkdir(parents=True)
    path.write_text("item_id,annotator_id,recognised\nx,a,True\nx,b,maybe\n")
    from semsim_study.errors import DataError
    with pytest.raises(DataError, match=r"answers.csv, line 3: 'recognised'"):
        N.read_answers(tmp_path, "digits")
