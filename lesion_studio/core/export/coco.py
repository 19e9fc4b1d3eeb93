"""COCO instance annotations: one annotation per connected lesion, box and RLE mask.

Each item writes `coco/images/ID.png` (16-bit) and a fragment `coco/parts/ID.json`;
`finalize` merges the fragments, sorted by item id (so ids are the same on every run), into
`coco/annotations.json`. RLE is COCO's compressed form (column-major run lengths, the
LEB128-like string of pycocotools' `rleToString`), encoded here without pycocotools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lesion_studio.core.export.atomic import write_bytes, write_json
from lesion_studio.core.export.item import LESION_LABEL, ExportItem
from lesion_studio.core.export.png import encode_png16

FOLDER = "coco"
CATEGORIES = [{"id": LESION_LABEL, "name": "lesion", "supercategory": "lesion"}]


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: alternating run lengths of 0s and 1s, column-major, starting with 0s."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def rle_string(counts: list[int]) -> str:
    """pycocotools' `rleToString`: each count (delta to the one two back after the second),
    5 bits per char plus a continuation bit, offset by 48."""
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A binary mask as COCO compressed RLE `{"size": [h, w], "counts": str}`."""
    mask = np.asarray(mask, dtype=bool)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle_string(rle_counts(mask))}


def instances(mask: np.ndarray) -> list[dict[str, Any]]:
    """One COCO annotation (without ids) per 8-connected lesion component."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3), int))
    out = []
    for k in range(1, n + 1):
        component = labels == k
        rows, cols = np.nonzero(component)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        out.append({
            "category_id": LESION_LABEL,
            "bbox": [float(c0), float(r0), float(c1 - c0), float(r1 - r0)],  # x, y, w, h in pixels
            "area": float(component.sum()),
            "segmentation": encode_rle(component),
            "iscrowd": 0,
        })
    return out


def write(item: ExportItem, out_dir: Path) -> list[Path]:
    image = out_dir / FOLDER / "images" / f"{item.item_id}.png"
    write_bytes(image, encode_png16(item.png_image()))
    part = write_json(out_dir / FOLDER / "parts" / f"{item.item_id}.json", {
        "file_name": f"images/{item.item_id}.png",
        "height": int(item.image.shape[0]), "width": int(item.image.shape[1]),
        "annotations": instances(item.mask),
    }, indent=None)
    return [image, part]


def finalize(out_dir: Path, *, description: str) -> Path:
    """Merge the fragments into `coco/annotations.json` (image and annotation ids from 1)."""
    images, annotations = [], []
    for image_id, part in enumerate(sorted((out_dir / FOLDER / "parts").glob("*.json")), start=1):
        if part.name.startswith("."):
            continue
        doc = json.loads(part.read_text())
        images.append({"id": image_id, "file_name": doc["file_name"], "height": doc["height"],
                       "width": doc["width"]})
        for ann in doc["annotations"]:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id))
    return write_json(out_dir / FOLDER / "annotations.json", {
        "info": {"description": description},
        "images": images, "annotations": annotations, "categories": CATEGORIES,
    }, indent=None)
