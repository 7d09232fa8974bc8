"""Tasks for Label Studio, so a team can collect answers there instead of in the study's own app.

Per protocol, ``export`` writes into ``<out>/<A|B>/``: ``label_config.xml`` (the labelling
interface to paste into a Label Studio project), ``tasks.json`` (the tasks to import), and
``task_map.csv`` (``task_key,item_id``), which stays with the study and is never uploaded.

The tasks are blinded: the study's item ids (``digits/lenet_none/invgrad@200/test-000003``) name
the attacked model, the attack and its budget, and anyone who opens a task's data in Label
Studio would read them. So each task carries only an opaque ``task_key`` (``A-00017``), its
protocol, the question and its images, and the tasks come in a seeded random order (Label
Studio serves them in import order unless told otherwise), so neither position nor key says
which reconstructions belong together. The ``label_studio`` importer
(``annotate.source: label_studio``) turns the keys back into item ids through ``task_map.csv``:
the one beside the export file it reads, or the one ``task_map`` names.

What annotators see matches the web app: protocol A shows the reconstruction alone and offers
its candidate classes (per task: Label Studio's dynamic choices, ``value="$candidates"``);
protocol B shows the original beside the reconstruction and asks same or different. Images are
embedded as PNG data URIs by default (one self-contained file, no storage to configure); with
``image_url`` they are copied to ``<out>/<A|B>/images/<task_key>-<role>.png`` under opaque
names and referenced as ``<image_url><A|B>/images/...``, for a server that serves ``<out>``
(e.g. Label Studio's local-files storage).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from pathlib import Path
from typing import Iterable
from xml.sax.saxutils import quoteattr

from .. import atomic
from ..errors import DataError
from .tasks import PROTOCOL_B_CANDIDATES, Task, dataset_question

FROM_NAME = "answer"  # the choices control; the importer's from_name


def label_config(protocol: str) -> str:
    """The Label Studio labelling config (XML) of one protocol."""
    if protocol == "A":
        body = [
            '  <Image name="reconstruction" value="$reconstruction" zoom="true"/>',
            f'  <Choices name="{FROM_NAME}" toName="reconstruction" choice="single" required="true" '
            'showInline="true" value="$candidates"/>',
        ]
    elif protocol == "B":
        choices = "".join(f'\n    <Choice value={quoteattr(c)}/>' for c in PROTOCOL_B_CANDIDATES)
        body = [
            '  <View style="display: flex; gap: 1em">',
            '    <View><Header value="Original" size="5"/><Image name="original" value="$original"/></View>',
            '    <View><Header value="Reconstruction" size="5"/>'
            '<Image name="reconstruction" value="$reconstruction"/></View>',
            "  </View>",
            f'  <Choices name="{FROM_NAME}" toName="reconstruction" choice="single" required="true" '
            f'showInline="true">{choices}\n  </Choices>',
        ]
    else:
        raise DataError(f"unknown protocol {protocol!r} (expected A or B)")
    return "\n".join(["<View>", '  <Header value="$question"/>', *body, "</View>", ""])


MAP_NAME = "task_map.csv"  # beside each protocol's tasks.json: task_key -> item_id (kept by the study)
BLIND_KEY = "task_key"  # what a blinded task carries in place of its item id
MAP_COLUMNS = (BLIND_KEY, "item_id")


def _image(path: str, root: Path, image_url: str | None, copy_to: Path | None, name: str) -> str:
    file = root / path
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{file}: image missing (rerun the attack and tasks stages)") from None
    if image_url is None:
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    assert copy_to is not None
    atomic.write_bytes(copy_to / "images" / name, data)
    return f"{image_url}{copy_to.name}/images/{name}"


def task_json(task: Task, key: str, root: Path, image_url: str | None = None, copy_to: Path | None = None) -> dict:
    """One blinded Label Studio task (``{"data": ...}``) for one reconstruction: its opaque key,
    never its item id, dataset, model, attack or budget."""
    data = {BLIND_KEY: key, "protocol": task.protocol,
            "question": dataset_question(root / "data" / "tasks" / task.dataset, task.protocol),
            "reconstruction": _image(task.reconstruction, root, image_url, copy_to, f"{key}-reconstruction.png")}
    if task.protocol == "A":
        data["candidates"] = [{"value": c} for c in task.candidates]
    else:
        data["original"] = _image(task.original, root, image_url, copy_to, f"{key}-original.png")
    return {"data": data}


def export(tasks: Iterable[Task], out: str | Path, root: str | Path = ".", image_url: str | None = None,
           seed: int = 0) -> dict[str, int]:
    """Write the config, the blinded tasks (in a random order drawn from ``seed``) and the key map
    of every protocol present; returns tasks per protocol."""
    by_protocol: dict[str, list[Task]] = {}
    for task in sorted(tasks, key=lambda t: t.item_id):
        by_protocol.setdefault(task.protocol, []).append(task)
    if not by_protocol:
        raise DataError("no tasks to export (are the datasets' tasks stages run?)")
    if image_url is not None and not image_url.endswith("/"):
        image_url += "/"
    for protocol, items in sorted(by_protocol.items()):
        order = random.Random(f"label-studio/{seed}/{protocol}").sample(items, len(items))
        keys = [f"{protocol}-{i:05d}" for i in range(len(order))]
        folder = Path(out) / protocol
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / "images", ignore_errors=True)  # images of an earlier export name other tasks
        payload = [task_json(t, k, Path(root), image_url, folder) for t, k in zip(order, keys)]
        mapping = "".join(f"{k},{t.item_id}\n" for k, t in sorted(zip(keys, order)))
        atomic.write_bytes(folder / "label_config.xml", label_config(protocol).encode("utf-8"))
        atomic.write_bytes(folder / MAP_NAME, (",".join(MAP_COLUMNS) + "\n" + mapping).encode("utf-8"))
        atomic.write_bytes(folder / "tasks.json", (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return {p: len(items) for p, items in sorted(by_protocol.items())}


def read_map(path: str | Path) -> dict[str, str]:
    """``task_map.csv`` -> {task_key: item_id}; a missing file, column or repeated key is a
    DataError naming the file (and line)."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or set(MAP_COLUMNS) - set(reader.fieldnames):
                raise DataError(f"{path}: expected columns {', '.join(MAP_COLUMNS)} (the export's {MAP_NAME}), "
                                f"got {reader.fieldnames}")
            out: dict[str, str] = {}
            for n, row in enumerate(reader, start=2):
                key, item = row[BLIND_KEY], row["item_id"]
                if not key or not item:
                    raise DataError(f"{path}:{n}: empty task_key or item_id")
                if key in out:
                    raise DataError(f"{path}:{n}: task_key {key!r} appears twice")
                out[key] = item
    except FileNotFoundError:
        raise DataError(f"{path}: no task map (the {MAP_NAME} written beside the exported tasks.json)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    return out
