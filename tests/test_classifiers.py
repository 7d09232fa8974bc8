"""Backbones: output shapes at their image sizes, the registry's errors, reference structure."""

from __future__ import annotations

import pytest
import torch

from semsim_study.classifiers import backbones, grid
from semsim_study.errors import ConfigError

SMALL = ["resnet8", "resnet20", "convnet4", "convnet8", "lenet"]


@pytest.mark.parametrize("name", SMALL + ["resnet20-4", "convnet"])
def test_output_shape_at_32px(name):
    torch.manual_seed(0)
    out = backbones.build(name, 7, 32)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name,size", [("resnet20", 64), ("lenet", 64), ("resnet18", 64), ("resnet50", 64),
                                       ("densenet121", 64), ("resnet152", 112)])
def test_output_shape_at_larger_sizes(name, size):
    model = backbones.build(name, 5, size).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_reference_sizes():
    assert backbones.parameter_count(backbones.build("resnet20-4", 100, 32)) == pytest.approx(4.3e6, rel=0.02)
    assert backbones.parameter_count(backbones.build("resnet20", 100, 32)) == pytest.approx(0.28e6, rel=0.05)
    convnet = backbones.build("convnet", 10, 32)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in convnet.modules()) == 8
    assert convnet.linear.in_features == 36 * 64
    lenet = backbones.build("lenet", 100, 32)
    assert lenet.fc.in_features == 768
    assert all(p.abs().max() <= 0.5 for p in lenet.parameters())


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg11'; valid backbones: convnet, .*resnet20-4"):
        backbones.build("vgg11", 10, 32)


def test_convnet_refuses_other_sizes():
    with pytest.raises(ConfigError, match="32x32 inputs only, got 64x64"):
        backbones.build("convnet", 10, 64)


def test_basic_block_matches_torchvision():
    from torchvision.models.resnet import BasicBlock as TorchvisionBlock

    from semsim_study.classifiers.backbones import BasicBlock

    down = lambda: torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1, stride=2, bias=False), torch.nn.BatchNorm2d(8))
    torch.manual_seed(0)
    ours = BasicBlock(4, 8, 2, down()).eval()
    theirs = TorchvisionBlock(4, 8, 2, down()).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(ours(x), theirs(x))


def test_the_grid_names_every_backbone_and_imports_no_torch():
    """grid.py lists the backbones without importing torch: the stages that only read models
    take their ids from it; the list must match the definitions."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    assert sorted(grid.BACKBONES) == sorted(backbones.BACKBONES)
    code = ("import sys; from semsim_study.classifiers import grid; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(grid.BACKBONES))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
