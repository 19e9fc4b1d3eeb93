"""P0 lesion crops: the square mask crop (Eq. 1-2), the 3·wm context crop, and the paste back.

Coordinates are array coordinates: `row` down, `col` right, in pixels. P0 writes (x, y) for
(col, row). Boxes are half-open: a box covers rows `row0 <= r < row0 + height`.

A context crop may leave the image. It is then padded by reflection (numpy's "reflect": the
border pixel is not repeated) and, on paste, only the part inside the image is written back:
the crop is never shifted to fit, so the synthesized lesion stays where it was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesion_studio.core.errors import MaskError
from lesion_studio.lazy import lazy_import

cv2 = lazy_import("cv2")
ndimage = lazy_import("scipy.ndimage")

#: P0 Eq. 1: the mask crop is 1.2 times the lesion's longer side (0.1 margin on each end).
P0_MARGIN_FRACTION = 0.1
#: P0 §III-A: the context crop is a square of width 3·wm around the mask crop.
P0_CONTEXT_FACTOR = 3.0
#: P0 §IV-A resizes context crops to 128²; P3 §III-C uses 256² patches.
P0_MODEL_INPUT_PX = 128
P3_MODEL_INPUT_PX = 256


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels (floats allowed), half-open: `[row0, row0 + height)`."""

    row0: float
    col0: float
    height: float
    width: float

    @property
    def row1(self) -> float:
        return self.row0 + self.height

    @property
    def col1(self) -> float:
        return self.col0 + self.width

    @property
    def centre_rc(self) -> tuple[float, float]:
        """Centre in continuous pixel coordinates (pixel i spans [i, i + 1))."""
        return (self.row0 + self.height / 2.0, self.col0 + self.width / 2.0)

    def contains(self, other: "Box", tol: float = 1e-9) -> bool:
        """True when `other` lies inside this box (edges may touch)."""
        return (
            other.row0 >= self.row0 - tol
            and other.col0 >= self.col0 - tol
            and other.row1 <= self.row1 + tol
            and other.col1 <= self.col1 + tol
        )

    def to_dict(self) -> dict:
        return {"row0": self.row0, "col0": self.col0, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: dict) -> "Box":
        return cls(
            row0=data["row0"], col0=data["col0"], height=data["height"], width=data["width"]
        )


@dataclass(frozen=True)
class PixelBox:
    """An integer, square-or-not pixel box; may reach outside the image (then it is padded)."""

    row0: int
    col0: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"a pixel box needs a positive size, got {self.height}x{self.width}")

    @property
    def row1(self) -> int:
        return self.row0 + self.height

    @property
    def col1(self) -> int:
        return self.col0 + self.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def as_box(self) -> Box:
        return Box(float(self.row0), float(self.col0), float(self.height), float(self.width))

    def inside(self, image_shape: tuple[int, int]) -> tuple[slice, slice, slice, slice] | None:
        """Slices `(img_rows, img_cols, crop_rows, crop_cols)` of the overlap with the image."""
        h, w = int(image_shape[0]), int(image_shape[1])
        r0, c0 = max(self.row0, 0), max(self.col0, 0)
        r1, c1 = min(self.row1, h), min(self.col1, w)
        if r0 >= r1 or c0 >= c1:
            return None
        return (
            slice(r0, r1),
            slice(c0, c1),
            slice(r0 - self.row0, r1 - self.row0),
            slice(c0 - self.col0, c1 - self.col0),
        )

    def to_dict(self) -> dict:
        return {"row0": self.row0, "col0": self.col0, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: dict) -> "PixelBox":
        return cls(
            row0=int(data["row0"]), col0=int(data["col0"]),
            height=int(data["height"]), width=int(data["width"]),
        )


