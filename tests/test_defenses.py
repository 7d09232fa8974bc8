"""Gradient defences: exact pruning fraction per tensor, noise scale, config errors."""

from __future__ import annotations

import pytest
import torch

from semsim_study import defenses
from semsim_study.errors import ConfigError


@pytest.mark.parametrize("numel", [10, 37, 1000, 4096])
def test_prune_zeroes_exactly_the_smallest_share_per_tensor(numel):
    torch.manual_seed(numel)
    g = torch.randn(numel) + 0.01  # no exact zeros to start with
    before = g.clone()
    defenses.prune_(g, 0.7)
    k = int(numel * 0.7)
    assert int((g == 0).sum()) == k
    kept = before.abs()[g != 0]
    dropped = before.abs()[g == 0]
    assert kept.min() >= dropped.max()
    assert torch.equal(g[g != 0], before[g != 0])  # survivors untouched


def test_prune_acts_per_tensor_not_globally():
    small = torch.full((10,), 1e-6) + torch.arange(10) * 1e-7
    large = torch.full((10,), 1.0) + torch.arange(10) * 0.1
    defenses.Defense("prune", prune_ratio=0.7).apply_([small, large, None])
    assert int((small == 0).sum()) == 7 and int((large == 0).sum()) == 7


def test_noise_has_the_intended_scale_on_every_tensor():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.zeros(200_000), torch.zeros(3)]
    defenses.Defense("gaussian", noise_sigma=1e-3).apply_(grads, gen)
    assert grads[0].std().item() == pytest.approx(1e-3, rel=0.01)
    assert abs(grads[0].mean().item()) < 1e-5
    assert (grads[1] != 0).all()  # biases too


def test_noise_is_seeded():
    a, b = torch.zeros(50), torch.zeros(50)
    defenses.Defense("gaussian", noise_sigma=0.1).apply_([a], torch.Generator().manual_seed(5))
    defenses.Defense("gaussian", noise_sigma=0.1).apply_([b], torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="'train.settings.x.prune_ratio' must lie strictly between 0 and 1"):
        defenses.from_config({"defense": "prune", "prune_ratio": 70}, "train.settings.x")
    with pytest.raises(ConfigError, match="'train.settings.x.noise_sigma' must be a positive number"):
        defenses.from_config({"defense": "gaussian"}, "train.settings.x")
    with pytest.raises(ConfigError, match="valid values: gaussian, none, prune"):
        defenses.from_config({"defense": "laplace"}, "train.settings.x")


def test_prune_works_in_place_on_non_contiguous_gradients():
    g = torch.randn(6, 4).t()  # a transposed view, as autograd.grad may return
    assert not g.is_contiguous()
    defenses.prune_(g, 0.5)
    assert int((g == 0).sum()) == 12
