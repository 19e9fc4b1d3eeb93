"""Resolve the user's `--device` choice without importing torch unless it is installed."""

from __future__ import annotations

import importlib.util


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
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
