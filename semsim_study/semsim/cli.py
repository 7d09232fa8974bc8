"""Command line (``semsim``, or ``python -m semsim_study.semsim`` uninstalled): score a folder
of originals against a folder of reconstructions (``semsim pull`` fetches a trained model:
pretrained.py).

    semsim score --model models/semsim/dataset-digits \\
        --originals DIR --reconstructions DIR --out scores.csv

Files are matched by name without extension (``cat.png`` with ``cat.jpg``); with
``--original-suffix``/``--reconstruction-suffix`` a suffix is removed first, so one attack
stage folder (``<id>_original.png``, ``<id>_attacked.png``, ``<id>_reconstruction_<budget>.png``)
is scored one budget at a time: ``--original-suffix _original --reconstruction-suffix
_reconstruction_8``. Every name must have a partner: otherwise the error lists the unmatched
names. The output CSV has columns name,original,reconstruction and the score, ``semsim`` or,
with ``--baseline``, ``ce_distance`` (the column the CE baseline's stage writes); one row per
pair, sorted by name. A model's provenance warning is one ``warning: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import warnings
from pathlib import Path

from .. import atomic
from ..errors import DataError, StudyError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def image_files(folder: str | Path, suffix: str = "") -> dict[str, Path]:
    """{name: path} of the image files in ``folder`` (by extension; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in found:
            raise DataError(f"{folder}: two images named {stem!r} ({found[stem].name}, {path.name})")
        found[stem] = path
    if not found:
        raise DataError(f"{folder}: no image files{f' ending in {suffix!r}' if suffix else ''} "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}){_longer_suffixes(folder, suffix)}")
    return found


def _longer_suffixes(folder: Path, suffix: str) -> str:
    """A hint when names carry ``suffix`` followed by more, as the attack stage's
    ``<id>_reconstruction_<budget>`` do: the full suffixes found, to pick one from."""
    if not suffix:
        return ""
    tails = sorted({p.stem[p.stem.rindex(suffix):] for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and suffix in p.stem})
    if not tails:
        return ""
    shown = ", ".join(tails[:6]) + (f" and {len(tails) - 6} more" if len(tails) > 6 else "")
    return f"; names there end in {shown}: give one of those as the suffix"


def match(originals: dict[str, Path], reconstructions: dict[str, Path], where: tuple[str, str]) -> list[str]:
    """Names present in both; a DataError listing the unmatched names otherwise."""
    only_o = sorted(set(originals) - set(reconstructions))
    only_r = sorted(set(reconstructions) - set(originals))
    if only_o or only_r:
        def show(names: list[str]) -> str:
            return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        parts = []
        if only_o:
            parts.append(f"{len(only_o)} original(s) in {where[0]} without a reconstruction: {show(only_o)}")
        if only_r:
            parts.append(f"{len(only_r)} reconstruction(s) in {where[1]} without an original: {show(only_r)}")
        raise DataError("unmatched names: " + "; ".join(parts))
    return sorted(originals)


def score_column(baseline: bool) -> str:
    """The score's CSV column: the CE baseline's distance is not SemSim, and its stage calls it
    ``ce_distance`` (data/ce_baseline/<name>/scores.csv)."""
    return "ce_distance" if baseline else "semsim"


def _load(model: str | Path, **kwargs):
    """``SemSim.load``, its warnings (the model's provenance) printed as one ``warning: ...`` line
    each on stderr: Python's own format adds the file, line and source text that raised it."""
    from .metric import SemSim

    with warnings.catch_warnings(record=True) as caught:
        metric = SemSim.load(model, **kwargs)
    for w in caught:
        print(f"warning: {' '.join(str(w.message).split())}", file=sys.stderr)
    return metric


def score_folders(model: str, originals: str, reconstructions: str, out: str, baseline: bool = False,
                  original_suffix: str = "", reconstruction_suffix: str = "", batch_size: int = 256,
                  device: str = "cpu") -> int:
    o = image_files(originals, original_suffix)
    r = image_files(reconstructions, reconstruction_suffix)
    names = match(o, r, (originals, reconstructions))
    metric = _load(model, baseline=baseline, device=device, batch_size=batch_size)
    scores = metric.score([o[n] for n in names], [r[n] for n in names]).tolist()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "original", "reconstruction", score_column(baseline)])
    for n, s in zip(names, scores):
        writer.writerow([n, str(o[n]), str(r[n]), f"{s:.6f}"])
    if out == "-":  # the Unix convention: print the CSV
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    else:
        atomic.write_text(out, buf.getvalue())
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semsim",
                                     description="SemSim: privacy leakage of reconstructed images")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score originals against reconstructions matched by file name")
    s.add_argument("--model", required=True, help="a SemSim model folder, e.g. models/semsim/dataset-digits")
    s.add_argument("--originals", required=True, help="folder of original images")
    s.add_argument("--reconstructions", required=True, help="folder of reconstructed images")
    s.add_argument("--out", required=True, help="CSV to write (name,original,reconstruction,semsim; with --baseline the last "
                   "column is ce_distance); - prints it")
    s.add_argument("--baseline", action="store_true", help="use the cross-entropy baseline's features instead (a models/ce_baseline/<name> folder)")
    s.add_argument("--original-suffix", default="", help="suffix removed from original names before matching, e.g. _original")
    s.add_argument("--reconstruction-suffix", default="", help="suffix removed from reconstruction names, e.g. _reconstruction_8 (the attack "
                   "stage's <id>_reconstruction_<budget>)")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    p = sub.add_parser("pull", help="fetch a trained model of the study (md5-checked) from its git repository "
                                    "and DVC remote; prints the model folder")
    p.add_argument("name", help="model name under models/semsim/, e.g. dataset-digits")
    p.add_argument("--repo", default=None, help="git URL or local clone of the study (default: $SEMSIM_REPO)")
    p.add_argument("--rev", default=None, help="git revision (branch, tag, commit); default: the default branch "
                                               "(a local clone: its working tree)")
    p.add_argument("--remote", default=None, help="DVC remote: a name in the repository's .dvc/config, or a URL "
                                                  "or folder (default: the repository's default remote)")
    p.add_argument("--out", default=None, help="put the model folder exactly here (default: the per-user cache, "
                                               "$SEMSIM_CACHE or ~/.cache/semsim-study/models)")
    p.add_argument("--baseline", action="store_true", help="the cross-entropy baseline (models/ce_baseline/NAME)")
    args = parser.parse_args(argv)
    if args.command == "pull":
        return pull_model(args)
    if args.batch_size <= 0:
        parser.error("--batch-size must be positive")
    try:
        n = score_folders(args.model, args.originals, args.reconstructions, args.out, args.baseline,
                          args.original_suffix, args.reconstruction_suffix, args.batch_size, args.device)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"scored {n} pair(s) -> {'standard output' if args.out == '-' else args.out}",
          file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def pull_model(args: argparse.Namespace) -> int:
    """``semsim pull``: the folder's path alone on standard output (for ``--model "$(semsim pull ...)"``),
    what was fetched on standard error."""
    from . import pretrained

    try:
        folder = pretrained.pull(args.name, repo=args.repo, rev=args.rev, remote=args.remote, dest=args.out,
                                 baseline=args.baseline)
        _load(folder, baseline=args.baseline)  # the card and weights load, and any warning is shown (one line)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card = folder / "MODEL_CARD.md"
    print(f"pulled {args.name} (md5-checked against dvc.lock) -> {folder}"
          + (f"; model card: {card}" if card.is_file() else ""), file=sys.stderr)
    print(folder)
    return 0
