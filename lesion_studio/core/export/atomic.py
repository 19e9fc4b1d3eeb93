"""Atomic file writes for the exporter: a temporary name in the same folder, then `os.replace`.

Bytes go through `mask_io.atomic_write_bytes`; writers that need a file name (SimpleITK)
use `atomic_file`. Temporary names start with "." and contain ".tmp", so `remove_stale_temps`
can clear what a killed process left behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lesion_studio.core.annotation.mask_io import atomic_write_bytes

TEMP_MARKER = ".tmp"


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write JSON (sorted keys, so equal content gives equal bytes) atomically."""
    return write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=True) + "\n").encode("utf-8"))


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the same suffixes; renamed onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TEMP_MARKER}{suffixes}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(root: str | Path) -> int:
    """Delete temporary files a killed run left under `root`; returns how many."""
    count = 0
    for tmp in Path(root).rglob(f".*{TEMP_MARKER}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            count += 1
    return count
