"""A blind audit by eye of the crowd's verdicts (``audit-sheet``, ``audit-score``).

Why: the correlations the study reports are only as good as the crowd they are measured
against, simulated or paid. A person (or a lab checking its own crowd) judges a small sample
of reconstructions exactly as annotators did, without seeing the crowd's verdict, and the
two are compared.

``make_audit`` samples, per dataset, ``per_dataset`` reconstructions spread as evenly as the
data allow over strata of PSNR band (``BANDS_DB``) x crowd majority (recognised or not), so
that both the easy and the doubtful cases get looked at; it writes numbered, shuffled contact
sheets (PNG and one self-contained HTML page), an answers template, and ``key.json`` with
each number's item, PSNR, band and crowd verdict, plus the population's stratum sizes so
that the score can be weighted back to the whole population. Verdicts, PSNR, models and
attacks appear only in the key. Cells show what annotators were shown (as the app does):
protocol A the reconstruction and the candidate classes, never the original; protocol B the
original beside the reconstruction.

Controls (``originals``, on by default): for every protocol A dataset, each original of the
attack subset appears once as a cell of its own, drawn as a reconstruction is and shuffled among
them, as the app mixes in its gold items. Protocol A asks a person to name the class, so a
reconstruction can only be recognised if its original can: the digits stand-in's 8x8 sevens,
say, read as twos to a person who has never seen them, and every faithful copy of such an original
then counts against the crowd (which learned those originals' classes). The score reports the
eye's reading of the originals per dataset, and the agreement on the items whose original the eye
read (protocol B shows the original beside the reconstruction, so its items always count).

``score_audit`` reads the filled answers, derives "recognised" exactly as for annotators
(``tasks.expected_answer``: the true class, or ``same``; ``?`` counts as not
recognised, a blank as missing) and reports agreement with the crowd's majority overall, per
dataset, per band and per (band, verdict), a confusion table, and the agreement weighted by
each (dataset, band, verdict) stratum's share of the population.

Items the crowd did not annotate, ties and items without a PSNR are left out of the sample
(there is no verdict or band to stratify by) and counted in the key.

Images and candidates come from ``data/tasks/<ds>/tasks.csv`` (the paths the tasks stage
resolved from the attack index files, relative to the project root), so the audit shows what
the app showed; PSNR from ``data/metrics/<ds>/images.csv``; verdicts from
``data/annotations/<ds>/items.csv``.
"""

from __future__ import annotations

import base64
import bisect
import csv
import html
import io
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import atomic
from .. import seeding
from .. import metric_table as MT
from ..datasets.imaging import decode, png_bytes, to_rgb_array
from ..errors import ConfigError, DataError
from .tasks import SEPARATOR, Task, dataset_question, expected_answer, read_tasks

log = logging.getLogger("annotation.audit")

#: PSNR band edges in dB: <12, 12-18, 18-24, 24-30, >=30 (a value on an edge goes up).
BANDS_DB = (12.0, 18.0, 24.0, 30.0)
RECOGNISED, UNRECOGNISED = "recognised", "unrecognised"
VERDICTS = (RECOGNISED, UNRECOGNISED)
CANT_TELL = "?"
MAX_LISTED = 20  # answer problems one error lists before "and N more" (as the importers do)
PSNR = MT.BY_NAME["psnr"].name

KEY_FILE, ANSWERS_FILE, SCORE_FILE, PAGE_FILE, README_FILE = "key.json", "answers.csv", "score.json", "index.html", "README.txt"
ANSWER_COLUMNS = ("number", "dataset", "protocol", "question", "candidates", "answer")
PER_SHEET, SHEET_COLUMNS = 25, 5
IMAGE_PX = 128  # images are drawn at about this size: 16-32 px reconstructions scale up 4-8x
CELL_W, PAD, LINE = 2 * IMAGE_PX + 40, 10, 15  # a cell's width, margins and text line height (px)


# ----------------------------------------------------------------------------- bands


def check_bands(edges: Sequence[float]) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges)
    if not edges or any(not math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"PSNR band edges must be finite and strictly increasing, got {list(edges)}")
    return edges


