"""The standard LPIPS and FID backbones (``metrics.features: imagenet``), loaded from local files.

- LPIPS: the ``lpips`` package (0.1.4) with its calibrated linear layers (they ship inside
  the package) on a torchvision trunk pretrained on ImageNet. ``lpips.LPIPS`` would fetch the
  trunk through torchvision; here it is built with a random trunk and the trunk's weights are
  read from the torchvision checkpoint file (its ``features.*`` tensors).
- FID: pytorch-fid's ``InceptionV3`` (2048-d pool3 features, its TF-FID weights
  ``pt_inception-2015-12-05``); its one fetch call is pointed at the local file.

Files are looked up in ``metrics.weights_dir`` if set, else in torch's hub cache
(``torch.hub.get_dir()/checkpoints``, where torchvision and pytorch-fid would have saved
them after a download). Nothing is ever downloaded: a missing file stops the stage with a
message naming the file, where it comes from and where to put it. Checkpoints are read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from ..torch_helpers import load_state

LPIPS_NETS = ("alex", "vgg", "squeeze")
TRUNK_FILES = {  # torchvision's ImageNet weights for lpips' trunks (IMAGENET1K_V1)
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
TRUNK_URL = "https://download.pytorch.org/models/{}"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE


def weights_dir(configured: str | os.PathLike | None) -> Path:
    """``metrics.weights_dir`` if given, else torch's hub checkpoint cache."""
    return Path(configured) if configured else Path(torch.hub.get_dir()) / "checkpoints"


def require(folder: Path, name: str, url: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ConfigError(
            f"{what} weights not found: place {name} (from {url}) in {folder}/ or set metrics.weights_dir to a "
            f"folder that holds it; nothing is downloaded (or use metrics.features: pipeline offline)")
    return path


def lpips_model(net: str, folder: Path):
    """lpips.LPIPS(net) with its trunk loaded from torchvision's checkpoint in ``folder``."""
    if net not in LPIPS_NETS:
        raise ConfigError(f"params: 'metrics.lpips.net' is {net!r}; valid values: {', '.join(LPIPS_NETS)}")
    path = require(folder, TRUNK_FILES[net], TRUNK_URL.format(TRUNK_FILES[net]), f"LPIPS {net} trunk (ImageNet)")
    state = load_state(path, str(path))
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, pretrained=True, verbose=False)
    trunk = model.net.state_dict()
    mapped = {}
    for key, value in trunk.items():  # lpips: slice<k>.<index>.<param>; torchvision: features.<index>.<param>
        source = "features." + key.split(".", 1)[1]
        if source not in state:
            raise DataError(f"{path}: tensor {source!r} missing; is this torchvision's {net} checkpoint?")
        if tuple(state[source].shape) != tuple(value.shape):
            raise DataError(f"{path}: tensor {source!r} has shape {tuple(state[source].shape)}, "
                            f"LPIPS {net} expects {tuple(value.shape)}")
        mapped[key] = state[source]
    model.net.load_state_dict(mapped, strict=True)
    return model.eval()


def inception_model(folder: Path):
    """pytorch-fid's InceptionV3 returning 2048-d pool3 features, weights from ``folder``."""
    path = require(folder, INCEPTION_FILE, INCEPTION_URL, "FID Inception-v3 (pytorch-fid)")
    state = load_state(path, str(path))
    from pytorch_fid import inception as pfi

    def local(url, *args, **kwargs):  # replaces pytorch-fid's download; it asks for exactly one file
        return state

    try:
        with _patched(pfi, "load_state_dict_from_url", local), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                    normalize_input=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit pytorch-fid's Inception-v3 ({str(exc).splitlines()[0]})") from None
    return model.eval()


@contextlib.contextmanager
def _patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)
