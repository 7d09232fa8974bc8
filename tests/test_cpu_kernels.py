"""The study pins one set of CPU kernels, so a user's environment or another x86-64 CPU does not
change its bytes (semsim_study/cpu_kernels.py). The stage-level check (train, attack, annotate
and SemSim stages rerun under other capability variables give the same dvc.lock) is in
test_pipeline_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from semsim_study import cpu_kernels
from tests.conftest import ROOT

# A few SGD steps of a small conv net (oneDNN convolutions, ATen element-wise kernels, MKL for
# the linear layer) and numpy's exp/log and GEMM: each library's kernel choice shows in the hash.
PROBE = """
import hashlib, sys
if sys.argv[1] == "pinned":
    import semsim_study  # noqa: F401  (pins before torch and numpy load)
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
torch.set_num_threads(1)
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(8, 5))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(1)
x, y = torch.rand(32, 3, 16, 16, generator=g), torch.randint(0, 5, (32,), generator=g)
for _ in range(10):
    opt.zero_grad(); F.cross_entropy(net(x), y).backward(); opt.step()
r = np.random.default_rng(0).random(20000)
h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.state_dict().values()))
h.update(np.exp(r).tobytes() + np.log(r).tobytes() + (r.reshape(100, 200) @ r.reshape(200, 100)).tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest())
"""

# What another x86-64 CPU (or a user's own settings) would make the libraries choose.
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "MKL_CBWR": "COMPATIBLE", "OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4"}

needs_avx2 = pytest.mark.skipif(cpu_kernels.unpinnable_reason() is not None,
                                reason=f"kernels cannot be pinned here: {cpu_kernels.unpinnable_reason()}")


def _probe(mode: str, **env) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in cpu_kernels.PINNED}
    res = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, timeout=300, check=True)
    capability, digest = res.stdout.split()
    return capability, digest


@needs_avx2
def test_the_capability_variables_change_the_bytes_without_pinning():
    """The premise: without the pins, the kernel switches (another CPU's choice) change the bytes."""
    native = _probe("bare")
    other = _probe("bare", **OTHER_CPU)
    avx2 = _probe("bare", **cpu_kernels.PINNED)
    assert other[0] == "DEFAULT" and avx2[0] == "AVX2"
    assert other[1] != avx2[1]
    if "avx512f" in (cpu_kernels._cpu_flags() or set()):
        assert native[1] != avx2[1], "an AVX-512 machine's native kernels round otherwise than AVX2's"


@needs_avx2
def test_pinning_overrides_the_users_capability_variables():
    pinned = _probe("pinned")
    assert pinned[0] == "AVX2"
    assert _probe("pinned", **OTHER_CPU) == pinned
    assert _probe("bare", **cpu_kernels.PINNED) == pinned  # the pins are all there is to it


def test_a_machine_without_avx2_is_told_in_one_line_and_left_alone(capsys):
    env: dict[str, str] = {"ATEN_CPU_CAPABILITY": "default"}
    assert cpu_kernels.pin(env, machine="x86_64", flags={"sse4_2", "avx"}) is False
    assert env == {"ATEN_CPU_CAPABILITY": "default"}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no AVX2" in err and "dvc.lock" in err
    assert cpu_kernels.pin(env, machine="aarch64", flags=set()) is False
    assert "aarch64, not x86-64" in capsys.readouterr().err
    assert cpu_kernels.pin(env, machine="x86_64", flags=None) is False
    assert "cannot be confirmed" in capsys.readouterr().err


def test_an_avx2_machine_gets_every_pin_whatever_was_set_before(capsys):
    env = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "HOME": "/x"}
    assert cpu_kernels.pin(env, machine="x86_64", flags={"avx2", "fma", "avx512f"}) is True
    assert env == {**cpu_kernels.PINNED, "HOME": "/x"}
    assert capsys.readouterr().err == ""


def test_stage_provenance_names_the_kernels_and_stays_out_of_tracked_outputs():
    import torch  # noqa: F401  (describe reads the libraries this process loaded)

    info = cpu_kernels.describe()
    for key in ("pinned", "cpu", "aten_cpu_capability", "onednn_max_isa", "mkl_cbwr", "numpy_dispatch", "torch_threads"):
        assert key in info
    line = cpu_kernels.summary(info)
    assert "\n" not in line and info["aten_cpu_capability"] in line
    if cpu_kernels.unpinnable_reason() is None:
        assert info["pinned"] and info["aten_cpu_capability"] == "AVX2" and "X86_V4" not in info["numpy_dispatch"]
    ignored = (ROOT / ".gitignore").read_text().split() + (ROOT / ".dvcignore").read_text().split()
    assert "/logs/" in ignored and "/logs" in ignored