def lesion_bbox(mask: np.ndarray) -> Box:
    """Tight bounding box of a mask's nonzero pixels, `(H, W)` any dtype; MaskError when empty."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"expected a 2D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise MaskError("the mask is empty: no lesion to crop around")
    return Box(
        row0=float(rows[0]), col0=float(cols[0]),
        height=float(rows[-1] - rows[0] + 1), width=float(cols[-1] - cols[0] + 1),
    )


def p0_mask_crop(lesion: Box) -> Box:
    """The square stone-mask crop of P0 Eq. 1-2 around a lesion box (continuous pixels).

    P0 Eq. 1: `wm = 1.2·ws` if `ws >= hs` else `1.2·hs`. P0 Eq. 2 puts a 0.1 margin of the
    longer side before the lesion along that side and centres the shorter side. The printed
    Eq. 2 swaps x and y in its second case (`(xs - 0.1·hs, ys - (wm - ws)/2)`), which would cut
    tall lesions with `ws < 0.8·hs`; this is the symmetric reading that keeps every lesion inside.
    """
    ws, hs = lesion.width, lesion.height
    if ws <= 0 or hs <= 0:
        raise MaskError(f"a lesion box needs a positive size, got {hs}x{ws}")
    if ws >= hs:
        wm = ws + 2.0 * P0_MARGIN_FRACTION * ws  # P0 Eq. 1
        col0 = lesion.col0 - P0_MARGIN_FRACTION * ws  # P0 Eq. 2, first case
        row0 = lesion.row0 - (wm - hs) / 2.0
    else:
        wm = hs + 2.0 * P0_MARGIN_FRACTION * hs  # P0 Eq. 1
        row0 = lesion.row0 - P0_MARGIN_FRACTION * hs  # P0 Eq. 2, second case (transposed)
        col0 = lesion.col0 - (wm - ws) / 2.0
    return Box(row0=row0, col0=col0, height=wm, width=wm)


def context_box(mask_crop: Box, factor: float = P0_CONTEXT_FACTOR) -> PixelBox:
    """Integer square of side `round(factor·wm)` centred on the mask crop (P0 §III-A: 3·wm)."""
    if factor < 1.0:
        raise ValueError(f"the context factor must be >= 1, got {factor}")
    side = max(int(round(factor * max(mask_crop.height, mask_crop.width))), 1)
    centre_r, centre_c = mask_crop.centre_rc
    row0 = int(np.floor(centre_r - side / 2.0 + 0.5))
    col0 = int(np.floor(centre_c - side / 2.0 + 0.5))
    return PixelBox(row0=row0, col0=col0, height=side, width=side)


def square_box_around(centre_rc: tuple[float, float], side_px: int) -> PixelBox:
    """Integer square of `side_px` whose centre is the continuous point `centre_rc`."""
    side = max(int(side_px), 1)
    row0 = int(np.floor(centre_rc[0] - side / 2.0 + 0.5))
    col0 = int(np.floor(centre_rc[1] - side / 2.0 + 0.5))
    return PixelBox(row0=row0, col0=col0, height=side, width=side)


def _reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices `start .. start+length-1` folded into `[0, size)` as numpy's "reflect" pad does."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def extract_crop(image: np.ndarray, box: PixelBox) -> np.ndarray:
    """The pixels of `box` from a `(H, W)` array; parts outside the image are reflect-padded."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) array, got shape {image.shape}")
    rows = _reflect_indices(box.row0, box.height, image.shape[0])
    cols = _reflect_indices(box.col0, box.width, image.shape[1])
    return image[np.ix_(rows, cols)]


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float image to `(rows, cols)`: area averaging down, bilinear up; float32 out."""
    image = np.asarray(image, dtype=np.float32)
    rows, cols = int(shape[0]), int(shape[1])
    if image.shape == (rows, cols):
        return image.copy()
    shrinking = rows * cols < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (cols, rows), interpolation=interpolation)


def resize_soft_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a mask as a coverage map to `(rows, cols)`; float32 in [0, 1] out.

    Area averaging when shrinking (each output pixel is the fraction of it the mask covers),
    bilinear when enlarging, so edges come out as fractions instead of staircases. Useful as
    an alpha map, and the basis of `resize_mask`.
    """
    soft = np.asarray(mask).astype(np.float32)
    if soft.ndim != 2:
        raise MaskError(f"expected a 2D mask, got shape {soft.shape}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"cannot resize a mask to {rows}x{cols}")
    if soft.shape == (rows, cols):
        return soft.copy()
    shrinking = rows * cols < soft.shape[0] * soft.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(soft, (cols, rows), interpolation=interpolation)
    return np.clip(out, 0.0, 1.0, out=out)


def resize_mask(mask: np.ndarray, shape: tuple[int, int], *, method: str = "soft") -> np.ndarray:
    """Resize a binary mask to `(rows, cols)`; bool out.

    `method="soft"` (default) resizes the coverage map (`resize_soft_mask`) and keeps pixels
    covered at least half: upsampled edges are smooth and the area is kept. A lesion (an
    8-connected component) that would vanish keeps its best-covered pixel, so no lesion is
    ever lost by shrinking (a 2 px lesion at 1024² is one pixel at 256²). "Vanish" is judged
    on the lesion's own footprint, the output pixels holding the centres of its pixels, so a
    neighbouring lesion's pixels never stand in for it. `method="nearest"` is plain nearest
    neighbour (staircases, and small lesions can fall between samples; for callers that must
    match a paper's resampling).
    """
    mask = np.asarray(mask)
    rows, cols = int(shape[0]), int(shape[1])
    if mask.shape == (rows, cols):
        return mask.astype(bool)
    if method == "nearest":
        return cv2.resize(
            mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    if method != "soft":
        raise ValueError(f"unknown mask resize method {method!r} (use 'soft' or 'nearest')")
    binary = mask.astype(bool)
    soft = resize_soft_mask(binary, (rows, cols))
    out = soft >= 0.5
    if binary.any():
        _keep_lost_components(binary, soft, out)
    return out


def _keep_lost_components(binary: np.ndarray, soft: np.ndarray, out: np.ndarray) -> None:
    """Keep, in place, the best-covered footprint pixel of each input component `out` lost.

    A component's footprint is the set of output pixels that contain the centre of one of its
    pixels; it counts as lost when none of them is kept.
    """
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    rr, cc = np.nonzero(labels)
    lab = labels[rr, cc]
    orow = np.minimum(((rr + 0.5) * (out.shape[0] / binary.shape[0])).astype(np.int64), out.shape[0] - 1)
    ocol = np.minimum(((cc + 0.5) * (out.shape[1] / binary.shape[1])).astype(np.int64), out.shape[1] - 1)
    kept = np.bincount(lab, weights=out[orow, ocol], minlength=n + 1) > 0
    for component in np.nonzero(~kept[1:])[0] + 1:
        at = lab == component
        r, c = orow[at], ocol[at]
        best = int(np.argmax(soft[r, c]))
        out[r[best], c[best]] = True


def feather_weights(shape: tuple[int, int], feather_px: float, inset_px: int = 0) -> np.ndarray:
    """Blend weight 0 at the crop's edge (or `inset_px` inside it) rising linearly to 1 at
    `feather_px` further in (float32)."""
    rows, cols = int(shape[0]), int(shape[1])
    r = np.arange(rows, dtype=np.float32)
    c = np.arange(cols, dtype=np.float32)
    dist_r = np.minimum(r + 0.5, rows - r - 0.5)
    dist_c = np.minimum(c + 0.5, cols - c - 0.5)
    dist = np.minimum(dist_r[:, None], dist_c[None, :]) - float(inset_px)
    if feather_px <= 0:
        return (dist > 0).astype(np.float32)
    return np.clip(dist / float(feather_px), 0.0, 1.0).astype(np.float32)


def paste_mask(
    full_mask: np.ndarray, crop_mask: np.ndarray, box: PixelBox, *, remove: bool = False
) -> np.ndarray:
    """Write a crop-sized (or any-size, resized by `resize_mask`) mask into a full mask at `box`.

    `remove=False` adds the lesion (union); `remove=True` clears the pixels under the mask
    (a removal hole erases the lesion it covers). Returns a new bool array.
    """
    out = np.asarray(full_mask).astype(bool).copy()
    where = box.inside(out.shape)
    if where is None:
        return out
    img_r, img_c, crop_r, crop_c = where
    crop = resize_mask(crop_mask, box.shape)[crop_r, crop_c]
    if remove:
        out[img_r, img_c] &= ~crop
    else:
        out[img_r, img_c] |= crop
    return out


def place_footprint(
    shape: tuple[int, int], footprint: np.ndarray, row0: int, col0: int
) -> np.ndarray:
    """A full `(H, W)` bool mask with a small footprint placed at `(row0, col0)`, clipped."""
    out = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    fp = np.asarray(footprint, dtype=bool)
    box = PixelBox(int(row0), int(col0), fp.shape[0], fp.shape[1])
    where = box.inside(out.shape)
    if where is not None:
        img_r, img_c, crop_r, crop_c = where
        out[img_r, img_c] = fp[crop_r, crop_c]
    return out


def component_masks(mask: np.ndarray) -> list[np.ndarray]:
    """One bool mask per 8-connected component of a binary mask, in label order."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return [labels == i for i in range(1, n + 1)]
