"""Seeded generators derived from names: the one way the study turns (seed, names) into draws.

``key(seed, "digits", "resnet8_crop")`` is the entropy list ``[seed, crc32("digits"),
crc32("resnet8_crop")]``; ``rng`` is NumPy's generator on it and ``torch_seed`` the first word
its SeedSequence generates (for ``torch.manual_seed``). Every job seeds itself from its own
names, so a result never depends on which worker ran it or in which order.
"""

from __future__ import annotations

import zlib

import numpy as np


def key(seed: int, *names: str | bytes) -> list[int]:
    """``[seed, crc32(name), ...]``: the entropy list of a job named by ``names``."""
    return [int(seed)] + [zlib.crc32(n if isinstance(n, bytes) else n.encode("utf-8")) for n in names]


def rng(seed: int, *names: str | bytes) -> np.random.Generator:
    """NumPy's generator seeded by ``key(seed, *names)``."""
    return np.random.default_rng(key(seed, *names))


def torch_seed(entropy: list[int]) -> int:
    """A 32-bit seed for torch from an entropy list (the first word its SeedSequence generates)."""
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
