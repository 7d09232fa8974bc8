"""The simulated annotators' eyes: a small recogniser trained on the dataset's clean images.

Offline there are no people, so the embedded profile needs something that recognises images
the way an annotator would: by what they show, not by how many pixels match. Its only
requirement beyond that is independence from everything the study evaluates: if simulated
people saw through the same network as LPIPS/FID, SemSim or the attacked classifiers, the
correlations would be rigged. So the observer is its own model (a three-layer convolutional
net with global pooling, so it finds a shape wherever it lies; an architecture used nowhere
else in the project), trained here from the prepared training split with its own seed, and
it reads nothing from models/.

Three properties make it behave like a person rather than like a classifier:
- each image is standardised (zero mean, unit contrast) first: people are not fooled by a
  reconstruction that is darker or washed out, which Inverting Gradients' cosine loss often
  produces;
- it sees a low-passed image (``blur``) and is trained on images drowned in pixel noise of
  random strength (``noise``, ``noise_spread``): people read a digit or a face through the
  colour noise of an unfinished inversion, and do not read the high-frequency patterns that
  inversion plants for the attacked classifier;
- it is trained to answer "no idea" (a uniform posterior) on noise and on blurred, washed-out
  junk, so a reconstruction that shows nothing leads to a guess, not to a confident class;
- half of that junk carries class cues planted against the observer itself (``cue_steps``
  signed-gradient steps towards a random class, within ``cue_epsilon`` of the noise), also
  taught "no idea": gradient inversion writes such cues for the attacked classifier, and a
  CNN that read them would "recognise" what a person sees as noise. The stage
  ``observer-controls`` measures what is left of that (semsim_study/annotation/planted_cues.py).

It learns from its own half of the training split (``datasets.halves``); the feature network
behind LPIPS/FID learns from the other half, so the two never saw the same image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..torch_helpers import fill, load_state


@dataclass(frozen=True)
class ObserverConfig:
    width: int = 16
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    junk_fraction: float = 0.25  # share of each batch that is noise / junk with a uniform target
    noise: float = 0.15  # std of pixel noise added to clean training images (robustness)
    noise_spread: bool = False  # True: each image's noise std is drawn from U(0, noise), so it learns to see through heavy noise
    blur: float = 0.0  # Gaussian blur (sigma, pixels) before the network: the coarse view people judge by
    cue_steps: int = 0  # >0: half the junk carries class cues planted against the observer itself, this many steps
    cue_epsilon: float = 16 / 255  # ... within this L-inf distance of the noise (inversion plants cues like these)
    nothing_class: bool = False  # True: junk is its own answer ("nothing to see"), not a uniform posterior
    junk_signal: float = 0.25  # junk keeps at most this share of a clean image (invisible to people)
    colour_jitter: float = 0.0  # clean images get global colour changes people ignore: channel gains in 1 +- this
    tinted_noise: bool = False  # the saturated noise is centred on a clean image's mean colour, not on grey


def standardise(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8, or float in [0, 1] -> (N, 3, H, W), zero mean and unit std per image."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    flat = x.reshape(len(x), -1)
    x = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 0.05)
    return x.permute(0, 3, 1, 2).contiguous()


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


class Observer(nn.Module):
    def __init__(self, classes: int, width: int, blur: float = 0.0, nothing_class: bool = False):
        super().__init__()
        self.classes = int(classes)
        self.nothing_class = bool(nothing_class)
        self.blur = float(blur)
        if self.blur > 0:
            self.register_buffer("kernel", _gaussian_kernel(self.blur), persistent=False)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(8 * w, classes + int(self.nothing_class))

    def low_pass(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur <= 0:
            return x
        k, c = self.kernel, x.shape[1]
        pad = len(k) // 2
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.low_pass(x))
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1))

    @torch.no_grad()
    def _softmax(self, images: np.ndarray) -> np.ndarray:
        self.eval()
        return torch.softmax(self(standardise(torch.from_numpy(np.ascontiguousarray(images)))), 1).numpy()

    def posterior(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for (N, H, W, 3) uint8 images, as a person reads them: where the
        observer sees nothing, that share is a guess spread evenly over the classes."""
        p = self._softmax(images)
        if not self.nothing_class:
            return p
        return p[:, : self.classes] + p[:, self.classes :] / self.classes

    def seen(self, images: np.ndarray) -> np.ndarray:
        """The probability that the image shows anything at all (1 without a nothing class)."""
        p = self._softmax(images)
        return 1.0 - p[:, self.classes] if self.nothing_class else np.ones(len(p), np.float32)


