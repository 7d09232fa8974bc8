"""Per-image parameter gradients of a batch in one ordinary autograd pass.

The engine needs, for every image b of a batch, the gradient of image b's loss with respect
to the model's weights, and then the gradient of a distance between those and the observed
ones with respect to the pixels. ``torch.func.vmap`` over ``grad`` does the first part
(measured against this in ``benchmarks/attack_throughput.py``).

Here every row of the batch gets its own copy of the weights instead. A convolution over the
batch becomes one grouped convolution (the rows' channels side by side, ``groups`` = rows), a
linear layer a batched matrix product, eval-mode BatchNorm one fused kernel over the rows'
channels side by side. Row b's output then depends only on copy b, so the gradient of the
summed loss with respect to the copies is every row's own gradient, from one backward pass
with ``create_graph`` that the double backward of the attack goes through like any other
graph. Rows stay independent, as with vmap, but the kernels differ, so the two routes agree
to rounding, not to the bit. For one image this route is the faster (1.4x on the embedded
backbones, where vmap's batching rules cost more than they save); for a batch, grouped
convolutions do not beat vmap's, and ``auto`` keeps vmap (and the embedded study its bytes).

Only layers whose per-row form is written here may carry trainable weights (Conv2d, Linear,
eval-mode BatchNorm2d: every backbone of ``classifiers.backbones``); any other one raises.
The model's ``forward`` methods are swapped while a ``RowWeights`` is open, on this model
object only, and restored by ``close``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def _conv(module: nn.Conv2d, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    rows = x.shape[0]
    weight = w["weight"].reshape(rows * module.out_channels, *module.weight.shape[1:])
    bias = w["bias"].reshape(-1) if "bias" in w else None
    out = F.conv2d(x.reshape(1, rows * x.shape[1], *x.shape[2:]), weight, bias, module.stride, module.padding,
                   module.dilation, module.groups * rows)
    return out.reshape(rows, module.out_channels, *out.shape[2:])


def _linear(module: nn.Linear, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    rows = x.shape[0]
    flat = x.reshape(rows, -1, module.in_features)
    out = torch.bmm(flat, w["weight"].transpose(1, 2))
    if "bias" in w:
        out = out + w["bias"][:, None, :]
    return out.reshape(*x.shape[:-1], module.out_features)


def _batch_norm(module: nn.BatchNorm2d, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    # the rows' channels side by side, as in _conv: one fused eval-mode kernel (a broadcast
    # multiply by per-row weights and its double backward cost 4x more on a CPU)
    rows, channels = x.shape[:2]
    weight = w["weight"].reshape(-1) if "weight" in w else None
    bias = w["bias"].reshape(-1) if "bias" in w else None
    out = F.batch_norm(x.reshape(1, rows * channels, *x.shape[2:]), module.running_mean.repeat(rows),
                       module.running_var.repeat(rows), weight, bias, False, 0.0, module.eps)
    return out.reshape(x.shape)


def _check_conv(module: nn.Conv2d) -> str | None:
    return None if module.padding_mode == "zeros" else f"padding_mode {module.padding_mode!r}"


def _check_batch_norm(module: nn.BatchNorm2d) -> str | None:
    if module.training or module.running_mean is None:
        return "BatchNorm in training mode or without running statistics"
    return None


# layer type -> (per-row forward, what makes an instance unsupported or None)
ROWWISE: dict[type, tuple[Callable, Callable[[nn.Module], str | None]]] = {
    nn.Conv2d: (_conv, _check_conv),
    nn.Linear: (_linear, lambda m: None),
    nn.BatchNorm2d: (_batch_norm, _check_batch_norm),
}


class RowWeights:
    """``rows`` copies of the model's trainable weights, wired into its layers until ``close``.

    ``copies[name]`` has shape ``(rows, *parameter.shape)``, the layout vmap's per-sample
    gradients have, so ``gradients`` returns the same dictionary ``vmap(grad(...))`` would.
    """

    def __init__(self, model: nn.Module, rows: int):
        self.model, self.rows = model, rows
        self.copies: dict[str, torch.Tensor] = {}
        self._patched: list[nn.Module] = []
        try:
            for prefix, module in model.named_modules():
                own = {k: p for k, p in module.named_parameters(recurse=False) if p.requires_grad}
                if not own:
                    continue
                forward, check = ROWWISE.get(type(module), (None, None))
                problem = f"layer type {type(module).__name__}" if forward is None else check(module)
                if problem:
                    raise ConfigError(f"attack: per_sample_gradients 'rows' cannot run {prefix or 'the model'} "
                                      f"({problem}); use 'vmap'")
                mine = {}
                for k, p in own.items():
                    name = f"{prefix}.{k}" if prefix else k
                    mine[k] = self.copies[name] = p.detach().unsqueeze(0).repeat(rows, *[1] * p.dim()).requires_grad_()
                module.forward = _bound(forward, module, mine)
                self._patched.append(module)
        except BaseException:
            self.close()
            raise

    def gradients(self, losses: torch.Tensor, create_graph: bool) -> dict[str, torch.Tensor]:
        """Each row's gradient of its own entry of ``losses`` (shape ``(rows,)``), per weight."""
        names = list(self.copies)
        grads = torch.autograd.grad(losses.sum(), [self.copies[n] for n in names], create_graph=create_graph)
        return dict(zip(names, grads))

    def close(self) -> None:
        for module in self._patched:
            del module.forward  # the instance attribute; the class's forward shows again
        self._patched = []


def _bound(forward: Callable, module: nn.Module, weights: dict[str, torch.Tensor]) -> Callable:
    def call(x: torch.Tensor) -> torch.Tensor:
        return forward(module, weights, x)

    return call
