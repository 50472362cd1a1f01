"""What the machine running a job can do: its CPU, and whether it computes bfloat16 natively.

Benchmarks print :func:`cpu_description` beside every figure, and engines log it with the dtype they
chose, because the same config runs several times faster or slower depending on the CPU under it.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# ATen's kernel levels that have no bf16 dot-product instructions behind them.
_ATEN_WITHOUT_BF16 = frozenset({"DEFAULT", "NO AVX", "AVX2"})


@lru_cache(maxsize=1)
def cpu_model_name() -> str:
    """The CPU's marketing name (``model name`` of /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_runs_bf16_natively() -> bool:
    """True where bfloat16 matrix products run on bf16 instructions (AVX-512 BF16 or AMX on x86).

    Elsewhere PyTorch emulates bf16 by converting to float32, which is several times slower than
    float32 itself (SmolLM2-135M prefill: 6.4x on an AVX2-only EPYC). Both of PyTorch's CPU back ends
    must have the instructions at hand: oneDNN (its effective ISA honours ``ONEDNN_MAX_CPU_ISA``) and
    ATen's kernels (``ATEN_CPU_CAPABILITY``), so capping either one makes a bf16 CPU count as one without.
    """
    # deferred: torch (~3 s); the Snakefile reads this module through the engine options, which need no torch
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    if platform.machine().lower() in {"x86_64", "amd64", "i686", "x86"}:
        if torch.backends.cpu.get_cpu_capability() in _ATEN_WITHOUT_BF16:
            return False
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return True


def cpu_description() -> str:
    """One line naming the CPU: model, ATen capability, native bf16 or not, cores this process may use."""
    # deferred: torch (~3 s), as in cpu_runs_bf16_natively
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bf16 = "native bf16" if cpu_runs_bf16_natively() else "no native bf16"
    return f"{cpu_model_name()}, {torch.backends.cpu.get_cpu_capability()}, {bf16}, {cores} cores"