def _noise(n: int, shape: tuple[int, ...], gen: torch.Generator, centre: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Four kinds of colour noise, a quarter each: uniform; saturated Gaussian about ``centre``
    (an inversion's random start and its early, clipped iterates); coarse colour blobs; blobs
    under fine noise."""
    h, w, c = shape
    uniform = torch.rand((n, h, w, c), generator=gen)
    spread = 0.2 + 1.3 * torch.rand((n, 1, 1, 1), generator=gen)
    saturated = (centre + spread * torch.randn((n, h, w, c), generator=gen)).clamp(0, 1)
    cells = torch.randn((n, c, max(2, h // 4), max(2, w // 4)), generator=gen)
    blobs = torch.sigmoid(2 * F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False)).permute(0, 2, 3, 1)
    fine = (blobs + 0.3 * torch.randn((n, h, w, c), generator=gen)).clamp(0, 1)
    kind = torch.randint(0, 4, (n, 1, 1, 1), generator=gen)
    return torch.where(kind == 0, uniform, torch.where(kind == 1, saturated, torch.where(kind == 2, blobs, fine)))


def _junk(n: int, shape: tuple[int, ...], gen: torch.Generator, clean: torch.Tensor, cfg: ObserverConfig) -> torch.Tensor:
    """Images that show nothing recognisable: colour noise, and clean images drowned in it.

    ``tinted_noise``: an inversion gets an image's mean colour right long before its shape (the
    gradient of the first layer's bias gives it away), so its early iterates are noise tinted
    like the original: a cat's brown, a retina's red. People see no cat in brown noise; an
    observer that never saw tinted noise names the class whose colour it has."""
    tint = torch.randint(0, len(clean), (n,), generator=gen) if cfg.tinted_noise else None
    centre = clean[tint].mean(dim=(1, 2), keepdim=True) if tint is not None else 0.5
    noise = _noise(n, shape, gen, centre) if cfg.nothing_class else torch.rand((n, *shape), generator=gen)
    mix = torch.rand((n, 1, 1, 1), generator=gen) * cfg.junk_signal  # at most this share of the signal survives
    pick = torch.randint(0, len(clean), (n,), generator=gen)
    return mix * clean[pick] + (1 - mix) * noise


def _colour_change(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Global colour changes people ignore: a colour cast (per-channel gains, which move the
    image's mean colour as white balance does), a fifth greyscale. An observer taught that noise
    in an image's own tint shows nothing must not take a cast for that tint."""
    if amount <= 0:
        return x
    gain = 1 + amount * (2 * torch.rand((len(x), 1, 1, x.shape[-1]), generator=gen) - 1)
    out = (x * gain).clamp(0, 1)
    grey = out.mean(dim=-1, keepdim=True).expand_as(out)
    pick = torch.rand((len(x), 1, 1, 1), generator=gen) < 0.2
    return torch.where(pick, grey, out)


def _plant_cues(model: Observer, junk: torch.Tensor, classes: int, cfg: ObserverConfig,
                gen: torch.Generator) -> torch.Tensor:
    """Junk the observer currently reads as some class: signed-gradient steps towards a random
    class within ``cue_epsilon`` of the noise. Taught a uniform posterior on these, it learns
    that a class cue in noise is not a picture, as gradient inversion's planted cues are not."""
    target = torch.randint(0, classes, (len(junk),), generator=gen)
    x = junk.clone()
    eps = cfg.cue_epsilon
    for _ in range(cfg.cue_steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(standardise(x)), target)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x - 2 * eps / cfg.cue_steps * grad.sign(), junk - eps), junk + eps).clamp(0, 1)
    return x.detach()


def train_observer(images: np.ndarray, labels: np.ndarray, classes: int, cfg: ObserverConfig,
                   seed: int, on_epoch: Callable[[int, Observer], None] | None = None) -> Observer:
    """Train on (N, H, W, 3) uint8 clean images; deterministic for a seed on CPU.

    ``on_epoch(epoch, model)`` sees the model after each epoch (1-based): the observer-budget
    curve (scripts/observer_curve.py) reads every epoch count of one run from it, since the
    learning rate is constant and an E-epoch run is this run's state at epoch E. It must not
    draw random numbers or change the model."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clean = torch.from_numpy(images).float() / 255.0
    y = torch.from_numpy(labels.astype(np.int64))
    model = Observer(classes, cfg.width, cfg.blur, cfg.nothing_class)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n_junk = max(1, int(round(cfg.batch_size * cfg.junk_fraction)))
    junk_target = (torch.full((n_junk,), classes, dtype=torch.int64) if cfg.nothing_class
                   else torch.full((n_junk, classes), 1.0 / classes))
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(clean), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()  # people find a shape wherever it is
            x = _colour_change(torch.roll(clean[idx], shifts=shift, dims=(1, 2)), cfg.colour_jitter, gen)
            sigma = (torch.rand((len(idx), 1, 1, 1), generator=gen) * cfg.noise if cfg.noise_spread
                     else torch.full((len(idx), 1, 1, 1), cfg.noise))
            x = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
            junk = _junk(n_junk, tuple(clean.shape[1:]), gen, clean, cfg)
            if cfg.cue_steps > 0:
                half = n_junk // 2
                cued = _plant_cues(model, junk[:half], classes, cfg, gen)  # (N, H, W, 3) in [0, 1]
                junk = torch.cat([cued, junk[half:]])
            logits = model(standardise(torch.cat([x, junk])))
            loss = F.cross_entropy(logits[: len(idx)], y[idx])
            loss = loss + F.cross_entropy(logits[len(idx):], junk_target) * n_junk / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if on_epoch is not None:
            with torch.no_grad():
                on_epoch(epoch, model.eval())
    return model.eval()


def load(path, classes: int, cfg: ObserverConfig) -> Observer:
    """An observer saved by the annotate stage (weights only; ``state_bytes`` wrote it)."""
    state = load_state(path, str(path), "observer weights missing; rerun the annotate stage")
    return fill(Observer(classes, cfg.width, cfg.blur, cfg.nothing_class), state, str(path),
                "the observer these params describe; rerun the annotate stage").eval()


def accuracy(model: Observer, images: np.ndarray, labels: np.ndarray) -> float:
    return float((model.posterior(images).argmax(1) == labels).mean())
