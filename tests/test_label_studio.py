"""Label Studio both ways: the exported configs and tasks are what Label Studio imports, and its
JSON export of answers to those tasks comes back through the importer with the defaults.

(Label Studio's server pins Django and dozens of packages that clash with the study's lock, so
these tests follow its formats: a labelling config whose $variables name task data keys, dynamic
choices from a list of {"value": ...}, and the JSON export's tasks with annotations, results,
completed_by, lead_time and was_cancelled. scripts/label_studio_roundtrip.py runs the same round
trip against a real server in its own environment, by hand.)
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from semsim_study.annotation import cli, importers, label_studio
from semsim_study.errors import DataError
from semsim_study.annotation.tasks import Task, read_tasks, write_tasks
from semsim_study.datasets.imaging import save_png


def _task(root: Path, dataset: str, n: int, protocol: str) -> Task:
    folder = root / "data" / "attacks" / dataset / "invgrad" / "images" / "lenet_none"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    image_id = f"test-{n:06d}"
    for kind in ("original", "reconstruction"):
        save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), folder / f"{image_id}_{kind}.png")
    rel = f"data/attacks/{dataset}/invgrad/images/lenet_none/{image_id}"
    candidates = ("3", "5", "8") if protocol == "A" else ("same", "different")
    return Task(f"{dataset}/lenet_none/invgrad/{image_id}", dataset, "lenet_none", "invgrad", image_id, protocol,
                "5" if protocol == "A" else "identity-1", candidates, f"{rel}_original.png",
                f"{rel}_reconstruction.png", "ok")


@pytest.fixture
def project(tmp_path):
    tasks = {"digits": [_task(tmp_path, "digits", i, "A") for i in range(3)] + [_task(tmp_path, "digits", i, "A")
                                                                                for i in range(5, 12)],
             "faces": [_task(tmp_path, "faces", i, "B") for i in range(3, 5)]}
    for ds, ts in tasks.items():
        (tmp_path / "data" / "tasks" / ds).mkdir(parents=True)
        write_tasks(tmp_path / "data" / "tasks" / ds / "tasks.csv", ts)
    return tmp_path


def _variables(config: str) -> set[str]:
    return set(re.findall(r"\$(\w+)", config))


def test_export_writes_configs_and_tasks_label_studio_reads(project):
    out = project / "ls"
    assert cli.main(["export-label-studio", "--datasets", "digits", "faces", "--out", str(out),
                     "--root", str(project), "--params", str(project / "none.yaml")]) == 0
    tasks = {**read_tasks(project / "data/tasks/digits/tasks.csv"), **read_tasks(project / "data/tasks/faces/tasks.csv")}
    for protocol, n in (("A", 10), ("B", 2)):
        config = (out / protocol / "label_config.xml").read_text()
        root = ET.fromstring(config)  # well-formed XML
        choices = root.find(".//Choices")
        assert choices.get("name") == "answer" and choices.get("choice") == "single"
        images = {el.get("name") for el in root.iter("Image")}
        assert choices.get("toName") in images
        exported = json.loads((out / protocol / "tasks.json").read_text())
        assert len(exported) == n
        keys = label_studio.read_map(out / protocol / "task_map.csv")
        assert sorted(keys) == [f"{protocol}-{i:05d}" for i in range(n)] and len(set(keys.values())) == n
        for t in exported:
            data = t["data"]
            assert _variables(config) <= set(data), f"config names data keys the task lacks: {_variables(config) - set(data)}"
            task = tasks[keys[data["task_key"]]]
            # blinded: nothing in the task names the model, the attack or its budget (or the item id)
            text = json.dumps(data)
            assert not any(word in text for word in ("lenet", "invgrad", "@", "item_id", task.image_id)), text[:300]
            assert data["protocol"] == protocol == task.protocol
            png = base64.b64decode(data["reconstruction"].split(",", 1)[1])
            assert png == (project / task.reconstruction).read_bytes()
            if protocol == "A":
                assert choices.get("value") == "$candidates"
                assert [c["value"] for c in data["candidates"]] == list(task.candidates)
                assert "original" not in data  # protocol A: the reconstruction alone, as in the app
            else:
                assert [c.get("value") for c in choices.iter("Choice")] == ["same", "different"]
                assert base64.b64decode(data["original"].split(",", 1)[1]) == (project / task.original).read_bytes()


def test_tasks_come_in_a_seeded_random_order(project):
    orders = {}
    for seed in (0, 0, 1):
        out = project / f"ls-{len(orders)}"
        cli.main(["export-label-studio", "--datasets", "digits", "--out", str(out), "--root", str(project),
                  "--seed", str(seed), "--params", str(project / "none.yaml")])
        keys = label_studio.read_map(out / "A" / "task_map.csv")
        orders[len(orders)] = [keys[t["data"]["task_key"]] for t in json.loads((out / "A" / "tasks.json").read_text())]
    assert orders[0] == orders[1] != orders[2]  # the same seed, the same order; another seed, another
    assert orders[0] != sorted(orders[0]) and sorted(orders[0]) == sorted(orders[2])


def test_served_images_are_copied_under_opaque_names(project):
    out = project / "ls"
    assert cli.main(["export-label-studio", "--datasets", "faces", "--out", str(out), "--root", str(project),
                     "--image-url", "/data/local-files/?d=ls/", "--params", str(project / "none.yaml")]) == 0
    tasks = read_tasks(project / "data/tasks/faces/tasks.csv")
    keys = label_studio.read_map(out / "B" / "task_map.csv")
    for t in json.loads((out / "B" / "tasks.json").read_text()):
        data, key = t["data"], t["data"]["task_key"]
        assert data["original"] == f"/data/local-files/?d=ls/B/images/{key}-original.png"
        assert (out / "B" / "images" / f"{key}-reconstruction.png").read_bytes() == (
            project / tasks[keys[key]].reconstruction).read_bytes()
    assert not (out / "A").exists()


def test_answers_come_back_through_the_importer(project):
    """A Label Studio JSON export of each protocol's blinded tasks (as Label Studio writes it: task
    ids, the data as imported, expanded users, a skipped task, lead times), saved beside the
    export's task map, imports with the defaults; elsewhere it needs task_map."""
    out = project / "ls"
    cli.main(["export-label-studio", "--datasets", "digits", "faces", "--out", str(out), "--root", str(project),
              "--params", str(project / "none.yaml")])
    tasks = {**read_tasks(project / "data/tasks/digits/tasks.csv"), **read_tasks(project / "data/tasks/faces/tasks.csv")}
    answers = {"A": ["5", "3", "8"] * 4, "B": ["same", "different"]}
    expected, paths, task_id = [], [], 0
    for protocol in ("A", "B"):
        keys = label_studio.read_map(out / protocol / "task_map.csv")
        export = []
        for k, t in enumerate(json.loads((out / protocol / "tasks.json").read_text())):
            task_id += 1
            anns = []
            for user, answer in ((7, answers[protocol][k]), ({"id": 9, "email": "ann@lab.org"}, answers[protocol][0])):
                anns.append({"id": 100 * task_id + len(anns), "completed_by": user, "was_cancelled": False,
                             "lead_time": 4.5, "created_at": "2026-12-01T10:00:00.000000Z",
                             "updated_at": "2026-12-01T10:00:04.500000Z",
                             "result": [{"id": "x", "from_name": "answer", "to_name": "reconstruction",
                                         "type": "choices", "value": {"choices": [answer]}}]})
                expected.append([keys[t["data"]["task_key"]], "7" if user == 7 else "ann@lab.org", protocol, answer])
            anns.append({"id": 999, "completed_by": 11, "was_cancelled": True, "result": []})  # skipped
            export.append({"id": task_id, "data": t["data"], "annotations": anns, "predictions": []})
        paths.append(out / protocol / "project-export.json")
        paths[-1].write_text(json.dumps(export))
    df = importers.import_answers("label_studio", paths, tasks)
    got = df[["item_id", "annotator_id", "protocol", "answer"]].values.tolist()
    assert sorted(got) == sorted(expected)

    # the A export moved away from its map: named explicitly it imports, without it the error says what to do
    moved = project / "annotations" / "digits" / "ls.json"
    moved.parent.mkdir(parents=True)
    moved.write_bytes(paths[0].read_bytes())
    digits = {i: t for i, t in tasks.items() if t.dataset == "digits"}
    again = importers.import_answers("label_studio", [moved], digits, task_map=str(out / "A" / "task_map.csv"))
    assert len(again) == 2 * 10
    with pytest.raises(DataError, match=r"ls\.json task #0 \(id 1\): data\.task_key is a blinded task's key, and "
                                        r"no task map was given \(put the export's task_map\.csv beside ls\.json"):
        importers.import_answers("label_studio", [moved], digits)
    with pytest.raises(DataError, match=r"B/task_map\.csv.*not in the task map|is not in the task map"):
        importers.import_answers("label_studio", [moved], digits, task_map=str(out / "B" / "task_map.csv"))
    (project / "bad.csv").write_text("task_key,item\nA-00000,x\n")
    with pytest.raises(DataError, match=r"bad\.csv: expected columns task_key, item_id"):
        label_studio.read_map(project / "bad.csv")


def test_validate_reads_blinded_answers_through_a_named_map(project, capsys):
    out = project / "ls"
    cli.main(["export-label-studio", "--datasets", "faces", "--out", str(out), "--root", str(project),
              "--params", str(project / "none.yaml")])
    export = [{"id": n, "data": t["data"], "annotations": [
        {"id": n, "completed_by": 3, "created_at": "2026-12-01T10:00:00Z",
         "result": [{"type": "choices", "from_name": "answer", "value": {"choices": ["same"]}}]}]}
        for n, t in enumerate(json.loads((out / "B" / "tasks.json").read_text()))]
    answers = project / "answers.json"
    answers.write_text(json.dumps(export))
    args = ["validate", str(answers), "--dataset", "faces", "--root", str(project), "--params", str(project / "none.yaml")]
    assert cli.main(args + ["--task-map", str(out / "B" / "task_map.csv")]) == 0
    assert "valid (label_studio): 2 answers by 1 annotators on 2 items of faces" in capsys.readouterr().out
    assert cli.main(args) != 0
    assert "no task map was given" in capsys.readouterr().err
