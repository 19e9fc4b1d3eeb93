"""Shared bits for benchmark scripts: JSON lines tagged with device and commit."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_device() -> str:
    import os

    return f"cpu:{platform.processor() or platform.machine()}x{os.cpu_count()}"


def emit(record: dict) -> None:
    record.setdefault("commit", git_commit())
    record.setdefault("python", sys.version.split()[0])
    print(json.dumps(record), flush=True)


def summarize_ms(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1000.0
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "max_ms": round(float(ms.max()), 3),
    }
