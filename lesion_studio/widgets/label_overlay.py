"""Mask overlays on the canvas: lesion labels in class colours and the location map.

Rendering is a lookup table from label id to RGBA; changes reported with a bbox are
re-rendered only inside that bbox (plus a one-pixel rim for contours).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

LOCATION_RGB = (80, 220, 140)
SELECTED_ALPHA_BOOST = 0.15  # selected: 50 % at the default opacity, the image stays visible


def contour_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels of a label whose 4-neighbour differs (the outline of each instance)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[0, :] = edge[-1, :] = True  # instances touching the border are closed there
    edge[:, 0] |= True
    edge[:, -1] |= True
    return edge & (labels != 0)


def colorize(labels: np.ndarray, lut: np.ndarray, contour_only: bool) -> np.ndarray:
    """`(H, W, 4)` uint8 RGBA of a label plane through `lut` (ids beyond it get the last row)."""
    ids = np.minimum(labels, lut.shape[0] - 1)
    rgba = lut[ids]
    if contour_only:
        rgba[..., 3] = np.where(contour_mask(labels), 255, 0).astype(np.uint8)
    return rgba


class LabelOverlay:
    """Two ImageItems (labels, location) kept in step with a document plane."""

    def __init__(self) -> None:
        self.labels_item = pg.ImageItem(axisOrder="row-major")
        self.location_item = pg.ImageItem(axisOrder="row-major")
        self._labels_rgba: np.ndarray | None = None
        self._lut = np.zeros((1, 4), np.uint8)
        self.contour_only = False

    def set_lut(
        self,
        colors_by_id: dict[int, tuple[int, int, int]],
        opacity: float,
        selected: int,
        pending_rgb: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        """Colours per lesion id; the selected lesion is drawn more opaque; ids not in the table
        yet (a stroke still open) get `pending_rgb`, the current class colour."""
        size = max(colors_by_id, default=0) + 2  # last row: ids not known yet (mid-stroke)
        lut = np.zeros((size, 4), np.uint8)
        base_alpha = int(round(255 * opacity))
        for label, rgb in colors_by_id.items():
            alpha = min(255, base_alpha + int(255 * SELECTED_ALPHA_BOOST)) if label == selected else base_alpha
            lut[label] = (*rgb, alpha)
        lut[-1] = (*pending_rgb, base_alpha)
        self._lut = lut

    def render_labels(self, plane: np.ndarray, bbox: tuple[int, int, int, int] | None = None) -> None:
        """Re-render the whole plane, or only `bbox` when the plane shape is unchanged."""
        if self._labels_rgba is None or self._labels_rgba.shape[:2] != plane.shape or bbox is None:
            self._labels_rgba = colorize(plane, self._lut, self.contour_only)
        else:
            r0, r1, c0, c1 = bbox
            r0, c0 = max(0, r0 - 1), max(0, c0 - 1)
            r1, c1 = min(plane.shape[0], r1 + 1), min(plane.shape[1], c1 + 1)
            R0, C0 = max(0, r0 - 1), max(0, c0 - 1)
            R1, C1 = min(plane.shape[0], r1 + 1), min(plane.shape[1], c1 + 1)
            # The rim of the colouring window is never copied, so contours stay exact there.
            part = colorize(plane[R0:R1, C0:C1], self._lut, self.contour_only)
            self._labels_rgba[r0:r1, c0:c1] = part[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]
        self.labels_item.setImage(self._labels_rgba, autoLevels=False, levels=(0, 255))

    def render_location(self, plane: np.ndarray, opacity: float) -> None:
        rgba = np.zeros(plane.shape + (4,), np.uint8)
        on = plane != 0
        rgba[on] = (*LOCATION_RGB, int(round(255 * opacity * 0.6)))
        self.location_item.setImage(rgba, autoLevels=False, levels=(0, 255))

    def set_visible(self, labels: bool, location: bool) -> None:
        self.labels_item.setVisible(labels)
        self.location_item.setVisible(location)

    def clear(self) -> None:
        self._labels_rgba = None
        self.labels_item.clear()
        self.location_item.clear()
