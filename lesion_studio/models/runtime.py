"""How to run on this machine: torch CPU threads from the free cores, native bf16 or not.

Threads: on a machine other work shares, more torch threads than free cores make every step
slower (on the project's 2-core machine, one busy: 1 thread was 1.4× faster than 2, and a
2-thread CT training stalled at ≈ 7 s/step instead of ≈ 0.2 s). `free_cores` reads the 1-minute
load average once, when a run starts.
"""

from __future__ import annotations

import os

import torch


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(*, cores: int | None = None, load: float | None = None) -> int:
    """Cores not busy with other work: usable cores − 1-minute load average, rounded, >= 1.

    `cores`/`load` default to this machine's (`usable_cores()`, `os.getloadavg()[0]`; a
    platform without a load average counts as idle).
    """
    cores = usable_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, round(cores - load)))


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively here: a CUDA GPU with bf16, or a CPU with bf16
    instructions (AVX512-BF16 / AMX, as oneDNN reports them). Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
