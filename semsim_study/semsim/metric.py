"""SemSim as a metric people can use, the lpips way: a torch module loaded with its card.

    from semsim_study import SemSim
    metric = SemSim.load("models/semsim/dataset-digits")      # folder, semsim.pt or semsim.json
    d = metric(x, y)                   # (N,3,H,W) in [-1, 1], as lpips.LPIPS -> (N,)
    d = metric(x, y, normalize=True)   # (N,3,H,W) in [0, 1], as lpips' and torchmetrics' flag
    d = metric.score(originals, reconstructions)              # files or [0, 1] tensors, batched, no grad
    # d[i] = || e(x_i) - e(x^_i) ||_2 of L2-normalised embeddings, in [0, 2]; larger = less leakage

``metric(x, y)`` is differentiable with respect to both inputs (use it as a loss or in an
attack); ``.to(device)`` moves it like any module. Its inputs follow lpips and torchmetrics:
``normalize=False`` (the default) reads float images in [-1, 1], ``normalize=True`` in [0, 1];
uint8 tensors are pixel values 0..255 either way (torchvision's scaling); one channel is grey;
a batch of one broadcasts against the other side; values a little out of range (up to
``preprocess.TOLERANCE`` of it) are clamped. ``score`` and ``embed`` take files, so their
tensors are read like decoded files: [0, 1] (or uint8), with no flag. A malformed tensor is an
``InputError``, which is a ``ValueError`` too. ``SemSimMetric`` (torchmetric.py) accumulates
scores over batches, the torchmetrics way. Loading a model that was trained on simulated
annotators or on offline stand-in data warns once, naming which.

A model folder holds ``semsim.pt`` (the embedding net's state dict) and ``semsim.json`` (the
card: backbone, input size, normalisation, alpha, what it was trained on). The paper's
cross-entropy baseline has folders of the same form under models/ce_baseline/, holding
``ce_baseline.pt``; load them with ``baseline=True``. Weights load with
``torch.load(..., weights_only=True)``; the card is validated before they are read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from .. import atomic
from ..decimals import distinct_pair
from ..errors import DataError, InputError
from ..torch_helpers import fill, load_state
from . import embedding_nets, preprocess
from .loss import distance

CARD_NAME = "semsim.json"
CARD_FORMAT = "semsim-card"
CARD_VERSION = 1
WEIGHTS = {"semsim": "semsim.pt", "ce_baseline": "ce_baseline.pt"}

Images = Union[torch.Tensor, Sequence[Union[str, Path]]]


def _number_list(value, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def validate_card(card: object, where: str) -> dict:
    """Check the keys scoring depends on; a DataError names the card and the key at fault."""
    if not isinstance(card, dict):
        raise DataError(f"{where}: a SemSim card must be a JSON object")

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise DataError(f"{where}: card key '{key}' must be {what}, got {card.get(key, '<missing>')!r}")

    need("format", card.get("format") == CARD_FORMAT, repr(CARD_FORMAT))
    need("format_version", card.get("format_version") == CARD_VERSION, str(CARD_VERSION))
    nets = embedding_nets.BACKBONES
    need("backbone", card.get("backbone") in nets, f"one of {', '.join(sorted(nets))}")
    for key in ("input_size", "embedding_dim"):
        v = card.get(key)
        need(key, isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
    norm = card.get("normalization")
    need("normalization", isinstance(norm, dict) and _number_list(norm.get("mean"), 3)
         and _number_list(norm.get("std"), 3) and all(s > 0 for s in norm["std"]),
         "an object with 3-number 'mean' and positive 3-number 'std'")
    need("embedding_normalized", card.get("embedding_normalized") is True, "true")
    need("standardise_input", isinstance(card.get("standardise_input", False), bool), "true or false (or absent)")
    weights = card.get("weights")
    need("weights", isinstance(weights, dict) and any(isinstance(weights.get(k), str) for k in WEIGHTS)
         and all(isinstance(v, str) and "/" not in v and "\\" not in v for v in weights.values()),
         f"an object naming weight files in the model folder (one of {', '.join(WEIGHTS)})")
    return card


def channel_weights(card: dict) -> bool:
    """Whether the card's net carries learned channel weights (recipe ``trainable: channel_weights``)."""
    trainable = card.get("trainable")
    return isinstance(trainable, dict) and trainable.get("mode") == "channel_weights"


def _resolve(path: str | Path) -> tuple[Path, Path]:
    """(model folder, card path) from a folder, its card or one of its weight files."""
    path = Path(path)
    if path.is_dir():
        return path, path / CARD_NAME
    if path.suffix == ".json":
        return path.parent, path
    if path.suffix == ".pt":
        return path.parent, path.parent / CARD_NAME
    if not path.exists():
        raise DataError(f"{path}: SemSim model not found (give a model folder such as models/semsim/dataset-digits)")
    raise DataError(f"{path}: not a SemSim model folder, card (.json) or weight file (.pt)")


