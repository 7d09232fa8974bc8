"""Aggregation (items, sets) and agreement (Fleiss' kappa, Krippendorff's alpha) against
hand-computed small cases and published worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from semsim_study.annotation import aggregate, agreement, importers
from semsim_study.annotation.longformat import recognised_flags
from tests.support.annotation_fixtures import D1, D2, D3, D4, F1, F2, item_file_name, tasks

T0 = "2024-05-01T10:00:00Z"


def answers(rows, verdicts=None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["item_id", "annotator_id", "protocol", "answer"], dtype=object)
    df["submitted_at"] = T0
    df["verdict"] = verdicts if verdicts is not None else [""] * len(df)
    return df


# Hand case. Truths: D1 3, D2 5, D3 7, D4 3; F1/F2 protocol B (recognised = "same").
#   D1 (dlg): a '3' yes, b '3' yes, c '8' no   -> 3 annotators, 2 recognised, 2/3, recognised
#   D2 (dlg): a '6' no,  b '5' yes, c '3' no   -> 3, 1, 1/3, unrecognised
#   D3 (dlg): a '7' yes, b '1' no              -> 2, 1, 1/2, tie
#   D4 (idlg): nobody                          -> 0, 0, NaN, ''
#   F1 (faces dlg): a same, b same             -> 2, 2, 1.0, recognised
#   F2 (faces dlg): a different                -> 1, 0, 0.0, unrecognised
# Sets: digits/resnet8_none/dlg: images 3, annotated 3; majority verdicts recognised,
#   unrecognised, tie -> recognised_rate (1 + 0.5) / 3 = 0.5, unrecognised 0.5.
#   digits/resnet8_none/idlg: images 1, annotated 0 -> rates NaN.
#   faces/resnet8_none/dlg: images 2, annotated 2; recognised, unrecognised -> 0.5, 0.5.
ROWS = [(D1, "a", "A", "3"), (D1, "b", "A", "3"), (D1, "c", "A", "8"),
        (D2, "a", "A", "6"), (D2, "b", "A", "5"), (D2, "c", "A", "3"),
        (D3, "a", "A", "7"), (D3, "b", "A", "1"),
        (F1, "a", "B", "same"), (F1, "b", "B", "same"), (F2, "a", "B", "different")]


def test_items_hand_case():
    T = tasks()
    items = aggregate.aggregate_items(answers(ROWS), T, source="human")
    assert list(items.columns) == list(aggregate.ITEM_COLUMNS)
    got = {r.item_id: (r.annotators, r.recognised, r.majority) for r in items.itertuples()}
    assert got == {D1: (3, 2, "recognised"), D2: (3, 1, "unrecognised"), D3: (2, 1, "tie"), D4: (0, 0, ""),
                   F1: (2, 2, "recognised"), F2: (1, 0, "unrecognised")}
    rate = dict(zip(items.item_id, items.recognised_rate))
    assert rate[D1] == pytest.approx(2 / 3) and rate[D2] == pytest.approx(1 / 3) and rate[D3] == 0.5
    assert math.isnan(rate[D4]) and rate[F1] == 1.0 and rate[F2] == 0.0
    row = items.set_index("item_id").loc[D4]
    assert (row.dataset, row.model, row.attack, row.image_id, row.protocol, row.truth, row.source) == \
        ("digits", "resnet8_none", "idlg", "test-000001", "A", "3", "human")
    # the unannotated item is in the CSV with an empty rate and majority
    csv_text = items.to_csv(index=False)
    assert f"{D4},digits,resnet8_none,idlg,test-000001,A,3,0,0,,,human" in csv_text.splitlines()


def test_sets_hand_case():
    T = tasks()
    items = aggregate.aggregate_items(answers(ROWS), T, source="simulated")
    sets = aggregate.aggregate_sets(items, source="simulated")
    assert list(sets.columns) == list(aggregate.SET_COLUMNS)
    rows = {(r.dataset, r.model, r.attack): r for r in sets.itertuples()}
    dlg = rows[("digits", "resnet8_none", "dlg")]
    assert (dlg.images, dlg.annotated, dlg.recognised_rate, dlg.unrecognised_rate, dlg.source) == \
        (3, 3, 0.5, 0.5, "simulated")
    idlg = rows[("digits", "resnet8_none", "idlg")]
    assert (idlg.images, idlg.annotated) == (1, 0) and math.isnan(idlg.recognised_rate) \
        and math.isnan(idlg.unrecognised_rate)
    faces = rows[("faces", "resnet8_none", "dlg")]
    assert (faces.images, faces.annotated, faces.recognised_rate) == (2, 2, 0.5)


def test_sets_rate_is_over_annotated_images_with_ties_half():
    # 5 images in one set: 2 recognised, 1 unrecognised, 1 tie, 1 unannotated
    # -> annotated 4, recognised_rate (2 + 0.5) / 4 = 0.625, unrecognised_rate 0.375
    items = pd.DataFrame({"dataset": ["d"] * 5, "model": ["m"] * 5, "attack": ["a"] * 5,
                          "annotators": [3, 1, 2, 2, 0],
                          "majority": ["recognised", "recognised", "unrecognised", "tie", ""]})
    s = aggregate.aggregate_sets(items, source="human").iloc[0]
    assert (s.images, s.annotated, s.recognised_rate, s.unrecognised_rate) == (5, 4, 0.625, 0.375)


def test_majority_verdict():
    assert [aggregate.majority_verdict(r, n) for r, n in [(0, 0), (1, 1), (0, 1), (2, 4), (3, 5), (2, 5)]] == \
        ["", "recognised", "unrecognised", "tie", "recognised", "unrecognised"]


def test_verdict_rows_from_paper_folders(tmp_path):
    # D1 recognisable, D3 unrecognisable (answer empty: the release has no class),
    # F2 unrecognisable (answer 'different'). Each one "annotator": paper-release.
    T = tasks()
    root = tmp_path / "tree"
    for folder, item in [("test-000001", D1), ("-test-000003", D3), ("-test-000011", F2)]:
        (root / folder).mkdir(parents=True)
        (root / folder / item_file_name(item)).write_bytes(b"png")
    df = importers.read_paper_folders(root, T)
    assert recognised_flags(df, T).tolist() == [True, False, False]
    full = aggregate.answers_with_recognised(df, T, source="human")
    assert list(full.columns) == ["item_id", "annotator_id", "protocol", "answer", "submitted_at",
                                  "source", "recognised", "verdict"]
    assert full["recognised"].tolist() == [True, False, False]
    items = aggregate.aggregate_items(df, T, source="human").set_index("item_id")
    assert items.loc[D1, "majority"] == "recognised" and items.loc[D3, "majority"] == "unrecognised"
    assert items.loc[D2, "annotators"] == 0
    sets = aggregate.aggregate_sets(items.reset_index(), source="human").set_index(["dataset", "attack"])
    # digits dlg: D1 recognised, D3 unrecognised, D2 unannotated -> 3 images, 2 annotated, rate 0.5
    assert tuple(sets.loc[("digits", "dlg"), ["images", "annotated", "unrecognised_rate"]]) == (3, 2, 0.5)


def test_recognised_is_derived_not_read(tmp_path):
    # a 'recognised' column in the CSV is an extra column: ignored; the answer decides
    T = tasks()
    f = tmp_path / "a.csv"
    f.write_text(f"item_id,annotator_id,protocol,answer,submitted_at,recognised\n{D1},a,A,8,{T0},True\n")
    df = importers.read_csv_answers(f, T)
    assert recognised_flags(df, T).tolist() == [False]


def test_coverage_counts():
    items = aggregate.aggregate_items(answers(ROWS), tasks(), source="human")
    assert aggregate.coverage(items) == {"items": 6, "annotated": 5, "unannotated": 1, "answers": 11,
                                         "annotators_per_item_min": 1, "annotators_per_item_max": 3, "ties": 1}


def test_spread_counts_majority_verdicts_per_backbone():
    items = aggregate.aggregate_items(answers(ROWS), tasks(), source="human")
    sets = aggregate.aggregate_sets(items, source="human")
    got = aggregate.spread(items, sets)
    seen = items[items["annotators"] > 0]
    assert got["majority_recognised_share"] == pytest.approx(float((seen["majority"] == "recognised").mean()), abs=1e-6)
    by = seen.assign(bb=seen["model"].str.split("_").str[0]).groupby("bb")["majority"]
    assert got["majority_recognised_share_by_backbone"] == pytest.approx(
        {b: float((g == "recognised").mean()) for b, g in by}, abs=1e-6)
    assert got["sets"] == len(sets) and got["min_annotated_per_set"] == int(sets["annotated"].min())


def test_bad_source_name():
    with pytest.raises(ValueError, match="source must be one of human, simulated"):
        aggregate.aggregate_items(answers(ROWS), tasks(), source="people")


# ------------------------------------------------------------------------------- agreement

def test_fleiss_wikipedia_example():
    # Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories.
    # P_bar = 0.378, P_e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    k = agreement.fleiss_kappa(table)
    assert k.value == pytest.approx(0.210, abs=5e-4)
    assert k.detail["observed_agreement"] == pytest.approx(0.378, abs=5e-4)
    assert k.detail["chance_agreement"] == pytest.approx(0.213, abs=5e-4)
    assert k.units == 10


def test_krippendorff_textbook_examples():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # values 1-5 with missing data; nominal alpha = 0.743.
    A = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
    B = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
    C = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
    D = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
    a = agreement.krippendorff_alpha_nominal(zip(A, B, C, D))
    assert a.value == pytest.approx(0.743, abs=5e-4)
    assert a.units == 11  # unit 12 has one value: not pairable
    assert a.detail["pairable_values"] == 40
    # same paper: two observers, ten units, binary data: alpha = 0.095
    x = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    y = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert agreement.krippendorff_alpha_nominal(zip(x, y)).value == pytest.approx(0.095, abs=5e-4)
    # NaN marks a missing value too
    assert agreement.krippendorff_alpha_nominal([[1, float("nan"), 1], [0, 0]]).value == 1.0


def test_agreement_hand_case_equal_raters():
    # 3 items x 3 raters, binary (1 = recognised): [1,1,1], [1,1,0], [0,0,0]
    # Fleiss: P_i = 1, (2*1 + 1*0)/(3*2) = 1/3, 1 -> P_bar = 7/9
    #         p_1 = 5/9, p_0 = 4/9 -> P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55
    # Krippendorff: coincidences o_11 = 3 + 1 = 4, o_00 = 3, o_01 = o_10 = 1; n_0 = 4, n_1 = 5, n = 9
    #         alpha = 1 - (n - 1) (o_01 + o_10) / (2 n_0 n_1) = 1 - 8 * 2 / 40 = 0.6
    units = {"i1": [1, 1, 1], "i2": [1, 1, 0], "i3": [0, 0, 0]}
    out = agreement.binary_agreement(units)
    assert out["fleiss_kappa"]["value"] == pytest.approx(0.55)
    assert out["krippendorff_alpha"]["value"] == pytest.approx(0.6)
    assert (out["items_rated"], out["items_with_two_or_more"]) == (3, 3)


def test_agreement_hand_case_variable_raters():
    # i1 [1,1], i2 [1,0,0], i3 [1] (one rater: left out), i4 [0,0,0,0]
    # Fleiss (generalised): P = 1, (0 + 2*1)/(3*2) = 1/3, 1 -> P_bar = 7/9;
    #         p_1 = (2+1+0)/9 = 1/3, p_0 = 2/3 -> P_e = 5/9; kappa = (7/9 - 5/9)/(4/9) = 0.5
    # Krippendorff: o_11 = 2 (i1: 2*1/1), o_00 = 1 (i2: 2*1/2) + 4 (i4: 4*3/3) = 5,
    #         o_01 = o_10 = 1 (i2: 1*2/2); n_0 = 6, n_1 = 3, n = 9
    #         alpha = 1 - 8 * 2 / (2 * 6 * 3) = 1 - 16/36 = 5/9
    units = {"i1": [1, 1], "i2": [1, 0, 0], "i3": [1], "i4": [0, 0, 0, 0]}
    out = agreement.binary_agreement(units)
    assert out["fleiss_kappa"]["value"] == pytest.approx(0.5)
    assert out["fleiss_kappa"]["units"] == 3
    assert out["krippendorff_alpha"]["value"] == pytest.approx(5 / 9)
    assert (out["raters_per_item_min"], out["raters_per_item_max"], out["items_with_two_or_more"]) == (1, 4, 3)


def test_fleiss_equals_textbook_formula_for_constant_raters():
    # with a constant number of raters the generalisation is Fleiss' own formula
    rng = np.random.default_rng(0)
    table = np.array([rng.multinomial(6, [0.5, 0.3, 0.2]) for _ in range(30)])
    N, n = len(table), 6
    p_j = table.sum(0) / (N * n)
    P_i = ((table ** 2).sum(1) - n) / (n * (n - 1))
    want = (P_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum())
    assert agreement.fleiss_kappa(table).value == pytest.approx(want)


def test_agreement_edge_cases():
    # everyone agrees and every rating is "recognised": chance agreement 1 -> undefined
    same = agreement.binary_agreement({"i1": [1, 1], "i2": [1, 1, 1]})
    assert same["fleiss_kappa"]["value"] is None and "one category" in same["fleiss_kappa"]["undefined_because"]
    assert same["krippendorff_alpha"]["value"] is None
    # perfect agreement on varied data -> 1
    perfect = agreement.binary_agreement({"i1": [1, 1], "i2": [0, 0, 0]})
    assert perfect["fleiss_kappa"]["value"] == 1.0 and perfect["krippendorff_alpha"]["value"] == 1.0
    # a single annotator per item: no pairs
    single = agreement.binary_agreement({"i1": [1], "i2": [0]})
    assert single["fleiss_kappa"] == {"value": None, "units": 0, "undefined_because": agreement.NO_PAIRS}
    assert single["krippendorff_alpha"]["undefined_because"] == agreement.NO_PAIRS
    # nothing at all
    empty = agreement.binary_agreement({})
    assert empty["fleiss_kappa"]["value"] is None and empty["items_rated"] == 0
    # systematic disagreement -> negative
    assert agreement.fleiss_kappa([[1, 1], [1, 1], [1, 1]]).value < 0
    with pytest.raises(ValueError):
        agreement.fleiss_kappa([1, 2, 3])


def test_dataset_agreement_from_answers():
    # digits: D1 [1,1,0], D2 [0,1,0], D3 [1,0]; faces: F1 [1,1], F2 [0]
    # digits Krippendorff: o_11 = (D1: 2*1/2) 1 = 1; o_00 = (D2: 2*1/2) 1; o_01 = o_10 =
    #   D1 2*1/2 = 1, D2 1*2/2 = 1, D3 1*1/1 = 1 -> 3 each; n_0 = 1 + 3 = 4, n_1 = 1 + 3 = 4, n = 8
    #   alpha = 1 - 7 * 6 / (2 * 4 * 4) = 1 - 42/32 = -0.3125
    out = agreement.dataset_agreement(answers(ROWS), tasks())
    assert set(out) == {"digits", "faces"}
    assert out["digits"]["krippendorff_alpha"]["value"] == pytest.approx(-0.3125)
    assert out["digits"]["items_rated"] == 3
    # faces: one pairable item, all 'recognised' -> undefined
    assert out["faces"]["fleiss_kappa"]["value"] is None
    # a dataset of the tasks with no answers is reported, not dropped
    only_faces = answers([r for r in ROWS if r[0] in (F1, F2)])
    assert agreement.dataset_agreement(only_faces, tasks())["digits"]["items_rated"] == 0
