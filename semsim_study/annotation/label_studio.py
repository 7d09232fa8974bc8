"""Tasks for Label Studio, so a team can collect answers there instead of in the study's own app.

Per protocol, ``export`` writes ``<out>/<A|B>/label_config.xml`` (the labelling interface to
paste into a Label Studio project) and ``<out>/<A|B>/tasks.json`` (the tasks to import), one
task per reconstruction of the named datasets. Each task's ``data`` carries ``item_id``, the
study's id for the reconstruction, which Label Studio keeps in its JSON export, so the
``label_studio`` importer (``annotate.source: label_studio``) reads the answers back with its
defaults (``item_key: item_id``, ``from_name: answer``).

What annotators see matches the web app: protocol A shows the reconstruction alone and offers
its candidate classes (per task: Label Studio's dynamic choices, ``value="$candidates"``);
protocol B shows the original beside the reconstruction and asks same or different. Images are
embedded as PNG data URIs by default (one self-contained file, no storage to configure), or
referenced as ``<image_url><path under the project root>`` when the images are served (e.g.
Label Studio's local-files storage).
"""

from __future__ import annotations

import base64
import json
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


def _image(path: str, root: Path, image_url: str | None) -> str:
    file = root / path
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{file}: image missing (rerun the attack and tasks stages)") from None
    if image_url is not None:
        return image_url + path
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def task_json(task: Task, root: Path, image_url: str | None = None) -> dict:
    """One Label Studio task (``{"data": ...}``) for one reconstruction."""
    data = {"item_id": task.item_id, "dataset": task.dataset, "protocol": task.protocol,
            "question": dataset_question(root / "data" / "tasks" / task.dataset, task.protocol),
            "reconstruction": _image(task.reconstruction, root, image_url)}
    if task.protocol == "A":
        data["candidates"] = [{"value": c} for c in task.candidates]
    else:
        data["original"] = _image(task.original, root, image_url)
    return {"data": data}


def export(tasks: Iterable[Task], out: str | Path, root: str | Path = ".", image_url: str | None = None) -> dict[str, int]:
    """Write the config and the tasks of every protocol present; returns tasks per protocol."""
    by_protocol: dict[str, list[dict]] = {}
    for task in sorted(tasks, key=lambda t: t.item_id):
        by_protocol.setdefault(task.protocol, []).append(task_json(task, Path(root), image_url))
    if not by_protocol:
        raise DataError("no tasks to export (are the datasets' tasks stages run?)")
    for protocol, items in sorted(by_protocol.items()):
        folder = Path(out) / protocol
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(folder / "label_config.xml", label_config(protocol).encode("utf-8"))
        atomic.write_bytes(folder / "tasks.json", (json.dumps(items, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return {p: len(items) for p, items in sorted(by_protocol.items())}