def provenance_warning(card: dict) -> str | None:
    """What a user should know before trusting a model's scores as human-like, or None."""
    issues = []
    if card.get("simulated_annotations"):
        issues.append("simulated annotators (not people)")
    stand_ins = sorted(name for name, d in (card.get("datasets") or {}).items()
                       if isinstance(d, dict) and d.get("offline_stand_in"))
    if stand_ins or (card.get("offline_stand_in") and not stand_ins):
        issues.append("offline stand-in data" + (f" ({', '.join(stand_ins)})" if stand_ins else ""))
    if not issues:
        return None
    what = "SemSim model" if card.get("model", "semsim") == "semsim" else "CE-baseline model"
    return f"this {what} was trained on {' and on '.join(issues)}; see its MODEL_CARD.md before relying on it"


def heldout_warning(card: dict) -> str | None:
    """One line when the card's held-out results say training made the model worse than its own
    untrained network (all pairs or PSNR-matched pairs), naming both accuracies; else None."""
    results = card.get("heldout_results") or {}
    lost = []
    for suffix, pairs in (("", "all pairs"), ("_matched", "PSNR-matched pairs")):
        trained = results.get(f"heldout_triplet_accuracy{suffix}")
        untrained = results.get(f"heldout_triplet_accuracy_random_init{suffix}")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v for v in (trained, untrained)) \
                and trained < untrained:
            a, b = distinct_pair(trained, untrained, 3, 6, signed=False)
            gain_ci = results.get(f"heldout_gain_over_random_init{suffix}_ci")
            noise = (" (within resampling noise: paired 95% interval of the difference "
                     f"[{gain_ci[0]:+.4f}, {gain_ci[1]:+.4f}])") if gain_ci and gain_ci[0] <= 0 <= gain_ci[1] else ""
            lost.append(f"{a} trained vs {b} untrained on {pairs}{noise}")
    if not lost:
        return None
    return (f"on its held-out data it does worse than its own untrained network (triplet accuracy "
            f"{'; '.join(lost)}): prefer the untrained control or treat its scores with care")


_WARNED: set[str] = set()


