"""Reproducible experiment runs (issue 14): same config + seed → the same results and checkpoints.

`deterministic_torch` turns on torch's deterministic algorithms and cuDNN's deterministic mode
(benchmarking off), fixes the CPU thread count when asked, and restores everything afterwards.
Seeds are the runner's job (every fold seeds its data order, its synthetic images and its
initial weights); this module only removes the library-level freedom.

What it promises, written into the result file: on CPU, the same config, seed, torch version
and thread count give bit-identical results and checkpoints (a different thread count may
change the last bits of reductions). On CUDA some kernels (atomics in scatter/index backward,
upsampling backward) have no deterministic implementation; torch then only warns
(`warn_only`), so GPU runs are close but not guaranteed bit-identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

#: The statement of the result file's `determinism` section, per device kind.
CPU_PROMISE = ("bit-identical: the same config, seed, torch version and thread count give the same results "
               "and checkpoints")
CUDA_PROMISE = ("not guaranteed bit-identical: deterministic algorithms are requested, but CUDA kernels without "
                "a deterministic implementation (atomic adds in some backward passes) only warn; expect "
                "differences in the last bits, and rerun on CPU for an exact reproduction")


@contextmanager
def deterministic_torch(device: str, num_threads: int = 0) -> Iterator[dict[str, Any]]:
    """Deterministic torch while the block runs; yields the report for the result file.

    `num_threads` > 0 fixes torch's CPU thread count (results depend on it); 0 keeps it.
    """
    cuda = str(device).startswith("cuda")
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.get_num_threads())
    if cuda:  # cuBLAS reads it when it starts; without it deterministic matmuls are impossible
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a job running beside this one (the GUI runs several) must not crash on an op
    # that has no deterministic kernel; every op this runner uses on CPU has one
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    report = {"device": str(device), "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
              "deterministic_algorithms": True, "cudnn_benchmark": False,
              "reproducibility": CUDA_PROMISE if cuda else CPU_PROMISE}
    try:
        yield report
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
        if num_threads > 0:
            torch.set_num_threads(previous[4])
