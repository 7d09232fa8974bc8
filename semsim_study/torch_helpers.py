"""The torch helpers every part of the study shares: device names, weights as bytes and back
(``state_bytes``, ``load_state``: the one reader of weight files, weights only), and the one
mean/std normalisation of images (``normalize``, ``to_tensor``).

Ground floor: imports torch and the package's errors only, so the attack, metrics, annotation
and SemSim code can use these without pulling classifier training (and its dependencies) in.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError


def resolve_device(name: str, key: str) -> str:
    """``auto`` picks CUDA when present; ``key`` names the param in errors. CPU runs are
    bit-reproducible; GPU runs are not."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"params: '{key}' is {name!r}; valid values: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"params: '{key}' asks for CUDA, but torch sees no GPU; use auto or cpu")
    return name


def state_bytes(module: nn.Module) -> bytes:
    """The module's state dict, on the CPU, as torch.save bytes written to memory (a fixed archive
    name inside), so the same weights always give the same file."""
    state = module.state_dict()
    cpu = OrderedDict((k, v.detach().cpu()) for k, v in state.items())
    cpu._metadata = getattr(state, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    buf = io.BytesIO()
    torch.save(cpu, buf)
    return buf.getvalue()


def load_state(source: bytes | str | Path, where: str, missing: str = "weight file missing") -> dict:
    """A state dict read weights-only (no code runs) from bytes or a file; DataError naming ``where``."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where}: {missing}") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise DataError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt, truncated or unsafe files
        raise DataError(f"{where}: not a loadable weights-only checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(state, dict):
        raise DataError(f"{where}: expected a state dict, got {type(state).__name__}")
    return state


def fill(module: nn.Module, state: dict, where: str, what: str) -> nn.Module:
    """``module`` with ``state`` loaded strictly; DataError saying the weights do not fit ``what``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{where}: weights do not fit {what} ({str(exc).splitlines()[0]})") from None
    return module


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a float NCHW batch (mean and std in x's dtype and device)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # torch warns on read-only buffers; the copy is tiny
        images = images.copy()
    return normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0), mean, std)
