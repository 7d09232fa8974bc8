"""Small task sets for the annotation import/aggregation tests.

The real tasks come from tasks.csv (contract 1, read by semsim_study/annotation/tasks.py);
the importers only need objects with its attributes, so the tests build them here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeTask:
    item_id: str
    dataset: str
    model: str
    attack: str
    image_id: str
    protocol: str
    truth: str
    candidates: tuple[str, ...]
    original: str = ""
    reconstruction: str = ""
    attack_status: str = "ok"


def task(item_id: str, protocol: str, truth: str, candidates: tuple[str, ...] | None = None) -> FakeTask:
    dataset, model, attack, image_id = item_id.split("/")
    if candidates is None:
        candidates = ("same", "different") if protocol == "B" else (truth,)
    return FakeTask(item_id, dataset, model, attack, image_id, protocol, truth, candidates,
                    original=f"data/attacks/{dataset}/{attack}/images/{model}/{image_id}_original.png",
                    reconstruction=f"data/attacks/{dataset}/{attack}/images/{model}/{image_id}_reconstruction.png")


# Protocol A: digits, candidates = truth + two confusable classes.
D1 = "digits/resnet8_none/dlg/test-000001"   # truth 3
D2 = "digits/resnet8_none/dlg/test-000002"   # truth 5
D3 = "digits/resnet8_none/dlg/test-000003"   # truth 7
D4 = "digits/resnet8_none/idlg/test-000001"  # truth 3
# Protocol B: faces.
F1 = "faces/resnet8_none/dlg/test-000010"    # identity id07
F2 = "faces/resnet8_none/dlg/test-000011"    # identity id12


def tasks() -> dict[str, FakeTask]:
    items = [
        task(D1, "A", "3", ("8", "3", "5")),
        task(D2, "A", "5", ("5", "6", "3")),
        task(D3, "A", "7", ("1", "7", "9")),
        task(D4, "A", "3", ("3", "8", "9")),
        task(F1, "B", "id07"),
        task(F2, "B", "id12"),
    ]
    return {t.item_id: t for t in items}


def item_file_name(item_id: str, suffix: str = ".png") -> str:
    """File name of a reconstruction in the paper-folder layout (importers.py's docstring): '/' in
    the item id -> '__'."""
    return item_id.replace("/", "__") + suffix
