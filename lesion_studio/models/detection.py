"""Small-lesion detector: a pixel-heatmap detector (a segmenter's probability map → boxes).

The fast baseline, not comparable with the papers' detectors: the papers' Faster R-CNN and
RetinaNet are `models.detectors` (`detector = "faster_rcnn" | "retinanet"` in an experiment).
Why keep a heatmap detector: without pretrained weights (no downloads) a
torchvision two-stage or anchor detector needs thousands of images and hours to learn
anchors for 3–30 px lesions, while lesion studies have tens to hundreds of images with
exact masks. A fully convolutional heatmap (the U-Net/MultiResUNet of SPEC §3.1 trained on
the lesion masks) learns from every lesion pixel, trains on a CPU in seconds at 64–256 px,
and yields scored candidates: connected components of the probability map at a ladder of
thresholds, box = the component's bounding box, score = its peak probability, duplicates and
enclosing blobs dropped (`detect_from_probability`). Those
candidates feed the FROC/NODE21/mAP@50 metrics exactly as a box detector's output would.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Candidates are components of p ≥ 0.05; lower-scoring ones would only extend the FROC tail.
DEFAULT_MIN_PROB = 0.05


#: Threshold levels of the candidate hierarchy (those below `min_prob` are skipped).
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Candidates overlapping an already kept, higher-scoring one at this IoU are duplicates.
DUPLICATE_IOU = 0.3


def _contains(outer: np.ndarray, inner: np.ndarray) -> bool:
    return bool(outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3])


def detect_from_probability(prob: np.ndarray, min_prob: float = DEFAULT_MIN_PROB) -> tuple[np.ndarray, np.ndarray]:
    """Boxes `(N, 4)` `(x0, y0, x1, y1)` px and scores `(N,)` from one `(H, W)` probability map.

    Candidates are the 8-connected components of `p ≥ level` at every level of `LEVELS` from
    `min_prob` up, each scored by its peak probability. Going through them by descending score
    and then ascending area, a candidate is dropped when it overlaps a kept one at IoU ≥ 0.3
    or encloses a kept one's box; so each peak is reported once with its tightest box, and a
    low-level blob that merges several peaks does not become an extra false positive.
    """
    from lesion_studio.core.metrics.detection import box_iou

    prob = np.asarray(prob, dtype=np.float32)
    boxes, scores, areas = [], [], []
    for level in (lv for lv in LEVELS if lv >= min_prob - 1e-9):
        labels, n = ndimage.label(prob >= level, structure=np.ones((3, 3), bool))
        if n == 0:
            break
        idx = np.arange(1, n + 1)
        peaks = ndimage.maximum(prob, labels, idx)
        sizes = ndimage.sum_labels(np.ones(prob.shape), labels, idx)
        for s, peak, size in zip(ndimage.find_objects(labels), peaks, sizes):
            boxes.append((s[1].start, s[0].start, s[1].stop, s[0].stop))
            scores.append(float(peak))
            areas.append(float(size))
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0)
    boxes_a = np.asarray(boxes, dtype=float)
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], areas[i]))
    kept: list[int] = []
    for i in order:
        if kept:
            iou = box_iou(boxes_a[i:i + 1], boxes_a[kept])[0]
            if (iou >= DUPLICATE_IOU).any() or any(_contains(boxes_a[i], boxes_a[k]) for k in kept):
                continue
        kept.append(i)
    return boxes_a[kept], np.asarray([scores[i] for i in kept], dtype=float)


def lesion_diameters_px(mask: np.ndarray) -> np.ndarray:
    """Diameter in px of each 8-connected lesion of a mask, in `ndimage.label` order: P3's moment
    diameter (at least one pixel), the one definition the size control synthesizes with
    (`core.geometry.size_modulation.component_moment_diameters`)."""
    from lesion_studio.core.geometry.size_modulation import component_moment_diameters

    return component_moment_diameters(mask)
