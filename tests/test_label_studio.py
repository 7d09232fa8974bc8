"""Label Studio both ways: the exported configs and tasks are what Label Studio imports, and its
JSON export of answers to those tasks comes back through the importer with the defaults.

(Label Studio itself is not installed here: its server pins Django and dozens of packages that
clash with the study's lock. The formats follow its documentation: a labelling config whose
$variables name task data keys, dynamic choices from a list of {"value": ...}, and the JSON
export's tasks with annotations, results, completed_by, lead_time and was_cancelled.)
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from semsim_study.annotation import cli, importers
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
    tasks = {"digits": [_task(tmp_path, "digits", i, "A") for i in range(3)],
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
    for protocol, n in (("A", 3), ("B", 2)):
        config = (out / protocol / "label_config.xml").read_text()
        root = ET.fromstring(config)  # well-formed XML
        choices = root.find(".//Choices")
        assert choices.get("name") == "answer" and choices.get("choice") == "single"
        images = {el.get("name") for el in root.iter("Image")}
        assert choices.get("toName") in images
        exported = json.loads((out / protocol / "tasks.json").read_text())
        assert len(exported) == n
        for t in exported:
            data = t["data"]
            assert _variables(config) <= set(data), f"config names data keys the task lacks: {_variables(config) - set(data)}"
            task = tasks[data["item_id"]]
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


def test_served_images_are_referenced_not_embedded(project):
    out = project / "ls"
    assert cli.main(["export-label-studio", "--datasets", "faces", "--out", str(out), "--root", str(project),
                     "--image-url", "/data/local-files/?d=", "--params", str(project / "none.yaml")]) == 0
    data = json.loads((out / "B" / "tasks.json").read_text())[0]["data"]
    assert data["original"].startswith("/data/local-files/?d=data/attacks/faces/") and not (out / "A").exists()


def test_answers_come_back_through_the_importer(project):
    """A Label Studio JSON export of the exported tasks (as Label Studio writes it: task ids, the
    data as imported, expanded users, a skipped task, lead times) imports with the defaults."""
    out = project / "ls"
    cli.main(["export-label-studio", "--datasets", "digits", "faces", "--out", str(out), "--root", str(project),
              "--params", str(project / "none.yaml")])
    tasks = {**read_tasks(project / "data/tasks/digits/tasks.csv"), **read_tasks(project / "data/tasks/faces/tasks.csv")}
    answers = {"A": ["5", "3", "8"], "B": ["same", "different"]}
    export, expected, task_id = [], [], 0
    for protocol in ("A", "B"):
        for k, t in enumerate(json.loads((out / protocol / "tasks.json").read_text())):
            task_id += 1
            anns = []
            for user, answer in ((7, answers[protocol][k]), ({"id": 9, "email": "ann@lab.org"}, answers[protocol][0])):
                anns.append({"id": 100 * task_id + len(anns), "completed_by": user, "was_cancelled": False,
                             "lead_time": 4.5, "created_at": "2026-12-01T10:00:00.000000Z",
                             "updated_at": "2026-12-01T10:00:04.500000Z",
                             "result": [{"id": "x", "from_name": "answer", "to_name": "reconstruction",
                                         "type": "choices", "value": {"choices": [answer]}}]})
                expected.append([t["data"]["item_id"], "7" if user == 7 else "ann@lab.org", protocol, answer])
            anns.append({"id": 999, "completed_by": 11, "was_cancelled": True, "result": []})  # skipped
            export.append({"id": task_id, "data": t["data"], "annotations": anns, "predictions": []})
    path = project / "export.json"
    path.write_text(json.dumps(export))
    df = importers.import_answers("label_studio", [path], tasks)
    got = df[["item_id", "annotator_id", "protocol", "answer"]].values.tolist()
    assert sorted(got) == sorted(expected)