def band_labels(edges: Sequence[float]) -> list[str]:
    """``<12``, ``12-18``, ..., ``>=30`` for edges (12, 18, ..., 30)."""
    text = [format(e, "g") for e in edges]
    return [f"<{text[0]}"] + [f"{a}-{b}" for a, b in zip(text, text[1:])] + [f">={text[-1]}"]


def band_of(psnr: float, edges: Sequence[float]) -> str:
    return band_labels(edges)[bisect.bisect_right(edges, psnr)]


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Item:
    """One reconstruction the audit may show: its task and what the key records about it."""

    task: Task
    psnr: float
    band: str
    majority: str
    recognised_rate: float
    annotators: int


def _reader(path: Path, required: Sequence[str], hint: str) -> csv.DictReader:
    """A reader over a UTF-8 CSV whose header has the ``required`` columns; errors name the file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {hint}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise DataError(f"{path}, line 1: malformed CSV ({exc})") from None
    absent = [c for c in required if c not in header]
    if absent:
        raise DataError(f"{path}, line 1: missing column(s) {', '.join(absent)} (header: {','.join(header)})")
    return reader


def _csv_rows(path: Path, required: Sequence[str], hint: str) -> Iterator[tuple[int, dict]]:
    """(line, row) of a pipeline CSV with the ``required`` columns; errors name file and line."""
    reader = _reader(path, required, hint)
    try:
        for row in reader:
            if None in row or None in row.values():
                raise DataError(f"{path}, line {reader.line_num}: wrong number of fields")
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None


def read_psnr(path: Path) -> dict[str, float]:
    """item_id -> PSNR (NaN where the metrics stage left the cell empty)."""
    out = {}
    for line, row in _csv_rows(path, ("item_id", PSNR), "run the metrics stage first (dvc repro)"):
        try:
            out[row["item_id"]] = float(row[PSNR]) if row[PSNR].strip() else math.nan
        except ValueError:
            raise DataError(f"{path}, line {line}: {PSNR} {row[PSNR]!r} is not a number") from None
    return out


def read_crowd(path: Path, tasks: Mapping[str, Task]) -> dict[str, tuple[int, float, str]]:
    """item_id -> (annotators, recognised_rate, majority) from the annotate stage's items.csv."""
    out = {}
    for line, row in _csv_rows(path, ("item_id", "annotators", "recognised_rate", "majority"),
                               "run the annotate stage first (dvc repro)"):
        where = f"{path}, line {line}"
        if row["item_id"] not in tasks:
            raise DataError(f"{where}: item {row['item_id']} is not in the dataset's tasks.csv (stale annotations?)")
        try:
            n = int(row["annotators"])
            rate = float(row["recognised_rate"]) if row["recognised_rate"].strip() else math.nan
        except ValueError:
            raise DataError(f"{where}: annotators or recognised_rate is not a number") from None
        if row["majority"] not in (*VERDICTS, "tie", ""):
            raise DataError(f"{where}: majority {row['majority']!r} is not recognised, unrecognised, tie or empty")
        out[row["item_id"]] = (n, rate, row["majority"])
    return out


def read_population(root: Path, dataset: str, edges: Sequence[float]) -> tuple[list[Item], dict[str, int]]:
    """A dataset's items with a crowd verdict and a PSNR, and how many were left out and why."""
    tasks = read_tasks(root / "data" / "tasks" / dataset / "tasks.csv")
    crowd = read_crowd(root / "data" / "annotations" / dataset / "items.csv", tasks)
    psnr = read_psnr(root / "data" / "metrics" / dataset / "images.csv")
    items, left_out = [], {"unannotated": 0, "tie": 0, "no_psnr": 0}
    for item_id, task in tasks.items():
        n, rate, majority = crowd.get(item_id, (0, math.nan, ""))
        value = psnr.get(item_id, math.nan)
        if majority not in VERDICTS:
            left_out["tie" if majority == "tie" else "unannotated"] += 1
        elif not math.isfinite(value):
            left_out["no_psnr"] += 1
        else:
            items.append(Item(task, value, band_of(value, edges), majority, rate, n))
    return items, left_out


