"""One set of CPU kernels on every x86-64 machine, so the same params give the same bytes.

PyTorch, oneDNN, MKL, OpenBLAS and numpy each pick their vectorised kernels by the CPU they
find, and each rounds differently: the same 30 SGD steps of a small conv net give other weight
bytes on an AVX-512 machine than on an AVX2 one (and other again under each library's SSE
path). The study's cache only means something if a clone on another machine reproduces the
committed dvc.lock, so every process of the study runs the AVX2 kernels, which every x86-64
CPU of the last decade has.

The libraries read these switches once, when they load or first dispatch, so ``pin`` must run
before torch or numpy is imported: ``semsim_study/__init__.py`` calls it, and ``stages/``
imports the package before anything else. The values are forced, not defaulted: a user's own
``ATEN_CPU_CAPABILITY`` or ``DNNL_MAX_CPU_ISA`` must not change the study's bytes.

A machine without AVX2, or not x86-64, cannot run those kernels: it gets one warning that its
bytes will differ from the committed lock, and runs its native kernels.

What this cannot pin: GPU kernels (CUDA runs round differently and are never byte-compared),
and oneDNN's cache-size-dependent blocking, which single-threaded runs (every stage's default)
keep out of the summation order in the layers this study uses.
"""

from __future__ import annotations

import os
import platform
import sys

#: The switches, each library's documented one; all name the AVX2 level.
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised CPU kernels (DEFAULT / AVX2 / AVX512)
    "DNNL_MAX_CPU_ISA": "AVX2",  # oneDNN's JIT kernels (convolutions)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # the same switch under oneDNN's newer name
    "MKL_CBWR": "AVX2,STRICT",  # MKL's conditional numerical reproducibility (BLAS behind linear layers)
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS GEMM kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR",  # numpy's AVX-512 ufunc loops (exp, log, ...)
}

_state: dict = {}


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags on Linux; None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def unpinnable_reason(machine: str | None = None, flags: set[str] | None | str = "read") -> str | None:
    """Why this machine cannot run the pinned kernels, or None when it can."""
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in ("x86_64", "amd64"):
        return f"this CPU is {machine}, not x86-64"
    flags = _cpu_flags() if flags == "read" else flags
    if flags is None:
        return "this system does not show the CPU's flags (/proc/cpuinfo), so AVX2 cannot be confirmed"
    if not {"avx2", "fma"} <= flags:
        return "this CPU has no AVX2"
    return None


def pin(environ=None, machine: str | None = None, flags: set[str] | None | str = "read") -> bool:
    """Force the AVX2 kernel switches into ``environ`` (the process environment); True when
    pinned. Says so in one line on stderr where the machine cannot run them."""
    env = os.environ if environ is None else environ
    reason = unpinnable_reason(machine, flags)
    late = [m for m in ("torch", "numpy") if m in sys.modules] if environ is None else []
    if environ is None:
        _state.update(pinned=reason is None, reason=reason, late=late)
    if reason is not None:
        print(f"warning: semsim-study: {reason}; outputs will not match the committed dvc.lock byte for byte "
              "(the study pins AVX2 kernels on x86-64)", file=sys.stderr)
        return False
    env.update(PINNED)
    return True


def describe() -> dict:
    """What this process ran with, for a stage's provenance log (never a tracked output: it
    names the machine). Reads torch and numpy only where the process loaded them."""
    torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
    dispatch: list[str] = []
    if numpy is not None:
        try:
            from numpy._core._multiarray_umath import __cpu_dispatch__ as dispatch
        except ImportError:  # numpy < 2
            dispatch = []
    disabled = set(os.environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split())
    return {
        "pinned": bool(_state.get("pinned", False)),
        "not_pinned_because": _state.get("reason"),
        "imported_before_pinning": _state.get("late", []),
        "cpu": _cpu_model(),
        "cpu_has_avx512": "avx512f" in (_cpu_flags() or set()),
        "torch": torch.__version__ if torch else "not loaded",
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability() if torch else "not loaded",
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "native"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "native"),
        "numpy": numpy.__version__ if numpy else "not loaded",
        "numpy_dispatch": [f for f in dispatch if f not in disabled],
        "torch_threads": torch.get_num_threads() if torch else 0,
    }


def summary(info: dict) -> str:
    """One log line from ``describe``."""
    state = "pinned" if info["pinned"] else f"NOT pinned ({info['not_pinned_because']})"
    late = f"; imported before pinning: {', '.join(info['imported_before_pinning'])}" if info["imported_before_pinning"] else ""
    return (f"CPU kernels {state}: ATen {info['aten_cpu_capability']}, oneDNN {info['onednn_max_isa']}, "
            f"MKL {info['mkl_cbwr']}, OpenBLAS {info['openblas_coretype']}, numpy {'/'.join(info['numpy_dispatch'])}, "
            f"{info['torch_threads']} torch thread(s); CPU {info['cpu']}{late}")
