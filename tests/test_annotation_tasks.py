"""Annotation tasks: building from attack indexes, the candidate rule, and reading tasks.csv."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from semsim_study.torch_helpers import state_bytes
from semsim_study.annotation import tasks as T
from semsim_study.errors import ConfigError, DataError

from .support.annotation_helpers import CLASSES_A, attack_folder, project, settings

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_a_offers_every_class_when_few(tmp_path):
    built = project(tmp_path, {"toy": "A"})["toy"]
    assert len(built) == 2 * 2 * 3  # attacks x models x images
    for task in built.values():
        assert task.protocol == "A"
        assert sorted(task.candidates) == sorted(CLASSES_A)
        assert T.expected_answer(task) == task.truth
        assert task.reconstruction.startswith("data/attacks/toy/")
        assert (tmp_path / task.reconstruction).is_file() and (tmp_path / task.original).is_file()
    # the order is shuffled per item: the truth is not always in the same place
    positions = {task.candidates.index(task.truth) for task in built.values()}
    assert len(positions) > 1


def test_protocol_b_asks_same_or_different(tmp_path):
    built = project(tmp_path, {"pairs": "B"})["pairs"]
    for task in built.values():
        assert task.candidates == ("same", "different")
        assert T.expected_answer(task) == "same"
        assert task.truth in CLASSES_A


def test_build_is_deterministic_and_seeded(tmp_path):
    labels = [1, 5, 7]
    attack_folder(tmp_path, "toy", "dlg", ["m1"], labels)
    s = settings("toy", "A", attacks=("dlg",))
    a = T.tasks_csv(T.build_tasks(s, CLASSES_A, root=tmp_path))
    b = T.tasks_csv(T.build_tasks(s, CLASSES_A, root=tmp_path))
    c = T.tasks_csv(T.build_tasks(settings("toy", "A", attacks=("dlg",), seed=1), CLASSES_A, root=tmp_path))
    assert a == b
    assert a != c


def test_top_candidates_truth_plus_most_likely():
    probs = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    assert T.top_candidates(probs, truth=0, class_names=list("abcde"), limit=3) == ["a", "b", "d"]
    assert T.top_candidates(probs, truth=1, class_names=list("abcde"), limit=3) == ["b", "d", "e"]


def test_classifier_picks_candidates_when_classes_exceed_limit(tmp_path):
    labels = [0, 4, 9]
    attack_folder(tmp_path, "toy", "dlg", ["m1"], labels)
    seen = {}

    def classifier(images):
        seen["shape"] = images.shape
        probs = np.full((len(images), 12), 0.01)
        probs[:, 2], probs[:, 3], probs[:, 11] = 0.5, 0.3, 0.1  # always likes classes 2, 3, 11
        return probs

    s = settings("toy", "A", attacks=("dlg",), max_candidates=3, candidate_model="m1")
    built = T.build_tasks(s, CLASSES_A, root=tmp_path, classifier=classifier)
    assert seen["shape"] == (3, 32, 32, 3)  # one forward pass per original, uint8 NHWC
    by_image = {t.image_id: t for t in built}
    assert sorted(by_image["test-000000"].candidates) == sorted(["class00", "class02", "class03"])
    assert sorted(by_image["test-000001"].candidates) == sorted(["class04", "class02", "class03"])


def test_real_checkpoint_classifier(tmp_path):
    """The default path: load models/<ds>/<id>.pt with its card and normalise like training."""
    import torch

    from semsim_study import atomic
    from semsim_study.classifiers import backbones

    torch.manual_seed(0)
    model = backbones.build("convnet4", 12, 32)
    (tmp_path / "models" / "toy").mkdir(parents=True)
    (tmp_path / "models" / "toy" / "convnet4_none.pt").write_bytes(state_bytes(model))
    atomic.write_json(tmp_path / "models" / "toy" / "convnet4_none.json",
                      {"backbone": "convnet4", "num_classes": 12, "image_size": 32,
                       "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    attack_folder(tmp_path, "toy", "dlg", ["m1"], [0, 4])
    s = settings("toy", "A", attacks=("dlg",), max_candidates=5, candidate_model="convnet4_none")
    built = T.build_tasks(s, CLASSES_A, root=tmp_path)
    predict, _ = T.load_classifier(tmp_path / "models" / "toy" / "convnet4_none.pt")
    for task in built:
        assert len(task.candidates) == 5 and task.truth in task.candidates
        from semsim_study.datasets.imaging import decode, to_rgb_array

        probs = predict(to_rgb_array(decode(tmp_path / task.original))[None])[0]
        truth = CLASSES_A.index(task.truth)
        assert set(task.candidates) == set(T.top_candidates(probs, truth, CLASSES_A, 5))


def test_build_rejects_bad_index(tmp_path):
    attack_folder(tmp_path, "toy", "dlg", ["m1"], [0, 1])
    index = tmp_path / "data/attacks/toy/dlg/index.csv"
    good = index.read_text()
    with pytest.raises(DataError, match="invgrad/index.csv: missing"):
        T.build_tasks(settings("toy", "A"), CLASSES_A, root=tmp_path)
    index.write_text(good.replace("images/m1/test-000001_reconstruction.png", "../../../../etc/passwd"))
    with pytest.raises(DataError, match=r"index.csv, line 3: reconstruction .* not a relative path"):
        T.build_tasks(settings("toy", "A", attacks=("dlg",)), CLASSES_A, root=tmp_path)
    index.write_text(good.replace(",0,0,", ",12,12,", 1))
    with pytest.raises(DataError, match="line 2: label 12 outside the 12 classes"):
        T.build_tasks(settings("toy", "A", attacks=("dlg",)), CLASSES_A, root=tmp_path)
    (tmp_path / "data/attacks/toy/dlg/images/m1/test-000000_reconstruction.png").unlink()
    index.write_text(good)
    with pytest.raises(DataError, match="line 2: reconstruction image .* is missing"):
        T.build_tasks(settings("toy", "A", attacks=("dlg",)), CLASSES_A, root=tmp_path)


# ----------------------------------------------------------------------------- read_tasks


@pytest.fixture()
def tasks_file(tmp_path) -> Path:
    project(tmp_path, {"toy": "A", "pairs": "B"})
    return tmp_path / "data/tasks/toy/tasks.csv"


def test_round_trip(tasks_file):
    tasks = T.read_tasks(tasks_file)
    assert list(tasks) == [t.item_id for t in tasks.values()]
    T.write_tasks(tasks_file.with_name("copy.csv"), tasks.values())
    assert tasks_file.with_name("copy.csv").read_bytes() == tasks_file.read_bytes()
    header = tasks_file.read_text().splitlines()[0]
    assert header == ",".join(T.TASK_COLUMNS)
    task = next(iter(tasks.values()))
    assert isinstance(task.candidates, tuple)
    with pytest.raises(Exception):
        task.truth = "x"  # frozen


def test_extra_columns_at_the_end_are_allowed(tasks_file):
    lines = tasks_file.read_text().splitlines()
    lines = [lines[0] + ",note"] + [line + ",x" for line in lines[1:]]
    tasks_file.write_text("\n".join(lines) + "\n")
    assert len(T.read_tasks(tasks_file)) == 12


def _corrupt(path: Path, line: int, column: str, value: str) -> None:
    rows = path.read_text().splitlines()
    fields = rows[line - 1].split(",")
    fields[T.TASK_COLUMNS.index(column)] = value
    rows[line - 1] = ",".join(fields)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("line, column, value, message", [
    (3, "protocol", "C", "line 3: protocol 'C'"),
    (2, "truth", "class99", "line 2: truth 'class99' is not among the candidates"),
    (4, "candidates", "class01|class01", "line 4: candidates contain a name twice"),
    (2, "item_id", "toy/m9/dlg/test-000000", "line 2: item_id"),
    (5, "reconstruction", "../secret.png", "line 5: reconstruction '../secret.png' is not a relative path"),
    (5, "original", "/etc/passwd", "line 5: original '/etc/passwd' is not a relative path"),
    (3, "attack_status", "weird", "line 3: attack_status 'weird'"),
    (2, "model", "", "line 2: model is empty"),
])
def test_bad_rows_name_file_and_line(tasks_file, line, column, value, message):
    _corrupt(tasks_file, line, column, value)
    with pytest.raises(DataError, match=message) as err:
        T.read_tasks(tasks_file)
    assert str(tasks_file) in str(err.value)


def test_protocol_b_candidates_are_fixed(tasks_file):
    path = tasks_file.parent.parent / "pairs" / "tasks.csv"
    _corrupt(path, 2, "candidates", "different|same")
    with pytest.raises(DataError, match="line 2: protocol B candidates must be same|different"):
        T.read_tasks(path)


def test_duplicate_item(tasks_file):
    lines = tasks_file.read_text().splitlines()
    tasks_file.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(DataError, match=f"line {len(lines) + 1}: item .* already listed on line 2"):
        T.read_tasks(tasks_file)


def test_bad_files(tmp_path):
    path = tmp_path / "tasks.csv"
    with pytest.raises(DataError, match="missing"):
        T.read_tasks(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        T.read_tasks(path)
    path.write_text("item_id,dataset\n")
    with pytest.raises(DataError, match="line 1: header must start with item_id,dataset,model"):
        T.read_tasks(path)
    path.write_text(",".join(T.TASK_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no tasks"):
        T.read_tasks(path)
    path.write_bytes((",".join(T.TASK_COLUMNS) + "\n").encode() + b"\xff\xfe,x\n")
    with pytest.raises(DataError, match="not UTF-8"):
        T.read_tasks(path)
    path.write_text(",".join(T.TASK_COLUMNS) + "\na,b\n")
    with pytest.raises(DataError, match="line 2: 2 fields, the header has 11"):
        T.read_tasks(path)


# ----------------------------------------------------------------------------- params and stage


def test_from_params(embedded_params):
    meta = {"protocol": "A", "class_names": CLASSES_A[:10]}
    s = T.from_params(embedded_params, "digits", meta)
    assert (s.protocol, s.protocol_source, s.max_candidates, s.candidate_model) == ("A", "prepare", 20, None)
    assert s.attacks == tuple(embedded_params["attacks"])
    p = copy.deepcopy(embedded_params)
    p["annotate"]["max_candidates"] = 5
    # the first listed trained model (resnet8_untrained, listed first, is no classifier)
    assert T.from_params(p, "digits", meta).candidate_model == "lenet_none"
    p["annotate"]["candidate_model"] = {"digits": "convnet4_none"}
    assert T.from_params(p, "digits", meta).candidate_model == "convnet4_none"
    p["annotate"]["candidate_model"] = "resnet8_ats-3-1-7"
    assert T.from_params(p, "digits", meta).candidate_model == "resnet8_ats-3-1-7"
    p["annotate"]["protocols"] = {"digits": "B"}
    s = T.from_params(p, "digits", meta)
    assert (s.protocol, s.protocol_source, s.candidate_model) == ("B", "annotate.protocols", None)
    p["annotate"]["protocols"] = {"digits": "Z"}
    with pytest.raises(ConfigError, match="annotate.protocols.digits"):
        T.from_params(p, "digits", meta)
    p["annotate"]["protocols"] = {}
    p["annotate"]["max_candidates"] = 1
    with pytest.raises(ConfigError, match="at least 2"):
        T.from_params(p, "digits", meta)
    with pytest.raises(ConfigError, match="not listed"):
        T.from_params(embedded_params, "nowhere", meta)


def test_profiles_declare_annotate(embedded_params):
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    for p in (embedded_params, paper):
        assert p["annotate"]["max_candidates"] == 20
        assert p["annotate"]["app"]["host"] == "127.0.0.1"


def test_stage_writes_tasks_and_meta(tmp_path, embedded_params):
    """stages/tasks.py in a small project: same bytes twice, meta.json says how."""
    p = copy.deepcopy(embedded_params)
    p["datasets"], p["attacks"] = ["toy"], ["dlg"]
    p["train"]["datasets"] = {"toy": {"epochs": 1, "batch_size": 4, "models": {"resnet8": ["none"]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    attack_folder(tmp_path, "toy", "dlg", ["resnet8_none"], [0, 3, 11])
    (tmp_path / "data/prepared/toy").mkdir(parents=True)
    (tmp_path / "data/prepared/toy/meta.json").write_text(json.dumps(
        {"name": "toy", "protocol": "A", "class_names": CLASSES_A, "source": {"offline_stand_in": True}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "stages.tasks", "--dataset", "toy"]
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    first = (tmp_path / "data/tasks/toy/tasks.csv").read_bytes()
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    assert (tmp_path / "data/tasks/toy/tasks.csv").read_bytes() == first
    assert len(T.read_tasks(tmp_path / "data/tasks/toy/tasks.csv")) == 3
    meta = json.loads((tmp_path / "data/tasks/toy/meta.json").read_text())
    assert meta["protocol"] == "A" and meta["items"] == 3 and meta["offline_stand_in"] is True
    assert meta["candidate_model"] is None and meta["candidates_rule"] == "every class"
    os.remove(tmp_path / "data/prepared/toy/meta.json")
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: data/prepared/toy/meta.json: missing")