# ----------------------------------------------------------------------------- sampling


def allocate(sizes: Mapping[tuple, int], n: int, rng: np.random.Generator) -> dict[tuple, int]:
    """How many of ``n`` draws each stratum gets: as even as the strata's sizes allow.

    Round-robin, one draw at a time, over the strata in a seeded order, skipping full ones;
    so a small stratum gives all it has and the rest spreads over the others.
    """
    keys = sorted(sizes)
    order = [keys[i] for i in rng.permutation(len(keys))]
    take = dict.fromkeys(keys, 0)
    left = min(n, sum(sizes.values()))
    while left:
        for key in order:
            if left and take[key] < sizes[key]:
                take[key] += 1
                left -= 1
    return take


def stratum(item: Item, edges: Sequence[float]) -> tuple[int, str]:
    return band_labels(edges).index(item.band), item.majority


def sample(items: Sequence[Item], n: int, edges: Sequence[float], rng: np.random.Generator) -> list[Item]:
    """``n`` items (or all there are) stratified by PSNR band x crowd verdict, in item order."""
    groups: dict[tuple, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.task.item_id):
        groups.setdefault(stratum(item, edges), []).append(item)
    take = allocate({k: len(v) for k, v in groups.items()}, n, rng)
    chosen = [groups[k][i] for k in sorted(groups) for i in sorted(rng.choice(len(groups[k]), take[k], replace=False))]
    return sorted(chosen, key=lambda i: i.task.item_id)


def population_counts(items: Sequence[Item], edges: Sequence[float]) -> dict[str, dict[str, int]]:
    """band -> verdict -> items, every band and verdict listed (zeros included)."""
    counts = {b: dict.fromkeys(VERDICTS, 0) for b in band_labels(edges)}
    for item in items:
        counts[item.band][item.majority] += 1
    return counts


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """What one numbered cell shows: nothing here may reveal the verdict, PSNR, model or attack."""

    number: int
    dataset: str
    protocol: str
    question: str
    candidates: tuple[str, ...]
    images: tuple[tuple[str, np.ndarray], ...]  # (caption, RGB pixels), as the annotator saw them


def cell_images(task: Task, root: Path) -> tuple[tuple[str, np.ndarray], ...]:
    """Protocol B: the original and the reconstruction; protocol A: the reconstruction only
    (the original would give the answer away, so annotators never see it)."""
    kinds = ("original", "reconstruction") if task.protocol == "B" else ("reconstruction",)
    return tuple((kind, to_rgb_array(decode(root / getattr(task, kind)))) for kind in kinds)


def original_controls(items: Sequence[Item]) -> list[Task]:
    """One task per original of the protocol A items (its first by item id): the control cell shows
    that original where a reconstruction would be, with the task's candidates."""
    first: dict[str, Task] = {}
    for item in sorted(items, key=lambda i: i.task.item_id):
        if item.task.protocol == "A":
            first.setdefault(item.task.image_id, item.task)
    return [first[k] for k in sorted(first)]


def make_control_cell(number: int, task: Task, root: Path) -> Cell:
    """The original, captioned as the reconstruction: nothing tells a control from a study cell."""
    question = dataset_question(root / "data" / "tasks" / task.dataset, task.protocol)
    return Cell(number, task.dataset, task.protocol, question, task.candidates,
                (("reconstruction", to_rgb_array(decode(root / task.original))),))


def make_cell(number: int, item: Item, root: Path) -> Cell:
    task = item.task
    question = dataset_question(root / "data" / "tasks" / task.dataset, task.protocol)
    return Cell(number, task.dataset, task.protocol, question, task.candidates, cell_images(task, root))


