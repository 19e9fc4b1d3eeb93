"""Downstream evaluation metrics (SPEC §3): pixel, region, detection, classification, statistics.

Pure NumPy/SciPy/scikit-learn, no torch and no Qt, so the runner, the CLI, tests and the
dashboard share one implementation. Masks are `(H, W)` bool; boxes are `(N, 4)` float
`(x0, y0, x1, y1)` in pixels with exclusive max corner.
"""

from lesion_studio.core.metrics.classification import image_level_scores
from lesion_studio.core.metrics.detection import (
    FROC_FP_RATES,
    FrocCurve,
    average_precision,
    froc_auc,
    froc_curve,
    froc_sensitivities,
    match_detections,
    masks_to_boxes,
    node21_score,
)
from lesion_studio.core.metrics.luna_froc import LesionDiscs, LunaFroc, lesion_discs, luna_froc
from lesion_studio.core.metrics.pixel import dice, fbeta, mean_dice, pixel_counts, pixel_scores
from lesion_studio.core.metrics.region import (
    RegionCounts,
    region_counts,
    region_scores,
    size_group_bounds_px,
    size_group_recall,
    thresholded_counts,
)

__all__ = [
    "FROC_FP_RATES", "FrocCurve", "LesionDiscs", "LunaFroc", "RegionCounts", "average_precision", "dice",
    "fbeta", "froc_auc", "froc_curve", "froc_sensitivities", "image_level_scores", "lesion_discs", "luna_froc",
    "masks_to_boxes", "match_detections", "mean_dice", "node21_score", "pixel_counts", "pixel_scores",
    "region_counts", "region_scores", "size_group_bounds_px", "size_group_recall",
    "thresholded_counts",
]
