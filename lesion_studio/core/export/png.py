"""PNG pairs: `png/images/ID.png` (16-bit) and `png/masks/ID.png` (8-bit labels 0/1)."""

from __future__ import annotations

from pathlib import Path

import cv2

from lesion_studio.core.annotation.mask_io import encode_png
from lesion_studio.core.export.atomic import write_bytes
from lesion_studio.core.export.item import ExportItem

FOLDER = "png"


def encode_png16(image) -> bytes:
    """A uint16 image as 16-bit PNG bytes (encode_png picks uint8 when values allow it)."""
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def image_path(out_dir: Path, item_id: str) -> Path:
    return out_dir / FOLDER / "images" / f"{item_id}.png"


def mask_path(out_dir: Path, item_id: str) -> Path:
    return out_dir / FOLDER / "masks" / f"{item_id}.png"


def write(item: ExportItem, out_dir: Path) -> list[Path]:
    """Write the image and mask; returns both paths."""
    return [
        write_bytes(image_path(out_dir, item.item_id), encode_png16(item.png_image())),
        write_bytes(mask_path(out_dir, item.item_id), encode_png(item.mask)),
    ]