def enlarge(pixels: np.ndarray) -> Image.Image:
    """Bilinear upscaling by a whole factor to about IMAGE_PX, as the app's browser draws them
    (``image-rendering: auto``); larger images are shrunk to fit.

    Smooth, not pixelated: blown-up blocks of an inversion's colour noise hide the coarse shape
    a person sees in the same image at its own size (a grid of coins, the loop of a 6), and
    the coarse view is what the simulated observer's ``blur`` models."""
    img = Image.fromarray(pixels)
    side = max(img.size)
    if side <= IMAGE_PX:
        k = max(1, IMAGE_PX // side)
        return img.resize((img.width * k, img.height * k), Image.Resampling.BILINEAR)
    img.thumbnail((IMAGE_PX, IMAGE_PX), Image.Resampling.LANCZOS)
    return img


@lru_cache(maxsize=None)
def font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    """matplotlib's DejaVu Sans (ships with the environment), else Pillow's built-in font."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


def wrap(text: str, fnt: ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and fnt.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


def answer_hint(cell: Cell) -> str:
    if cell.protocol == "A":
        return "Candidates: " + ", ".join(cell.candidates) + f"  (or {CANT_TELL})"
    return "Answer: same / different  (or ?)"


def cell_text(cell: Cell) -> tuple[list[str], list[str]]:
    """The question's and the choices' lines, wrapped to the cell's width."""
    return wrap(cell.question, font(12), CELL_W - 2 * PAD), wrap(answer_hint(cell), font(12), CELL_W - 2 * PAD)


def cell_height(cell: Cell) -> int:
    question, hint = cell_text(cell)
    return PAD + 30 + LINE * len(question) + 4 + IMAGE_PX + LINE + 6 + LINE * len(hint) + PAD


def render_cell(cell: Cell, height: int) -> Image.Image:
    """One cell of a PNG sheet (at least ``cell_height`` tall): number, dataset, question,
    images with captions, the choices."""
    small, big = font(12), font(22, bold=True)
    question, hint = cell_text(cell)
    top = PAD + 30 + LINE * len(question) + 4
    img = Image.new("RGB", (CELL_W, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, CELL_W - 1, height - 1), outline=(150, 150, 150))
    draw.text((PAD, PAD), str(cell.number), fill="black", font=big)
    draw.text((CELL_W - PAD, PAD + 8), cell.dataset, fill=(90, 90, 90), font=small, anchor="ra")
    for i, line in enumerate(question):
        draw.text((PAD, PAD + 30 + LINE * i), line, fill="black", font=small)
    x = PAD
    for caption, pixels in cell.images:
        picture = enlarge(pixels)
        img.paste(picture, (x, top + (IMAGE_PX - picture.height) // 2))
        draw.text((x + picture.width // 2, top + IMAGE_PX + 2), caption, fill=(90, 90, 90), font=small, anchor="ma")
        x += picture.width + 20
    for i, line in enumerate(hint):
        draw.text((PAD, top + IMAGE_PX + LINE + 6 + LINE * i), line, fill=(0, 0, 120), font=small)
    return img


def render_sheet(cells: Sequence[Cell], title: str) -> Image.Image:
    """Cells in a grid of SHEET_COLUMNS, under a title line; a row's cells as tall as its tallest."""
    rows = [cells[i : i + SHEET_COLUMNS] for i in range(0, len(cells), SHEET_COLUMNS)]
    heights = [max(cell_height(c) for c in row) for row in rows]
    width = PAD + SHEET_COLUMNS * (CELL_W + PAD)
    sheet = Image.new("RGB", (width, 40 + sum(h + PAD for h in heights) + PAD), "white")
    ImageDraw.Draw(sheet).text((PAD, PAD), title, fill="black", font=font(16, bold=True))
    y = 40
    for row, h in zip(rows, heights):
        for j, cell in enumerate(row):
            sheet.paste(render_cell(cell, h), (PAD + j * (CELL_W + PAD), y))
        y += h + PAD
    return sheet


# ----------------------------------------------------------------------------- files


INSTRUCTIONS = (
    "Judge each numbered cell as an annotator would, and write your answer in answers.csv "
    "(column 'answer'). Protocol A cells: the class the reconstruction shows, one of the "
    "candidates, or ? if you cannot tell (some cells are controls, judged like every other). "
    "Protocol B cells: 'same' if the reconstruction shows the same one as the original, else "
    "'different' (or ?). Do NOT open key.json before every "
    "answer is written: it holds what the audit compares your answers with. Then run: "
    "python -m semsim_study.annotation audit-score <this folder>"
)


def data_uri(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def page_html(cells: Sequence[Cell], sheets: Sequence[str]) -> str:
    """One self-contained page (images inline) with the same numbered cells as the sheets."""
    parts = []
    for c in cells:
        images = "".join(f'<figure><img alt="{html.escape(cap)}" src="{data_uri(px)}"><figcaption>'
                         f"{html.escape(cap)}</figcaption></figure>" for cap, px in c.images)
        parts.append(f'<section class="cell" id="cell-{c.number}" data-protocol="{c.protocol}">'
                     f'<h2>{c.number} <small>{html.escape(c.dataset)}</small></h2>'
                     f"<p>{html.escape(c.question)}</p><div class=\"images\">{images}</div>"
                     f'<p class="choices">{html.escape(answer_hint(c))}</p></section>')
    links = " ".join(f'<a href="{html.escape(s)}">{html.escape(s)}</a>' for s in sheets)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blind audit sheets</title>
<style>
body{{font-family:sans-serif;margin:1.5em;}} .grid{{display:flex;flex-wrap:wrap;gap:10px;}}
.cell{{border:1px solid #999;padding:8px;width:{CELL_W - 20}px;}} .cell h2{{margin:0;font-size:1.4em;}}
.cell small{{color:#666;font-size:.6em;font-weight:normal;}} .images{{display:flex;gap:12px;}}
figure{{margin:0;text-align:center;}} figcaption{{color:#666;font-size:.8em;}}
img{{width:{IMAGE_PX}px;height:{IMAGE_PX}px;object-fit:contain;image-rendering:auto;}}
.choices{{color:#006;font-size:.85em;}} .warn{{background:#fee;border:1px solid #c66;padding:.5em;}}
</style></head><body>
<h1>Blind audit: {len(cells)} cells</h1>
<p class="warn">{html.escape(INSTRUCTIONS)}</p>
<p>PNG sheets: {links}</p>
<div class="grid">
{chr(10).join(parts)}
</div></body></html>
"""


def answers_template(cells: Sequence[Cell]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ANSWER_COLUMNS)
    for c in cells:
        writer.writerow([c.number, c.dataset, c.protocol, c.question, SEPARATOR.join(c.candidates), ""])
    return buf.getvalue()


CONTROL = "original"  # the key's ``control`` value of a control cell


def control_entry(number: int, task: Task) -> dict:
    return {"number": number, "control": CONTROL, "dataset": task.dataset, "protocol": task.protocol,
            "image_id": task.image_id, "truth": task.truth, "candidates": list(task.candidates)}


def key_entry(number: int, item: Item) -> dict:
    t = item.task
    return {"number": number, "item_id": t.item_id, "image_id": t.image_id, "dataset": t.dataset,
            "protocol": t.protocol, "truth": t.truth, "candidates": list(t.candidates), "psnr": round(item.psnr, 6),
            "band": item.band, "majority": item.majority, "recognised_rate": round(item.recognised_rate, 6),
            "annotators": item.annotators}


def filled_answers(folder: Path) -> bool:
    """Whether ``folder`` holds an answers.csv with at least one answer written in it."""
    try:
        rows = list(csv.DictReader(io.StringIO((folder / ANSWERS_FILE).read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error):
        return (folder / ANSWERS_FILE).exists()  # unreadable: assume someone's work is in it
    return any((row.get("answer") or "").strip() for row in rows)


def check_out_folder(out: Path, force: bool) -> None:
    """Refuse to replace a folder that is not an audit, or one whose answers are filled in."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if any(out.iterdir()) and not (out / KEY_FILE).exists():
        raise ConfigError(f"{out}: not empty and not an audit folder (no {KEY_FILE}); choose another --out")
    if filled_answers(out) and not force:
        raise ConfigError(f"{out / ANSWERS_FILE}: has answers filled in; pass --force to replace the audit")


def write_folder(out: Path, cells: Sequence[Cell], key: Mapping, per_sheet: int) -> None:
    """The sheets, the page, the answers template, the instructions and the key, swapped in whole."""
    with atomic.build_dir(out) as tmp:
        sheets, count = [], math.ceil(len(cells) / per_sheet)
        for k, s in enumerate(range(0, len(cells), per_sheet), start=1):
            part = cells[s : s + per_sheet]
            title = (f"Blind audit, sheet {k} of {count}: cells {part[0].number}-{part[-1].number} of {len(cells)}. "
                     f"Answers go in {ANSWERS_FILE}; do not open {KEY_FILE} before judging.")
            sheets.append(f"sheet-{k:02d}.png")
            render_sheet(part, title).save(tmp / sheets[-1], format="PNG", optimize=False)
        (tmp / PAGE_FILE).write_text(page_html(cells, sheets), encoding="utf-8")
        (tmp / ANSWERS_FILE).write_text(answers_template(cells), encoding="utf-8")
        (tmp / README_FILE).write_text(INSTRUCTIONS + "\n", encoding="utf-8")
        (tmp / KEY_FILE).write_text(atomic.dumps_json(key), encoding="utf-8")


def make_audit(root: str | Path, datasets: Sequence[str], per_dataset: int, out: str | Path, *, seed: int = 0,
               edges: Sequence[float] = BANDS_DB, per_sheet: int = PER_SHEET, force: bool = False,
               originals: bool = True) -> dict:
    """Sample, number and write an audit folder; returns its key. ``originals``: add the control
    cells (every protocol A original, shown as a reconstruction)."""
    root, out, edges = Path(root), Path(out), check_bands(edges)
    if per_dataset < 1 or per_sheet < 1:
        raise ConfigError(f"--per-dataset and --per-sheet must be at least 1, got {per_dataset} and {per_sheet}")
    if not datasets or len(set(datasets)) != len(datasets):
        raise ConfigError(f"datasets must be given, each once, got {list(datasets)}")
    check_out_folder(out, force)
    chosen, population, controls = [], {}, []
    for ds in datasets:
        items, left_out = read_population(root, ds, edges)
        if originals:
            controls += original_controls(items)
        picked = sample(items, per_dataset, edges, seeding.rng(seed, ds))
        if len(picked) < per_dataset:
            log.warning("%s: only %d items with a crowd verdict and a PSNR (asked for %d)", ds, len(picked), per_dataset)
        population[ds] = {"strata": population_counts(items, edges), "left_out": left_out}
        chosen += picked
    if not chosen:
        raise DataError(f"no item of {', '.join(datasets)} has both a crowd verdict and a PSNR: nothing to audit")
    chosen.sort(key=lambda i: i.task.item_id)
    shown: list[Item | Task] = [*chosen, *controls]  # items, then controls (each list in a fixed order)
    order = seeding.rng(seed, b"audit order").permutation(len(shown))
    numbered = [(n, shown[i]) for n, i in enumerate(order, start=1)]
    key = {"datasets": list(datasets), "per_dataset": per_dataset, "seed": seed, "bands_db": list(edges),
           "bands": band_labels(edges), "population": population, "originals": bool(originals),
           "items": [key_entry(n, x) if isinstance(x, Item) else control_entry(n, x) for n, x in numbered]}
    cells = [make_cell(n, x, root) if isinstance(x, Item) else make_control_cell(n, x, root) for n, x in numbered]
    write_folder(out, cells, key, per_sheet)
    return key


# ----------------------------------------------------------------------------- scoring


def read_key(folder: Path) -> dict:
    key = atomic.read_json(folder / KEY_FILE, "no audit key here; make the folder with audit-sheet")
    if not isinstance(key, dict) or not isinstance(key.get("items"), list) or "population" not in key:
        raise DataError(f"{folder / KEY_FILE}: not an audit key (no items or population)")
    return key


def canonical_answer(answer: str, entry: Mapping) -> str | None:
    """The answer as a candidate's exact name (case and spaces forgiven), ``?``, or None if invalid."""
    choices = (*(entry["candidates"]), CANT_TELL)
    folded = {c.casefold(): c for c in choices}
    return folded.get(answer.strip().casefold())


def read_answers(path: Path, entries: Mapping[int, Mapping]) -> dict[int, str]:
    """number -> answer (canonical; "" when left blank). Every problem, with its line, in one DataError."""
    reader = _reader(path, ("number", "answer"), f"fill in the audit's {ANSWERS_FILE}")
    problems, answers, lines = [], {}, {}
    try:
        for row in reader:
            line, number = reader.line_num, (row.get("number") or "").strip()
            problem = answer_problem(row, number, entries, lines)
            if problem:
                problems.append(f"{path}, line {line}: {problem}")
                continue
            entry, raw = entries[int(number)], (row["answer"] or "").strip()
            answers[int(number)] = "" if not raw else canonical_answer(raw, entry)
            lines[int(number)] = line
    except csv.Error as exc:
        problems.append(f"{path}, line {reader.line_num}: malformed CSV ({exc})")
    if problems:
        more = f"\n... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{len(problems)} problem(s) in the answers:\n" + "\n".join(problems[:MAX_LISTED]) + more)
    return answers


def answer_problem(row: dict, number: str, entries: Mapping[int, Mapping], lines: Mapping[int, int]) -> str | None:
    """What is wrong with one answers row, or None."""
    if None in row or None in row.values():
        return "wrong number of fields"
    if not number.isdigit() or int(number) not in entries:
        return f"number {number!r} is not a cell of this audit"
    entry = entries[int(number)]
    if int(number) in lines:
        return f"cell {number} already answered on line {lines[int(number)]}"
    if row.get("dataset") and row["dataset"].strip() != entry["dataset"]:
        return f"cell {number} is a {entry['dataset']} cell, the row says {row['dataset']!r} (another audit's answers?)"
    raw = (row["answer"] or "").strip()
    if raw and canonical_answer(raw, entry) is None:
        allowed = ", ".join(entry["candidates"])
        return f"cell {number}: answer {raw!r} is not one of {allowed} or {CANT_TELL}"
    return None


def recognised_by_eye(answer: str, entry: Mapping) -> bool:
    """As for annotators: the answer equals the expected one (true class, or ``same``)."""
    return answer == expected_answer(SimpleNamespace(protocol=entry["protocol"], truth=entry["truth"]))


@dataclass(frozen=True)
class Judged:
    dataset: str
    band: str
    crowd: str
    eye: str
    original: str = ""  # the original's image id

    @property
    def agree(self) -> bool:
        return self.crowd == self.eye


def tally(rows: Sequence[Judged]) -> dict:
    agree = sum(r.agree for r in rows)
    return {"answered": len(rows), "agree": agree, "agreement": round(agree / len(rows), 6) if rows else None}


def weighted(rows: Sequence[Judged], population: Mapping, datasets: Sequence[str]) -> dict:
    """Agreement weighted back to the population: each (dataset, band, verdict) stratum's sample
    agreement counts by the stratum's population size. Strata with no answered cell cannot be
    estimated; ``population_covered`` is the share of the population in the strata that can."""
    by: dict[tuple, list[Judged]] = {}
    for r in rows:
        by.setdefault((r.dataset, r.band, r.crowd), []).append(r)
    total = covered = mass = 0.0
    for ds in datasets:
        for band, verdicts in population[ds]["strata"].items():
            for verdict, size in verdicts.items():
                total += size
                sampled = by.get((ds, band, verdict))
                if sampled:
                    covered += size
                    mass += size * sum(r.agree for r in sampled) / len(sampled)
    return {"agreement": round(mass / covered, 6) if covered else None,
            "population_covered": round(covered / total, 6) if total else None, "population": int(total)}


def score_audit(folder: str | Path, answers_path: str | Path | None = None) -> dict:
    """Compare filled answers with the crowd; write ``score.json`` in the folder and return it."""
    folder = Path(folder)
    key = read_key(folder)
    entries = {int(e["number"]): e for e in key["items"]}
    answers = read_answers(Path(answers_path) if answers_path else folder / ANSWERS_FILE, entries)
    missing = sorted(n for n in entries if not answers.get(n))
    study = {n: e for n, e in sorted(entries.items()) if "control" not in e}
    rows = [Judged(e["dataset"], e["band"], e["majority"],
                   RECOGNISED if recognised_by_eye(answers[n], e) else UNRECOGNISED, _image_id(e))
            for n, e in study.items() if answers.get(n)]
    datasets = key["datasets"]
    controls = {(e["dataset"], e["image_id"]): recognised_by_eye(answers[n], e)
                for n, e in sorted(entries.items()) if "control" in e and answers.get(n)}
    readable = [r for r in rows if controls.get((r.dataset, r.original), True)]
    out = {"cells": len(study), "answered": len(rows), "controls": len(entries) - len(study),
           "controls_answered": len(controls), "missing": len(missing), "missing_numbers": missing,
           **{k: v for k, v in tally(rows).items() if k != "answered"},
           "weighted": weighted(rows, key["population"], datasets),
           "by_dataset": {ds: {**tally([r for r in rows if r.dataset == ds]),
                               "weighted": weighted([r for r in rows if r.dataset == ds], key["population"], [ds])}
                          for ds in datasets},
           "by_band": {b: tally([r for r in rows if r.band == b]) for b in key["bands"]},
           "by_band_verdict": {b: {v: tally([r for r in rows if r.band == b and r.crowd == v]) for v in VERDICTS}
                               for b in key["bands"]},
           "confusion": {f"eye_{e}": {f"crowd_{c}": sum(r.eye == e and r.crowd == c for r in rows) for c in VERDICTS}
                         for e in VERDICTS},
           "bands": key["bands"], "seed": key.get("seed"),
           "originals": {ds: _originals_read(controls, ds) for ds in datasets if any(k[0] == ds for k in controls)},
           "readable": {**tally(readable), "by_dataset": {ds: tally([r for r in readable if r.dataset == ds])
                                                          for ds in datasets}}}
    atomic.write_json(folder / SCORE_FILE, out)
    return out


def _image_id(entry: Mapping) -> str:
    """An item's original (keys written before the controls existed: the item id's last part)."""
    return entry.get("image_id") or str(entry["item_id"]).rsplit("/", 1)[-1]


def _originals_read(controls: Mapping[tuple[str, str], bool], dataset: str) -> dict:
    """How many of a dataset's answered control originals the eye named correctly, and which not."""
    mine = {image: ok for (ds, image), ok in controls.items() if ds == dataset}
    read = sum(mine.values())
    return {"answered": len(mine), "read": read, "rate": round(read / len(mine), 6),
            "not_read": sorted(image for image, ok in mine.items() if not ok)}


def summary(score: Mapping) -> str:
    """The score as a few lines for the terminal."""
    def pct(t: Mapping) -> str:
        return "-" if t["agreement"] is None else f"{t['agreement']:.3f} ({t['agree']}/{t['answered']})"

    w = score["weighted"]
    controls = f" and {score['controls_answered']} of {score['controls']} controls" if score.get("controls") else ""
    lines = [f"{score['answered']} of {score['cells']} cells{controls} answered ({score['missing']} missing)",
             f"agreement with the crowd: {pct(score)}",
             *([("originals named by eye (controls): " + ", ".join(
                 f"{ds} {o['read']}/{o['answered']}" + (f" (not: {' '.join(o['not_read'])})" if o["not_read"] else "")
                 for ds, o in score["originals"].items())),
                f"agreement where the eye named the original: {pct(score['readable'])}; "
                + ", ".join(f"{ds} {pct(t)}" for ds, t in score["readable"]["by_dataset"].items())]
               if score.get("originals") else []),
             "weighted to the population: " + ("-" if w["agreement"] is None else
                                               f"{w['agreement']:.3f} (strata holding {w['population_covered']:.0%} of "
                                               f"{w['population']} items)"),
             "by dataset: " + ", ".join(f"{ds} {pct(t)}" for ds, t in score["by_dataset"].items()),
             "by PSNR band (dB): " + (", ".join(f"{b} {pct(t)}" for b, t in score["by_band"].items() if t["answered"])
                                      or "-"),
             "confusion (by eye x crowd): " + "; ".join(f"{e}: " + ", ".join(f"{c} {n}" for c, n in row.items())
                                                        for e, row in score["confusion"].items())]
    return "\n".join(lines)
