"""Reading the bundled real-lesion libraries (`real_nodules.npz`, `real_stones.npz`): plain
arrays in one `.npz` (never pickles) with a JSON `meta` naming the format."""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lesion_studio.core.errors import MaskError


def read_library_npz(path: Path, keys: Iterable[str], library_format: str, what: str,
                     build_script: str) -> tuple[dict[str, np.ndarray], dict]:
    """`(arrays, meta)` of a library file holding `keys` and `meta["format"] == library_format`;
    MaskError naming the file (and, when it is missing, the script that builds it) otherwise.
    `what` names the library in messages ("nodule library")."""
    keys = set(keys) | {"meta"}
    if not path.is_file():
        raise MaskError(f"the {what} is missing; rebuild it with {build_script}", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = keys - set(npz.files)
            if missing:
                raise MaskError(f"not a {what}: missing {sorted(missing)}", path)
            data = {k: npz[k] for k in keys}
        meta = json.loads(str(data["meta"]))
    except MaskError:
        raise
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError, zipfile.BadZipFile, zlib.error) as exc:
        raise MaskError(f"cannot read the {what}: {exc}", path) from exc
    if not isinstance(meta, dict) or meta.get("format") != library_format:
        raise MaskError(f"not a {what} (format {meta.get('format') if isinstance(meta, dict) else meta!r})", path)
    return data, meta


def check_ragged(data: dict[str, np.ndarray], path: Path, what: str, *, arrays: tuple[str, ...],
                 per_item: tuple[str, ...], ndim: int, min_items: int = 0) -> None:
    """MaskError naming the file unless the ragged layout holds: `names` gives the item count n,
    `offsets` (n + 1) and `shapes` (n, ndim) cut the flat `arrays` (all one size) into items,
    and every `per_item` array has n entries."""
    n = len(data["names"])
    offsets, shapes, flat = data["offsets"], data["shapes"], data[arrays[0]]
    if (n < min_items or len(offsets) != n + 1 or shapes.shape != (n, ndim)
            or any(len(data[k]) != n for k in per_item) or int(offsets[-1]) != flat.size
            or any(data[k].size != flat.size for k in arrays[1:])
            or not np.array_equal(np.diff(offsets), np.prod(shapes, axis=1))):
        raise MaskError(f"the {what} is inconsistent (sizes disagree)", path)
