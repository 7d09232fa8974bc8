"""The ``metrics`` and ``features`` sections of params.yaml, read and checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .. import params as P
from ..torch_helpers import resolve_device
from ..errors import ConfigError
from .feature_extractors import KINDS, LpipsOptions
from .frechet import METHODS
from .imagenet import LPIPS_NETS


@dataclass(frozen=True)
class MetricsConfig:
    features: str
    weights_dir: str | None
    lpips: LpipsOptions
    fid_method: str
    batch_size: int
    device: str
    threads: int


def from_params(params: Mapping) -> MetricsConfig:
    P.known(params, "metrics", ("features", "weights_dir", "lpips", "fid", "classifier", "batch_size", "device", "threads"))
    P.known(params, "metrics.lpips", ("net", "paper_input_scale", "resize"))
    P.known(params, "metrics.fid", ("method",))
    m = P.Section(P.get(params, "metrics", dict), "metrics")
    resize = P.get(m, "lpips.resize", (int, type(None)), None)
    if resize is not None and resize < 8:
        raise ConfigError(f"params: 'metrics.lpips.resize' must be null or a side of at least 8 px, got {resize}")
    return MetricsConfig(
        features=P.choice(m, "features", KINDS),
        weights_dir=P.get(m, "weights_dir", (str, type(None)), None),
        lpips=LpipsOptions(net=P.choice(m, "lpips.net", LPIPS_NETS, "alex"),
                           paper_input_scale=P.get(m, "lpips.paper_input_scale", bool, False), resize=resize),
        fid_method=P.choice(m, "fid.method", METHODS, "exact"),
        batch_size=P.positive_int(m, "batch_size", 64),
        device=resolve_device(P.get(m, "device", str, "cpu"), "metrics.device"),
        threads=P.positive_int(m, "threads", 1),
    )
