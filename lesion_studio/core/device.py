"""Resolve the user's `--device` choice without importing torch unless it is installed."""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from pathlib import Path


def cuda_impossible_without_torch() -> bool:
    """True when no GPU can be usable, decided without importing torch (~1.5 s): torch missing,
    a CPU-only torch build (its `version.py` names no CUDA/ROCm), or no CUDA driver library.

    False means "maybe": only torch itself can tell (driver too old, no device, ...)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True
    try:
        version = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except (OSError, StopIteration):
        return False
    builds = dict(re.findall(r"^(cuda|hip)\b[^=]*=\s*(\S+)", version, flags=re.MULTILINE))
    if builds.get("hip", "None") != "None":
        return False  # ROCm build: its driver is not libcuda
    if builds.get("cuda", "None") == "None":
        return True
    driver = {"win32": "nvcuda.dll", "darwin": None}.get(sys.platform, "libcuda.so.1")
    if driver is None:
        return True
    try:
        ctypes.CDLL(driver)
    except OSError:
        return True
    return False


def cuda_available() -> bool:
    if "torch" not in sys.modules and cuda_impossible_without_torch():
        return False  # keeps startup free of the torch import on machines without a GPU
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(choice: str) -> str:
    """`auto` → `cuda` when a GPU is usable, else `cpu`; `cuda` without a GPU is an error."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {choice!r}: use auto, cpu or cuda")
    if choice == "auto":
        return "cuda" if cuda_available() else "cpu"
    if choice == "cuda" and not cuda_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is usable here (or torch is not installed)")
    return choice