class SemSim(nn.Module):
    """A trained embedding net and its card. ``forward(x, y)``: SemSim distances of image pairs
    (differentiable); ``score``: the same for files or large tensors, batched and without grad."""

    def __init__(self, net: embedding_nets.EmbeddingNet, card: dict, device: str = "cpu", batch_size: int = 256):
        super().__init__()
        self.card = validate_card(card, "SemSim card")
        self.net = net
        self.batch_size = int(batch_size)
        self.input_size = int(card["input_size"])
        self.register_buffer("mean", torch.tensor([float(v) for v in card["normalization"]["mean"]]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in card["normalization"]["std"]]).view(1, 3, 1, 1),
                             persistent=False)
        self.to(device).eval()

    def train(self, mode: bool = True) -> "SemSim":
        """A metric stays frozen whatever its parent does: a parent's ``.train()`` must not put the
        embedding net's BatchNorm layers into training mode, where a forward pass would update
        their running statistics and change every later score (lpips' nets have no such layers)."""
        super().train(mode)
        self.net.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @classmethod
    def load(cls, path: str | Path, baseline: bool = False, device: str = "cpu", batch_size: int = 256) -> "SemSim":
        """Load a model folder (or its card/weight file); ``baseline=True`` loads the CE baseline."""
        folder, card_path = _resolve(path)
        card = validate_card(atomic.read_json(card_path, "SemSim card missing (is this a SemSim model folder?)"),
                             str(card_path))
        which = "ce_baseline" if baseline else "semsim"
        if which not in card["weights"]:
            raise DataError(f"{card_path}: this model has no {which} weights")
        weights = folder / card["weights"][which]
        state = load_state(weights, str(weights), "SemSim weight file missing (rerun the semsim stage)")
        net = fill(embedding_nets.build(card["backbone"], channel_weights(card), card.get("standardise_input") is True),
                   state, str(weights), f"backbone {card['backbone']!r}")
        if net.out_dim != card["embedding_dim"]:
            raise DataError(f"{card_path}: embedding_dim {card['embedding_dim']} but {card['backbone']} gives {net.out_dim}")
        net.requires_grad_(False)  # a metric, not a model to train: gradients reach the inputs only (as lpips)
        message = "; ".join(m for m in (provenance_warning(card), heldout_warning(card)) if m)
        if message and str(card_path.resolve()) not in _WARNED:
            _WARNED.add(str(card_path.resolve()))
            warnings.warn(f"{card_path}: {message}", UserWarning, stacklevel=2)
        return cls(net, card, device=device, batch_size=batch_size)

    @classmethod
    def from_pretrained(cls, name: str, repo: str | Path | None = None, rev: str | None = None,
                        remote: str | Path | None = None, cache_dir: str | Path | None = None,
                        baseline: bool = False, device: str = "cpu", batch_size: int = 256) -> "SemSim":
        """A trained model of the study by name (``dataset-digits``): fetched from the project's git
        repository and DVC remote at ``rev``, md5-checked against dvc.lock, cached per user, then
        loaded; ``.folder`` is where it (and its MODEL_CARD.md) lies. See ``pretrained.pull``."""
        from . import pretrained  # needs DVC (the study extra); the metric alone does not

        folder = pretrained.pull(name, repo=repo, rev=rev, remote=remote, cache_dir=cache_dir, baseline=baseline)
        model = cls.load(folder, baseline=baseline, device=device, batch_size=batch_size)
        model.folder = folder
        return model

    # -- the module -----------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, normalize: bool) -> torch.Tensor:
        """Checked images -> the net's input: [0, 1] RGB on the module's device, resized, normalised."""
        x = preprocess.to_unit(x.to(self.device), signed=not normalize, dtype=self.mean.dtype)
        return self._normalise_input(preprocess.resize(x, self.input_size))

    def _normalise_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std  # the card's mean and std, kept as the module's buffers

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """SemSim(x_i, y_i) for each pair: (N,) on the module's device, differentiable in x and y.

        Read as ``lpips.LPIPS`` and torchmetrics read their inputs: float (N, 3, H, W) in [-1, 1],
        or in [0, 1] with ``normalize=True``; uint8 tensors are pixel values 0..255 either way.
        (N, 1, H, W) is grey, repeated to RGB; a batch of one on either side is compared with every
        image on the other. Values up to ``preprocess.TOLERANCE`` of the range outside it are
        clamped; anything else is an ``InputError`` (a ``ValueError``)."""
        for images, what in ((x, "x"), (y, "y")):
            preprocess.check_images(images, what, signed=not normalize, flag=True)
        n, m = x.shape[0], y.shape[0]
        if n != m and 1 not in (n, m):
            raise InputError(f"x holds {n} image(s) but y holds {m}: SemSim scores pairs (give equal batches, "
                             "or a batch of one to compare with every image of the other)")
        # a batch of one is embedded once; distance() broadcasts its embedding against the other side
        return distance(self.net(self._prepare(x, normalize)), self.net(self._prepare(y, normalize)))

    # -- inputs -------------------------------------------------------------------------------
    def _batches(self, images: Images, what: str):
        """Yield float [0,1] NCHW chunks of at most batch_size images, resized to the input size.
        Tensors are read as [0, 1] (uint8: 0..255), like the decoded files beside them."""
        if isinstance(images, torch.Tensor):
            preprocess.check_images(images, what)
            for i in range(0, len(images), self.batch_size):
                yield preprocess.resize(preprocess.to_unit(images[i : i + self.batch_size]), self.input_size)
            return
        if isinstance(images, (str, Path)):
            raise InputError(f"{what}: expected a list of image files or a tensor, got a single path {str(images)!r}")
        paths = list(images)
        for i in range(0, len(paths), self.batch_size):
            chunk = [preprocess.resize(preprocess.uint8_to_float(preprocess.load_rgb(p)[None]), self.input_size)
                     for p in paths[i : i + self.batch_size]]
            yield torch.cat(chunk) if chunk else torch.zeros(0, 3, self.input_size, self.input_size)

    # -- outputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, images: Images) -> torch.Tensor:
        """L2-normalised embeddings (N, embedding_dim) of files or [0, 1] tensors, on the CPU."""
        out = [self.net.embed(self._normalise_input(x.to(self.device))).cpu() for x in self._batches(images, "images")]
        return torch.cat(out) if out else torch.zeros(0, self.card["embedding_dim"])

    @torch.no_grad()
    def score(self, originals: Images, reconstructions: Images) -> torch.Tensor:
        """SemSim(x, x^) for each pair of files (or tensors in [0, 1], or uint8), in batches, without
        grad: (N,) on the CPU. No ``normalize`` flag: tensors are read as the files are decoded."""
        n, m = len(originals), len(reconstructions)
        if n != m:
            raise InputError(f"{n} original(s) but {m} reconstruction(s): SemSim scores pairs")
        out = []
        for x, y in zip(self._batches(originals, "originals"), self._batches(reconstructions, "reconstructions")):
            ex = self.net(self._normalise_input(x.to(self.device)))
            ey = self.net(self._normalise_input(y.to(self.device)))
            out.append(distance(ex, ey).cpu())
        return torch.cat(out) if out else torch.zeros(0)
